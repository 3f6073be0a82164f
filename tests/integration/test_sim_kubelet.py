"""The process kubelet with the real job controller: Jobs, pod status, env, identity, volumes."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from devcluster.sim.fixtures import SimProcess
from devcluster.sim.kube import CONFIGMAPS, JOBS, PODS, Kube
from devcluster.sim.service import kubelet_status_name
from devcluster.sim.testkit import namespaces, wait_service_account
from devcluster.sim.waiting import wait_for, wait_list

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def kube(kubelet: SimProcess) -> Kube:
    return kubelet.kube


@pytest.fixture
def ns(kube: Kube, unique_user: str) -> Any:
    name = f"{unique_user}-jobs"
    with namespaces(kube, name):
        wait_service_account(kube, name)
        yield name


def job(name: str, command: list[str], **pod_spec: Any) -> dict[str, Any]:
    container = {"name": "main", "image": "registry.example/tools:1", "command": command}
    container.update(pod_spec.pop("container", {}))
    spec = {"restartPolicy": "Never", "containers": [container], **pod_spec}
    return {"metadata": {"name": name}, "spec": {"backoffLimit": 0, "template": {"spec": spec}}}


def finished(obj: dict[str, Any]) -> bool:
    conds = (obj.get("status") or {}).get("conditions") or []
    return any(c["type"] in ("Complete", "Failed") and c["status"] == "True" for c in conds)


def job_condition(obj: dict[str, Any]) -> str:
    conds = (obj.get("status") or {}).get("conditions") or []
    done = [c for c in conds if c["type"] in ("Complete", "Failed") and c["status"] == "True"]
    return str(done[0]["type"])


def pods_of(
    kube: Kube, ns: str, job_name: str, count: int = 1, terminal: bool = True
) -> list[dict[str, Any]]:
    def check(items: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        mine = [p for p in items if p["metadata"].get("labels", {}).get("job-name") == job_name]
        if terminal:
            mine = [
                p for p in mine if (p.get("status") or {}).get("phase") in ("Succeeded", "Failed")
            ]
        return mine if len(mine) >= count else None

    return wait_list(kube, PODS, ns, check, timeout=60, what=f"pods of job {job_name}")


def terminated(pod: dict[str, Any]) -> dict[str, Any]:
    state: dict[str, Any] = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    return state


def test_a_job_exiting_3_fails_with_exit_code_3(kube: Kube, ns: str) -> None:
    kube.create(JOBS, ns, job("exit3", ["sh", "-c", "exit 3"]))
    done = wait_for(kube, JOBS, ns, "exit3", finished, timeout=60)
    assert job_condition(done) == "Failed"
    (pod,) = pods_of(kube, ns, "exit3")
    assert pod["status"]["phase"] == "Failed"
    assert terminated(pod)["exitCode"] == 3
    assert terminated(pod)["reason"] == "Error"


def test_a_job_running_true_completes(kube: Kube, ns: str) -> None:
    kube.create(JOBS, ns, job("ok", ["true"]))
    done = wait_for(kube, JOBS, ns, "ok", finished, timeout=60)
    assert job_condition(done) == "Complete"
    (pod,) = pods_of(kube, ns, "ok")
    assert pod["status"]["phase"] == "Succeeded"
    assert pod["status"]["podIP"] == "127.0.0.1"
    assert pod["spec"]["nodeName"] == "devcluster-kubelet"
    assert terminated(pod)["exitCode"] == 0


def test_pod_gets_identity_env_and_service_account_files(kube: Kube, ns: str) -> None:
    script = (
        'printf "%s %s %s %s %s %s" "$(id -u)" "$(id -g)" "$POD_NAME" "$KUBERNETES_SERVICE_HOST" '
        '"$KUBERNETES_SERVICE_PORT" "$(cat $WORKSHOP_RUNNER_SERVICEACCOUNT_DIR/namespace)" '
        "> /dev/termination-log; "
        'cd "$WORKSHOP_RUNNER_SERVICEACCOUNT_DIR" && test -s token && test -s ca.crt'
    )
    env = [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
    kube.create(JOBS, ns, job("whoami", ["sh", "-c", script], container={"env": env}))
    (pod,) = pods_of(kube, ns, "whoami")
    assert pod["status"]["phase"] == "Succeeded", terminated(pod)
    uid, gid, name, host, port, sa_ns = terminated(pod)["message"].split(" ")
    if os.geteuid() == 0:
        assert (uid, gid) == ("1000770000", "0")
    assert name == pod["metadata"]["name"]
    assert (host, port) == ("127.0.0.1", str(kube.server_port))
    assert sa_ns == ns


def test_the_token_authenticates_as_the_pod_service_account(kube: Kube, ns: str) -> None:
    # What the runner does in-cluster: token + CA from the service-account dir, host/port from env.
    code = (
        "import json, os, ssl, urllib.request\n"
        "d = os.environ['WORKSHOP_RUNNER_SERVICEACCOUNT_DIR']\n"
        "ctx = ssl.create_default_context(cafile=d + '/ca.crt')\n"
        "url = 'https://%s:%s/apis/authentication.k8s.io/v1/selfsubjectreviews' % ("
        "os.environ['KUBERNETES_SERVICE_HOST'], os.environ['KUBERNETES_SERVICE_PORT'])\n"
        "body = json.dumps({'apiVersion': 'authentication.k8s.io/v1',"
        " 'kind': 'SelfSubjectReview'})\n"
        "req = urllib.request.Request(url, body.encode(), {'Authorization': 'Bearer ' + "
        "open(d + '/token').read(), 'Content-Type': 'application/json'})\n"
        "info = json.load(urllib.request.urlopen(req, context=ctx))['status']['userInfo']\n"
        "open('/dev/termination-log', 'w').write(info['username'])\n"
    )
    kube.create(JOBS, ns, job("token", [sys.executable, "-c", code]))
    (pod,) = pods_of(kube, ns, "token")
    assert pod["status"]["phase"] == "Succeeded", terminated(pod)
    assert terminated(pod)["message"] == f"system:serviceaccount:{ns}:default"


def test_indexed_job_pods_get_their_completion_index(kube: Kube, ns: str) -> None:
    body = job("indexed", ["sh", "-c", "echo -n $JOB_COMPLETION_INDEX > /dev/termination-log"])
    body["spec"].update(completionMode="Indexed", completions=3, parallelism=3)
    kube.create(JOBS, ns, body)
    done = wait_for(kube, JOBS, ns, "indexed", finished, timeout=60)
    assert job_condition(done) == "Complete"
    pods = pods_of(kube, ns, "indexed", count=3)
    assert sorted(terminated(p)["message"] for p in pods) == ["0", "1", "2"]


def test_failure_message_falls_back_to_the_log_tail(kube: Kube, ns: str) -> None:
    container = {"terminationMessagePolicy": "FallbackToLogsOnError"}
    kube.create(
        JOBS,
        ns,
        job("boom", ["sh", "-c", "echo starting; echo boom >&2; exit 2"], container=container),
    )
    (pod,) = pods_of(kube, ns, "boom")
    assert terminated(pod)["exitCode"] == 2
    assert terminated(pod)["message"].splitlines() == ["starting", "boom"]


def test_configmap_volume_at_its_mount_path(kube: Kube, ns: str) -> None:
    kube.create(
        CONFIGMAPS,
        ns,
        {"metadata": {"name": "greeting"}, "data": {"message": "hello from a configmap"}},
    )
    spec = {
        "volumes": [
            {"name": "greeting", "configMap": {"name": "greeting"}},
            {"name": "tmp", "emptyDir": {}},
        ],
        "container": {
            "volumeMounts": [
                {"name": "greeting", "mountPath": "/etc/greeting", "readOnly": True},
                {"name": "tmp", "mountPath": "/tmp"},
            ]
        },
    }
    script = "cp /etc/greeting/message /tmp/copy && cat /tmp/copy > /dev/termination-log"
    kube.create(JOBS, ns, job("volume", ["sh", "-c", script], **spec))
    (pod,) = pods_of(kube, ns, "volume")
    assert pod["status"]["phase"] == "Succeeded", terminated(pod)
    assert terminated(pod)["message"] == "hello from a configmap"


def test_an_unknown_program_is_a_start_error(kube: Kube, ns: str) -> None:
    kube.create(JOBS, ns, job("missing", ["/no/such/program"]))
    (pod,) = pods_of(kube, ns, "missing")
    assert pod["status"]["phase"] == "Failed"
    assert (terminated(pod)["exitCode"], terminated(pod)["reason"]) == (128, "StartError")


def test_deleting_a_pod_kills_its_process(kube: Kube, ns: str) -> None:
    pod_body = {
        "metadata": {"name": "sleeper"},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 2,
            "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "300"]}],
        },
    }
    kube.create(PODS, ns, pod_body)
    running = wait_for(
        kube,
        PODS,
        ns,
        "sleeper",
        lambda o: (o.get("status") or {}).get("phase") == "Running",
        timeout=30,
    )
    pid = int(running["status"]["containerStatuses"][0]["containerID"].rsplit("-", 1)[1])
    assert _alive(pid)
    kube.delete(PODS, ns, "sleeper")
    wait_list(
        kube, PODS, ns, lambda items: True if not items else None, timeout=30, what="the pod to go"
    )
    assert not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


def test_kubelet_shutdown_fails_pods_with_disruption_target(
    kube: Kube, ns: str, cluster: Any, tmp_path: Path
) -> None:
    node = "devcluster-kubelet-2"
    second = SimProcess(
        Path(cluster.kubeconfig),
        kubelet_status_name(node),
        ["--kubelet-only", "--node-name", node, "--namespace", ns],
        tmp_path / "kubelet-2.log",
    )
    second.start()
    try:
        body = job("disrupted", ["sleep", "300"], nodeName=node)
        body["spec"]["podFailurePolicy"] = {
            "rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]
        }
        kube.create(JOBS, ns, body)
        pods_of(kube, ns, "disrupted", terminal=False)
        wait_list(
            kube,
            PODS,
            ns,
            lambda items: (
                True
                if any((p.get("status") or {}).get("phase") == "Running" for p in items)
                else None
            ),
            timeout=30,
        )
    finally:
        second.stop()
    (pod,) = pods_of(kube, ns, "disrupted")
    conds = {c["type"]: c for c in pod["status"]["conditions"]}
    assert conds["DisruptionTarget"]["status"] == "True"
    assert conds["DisruptionTarget"]["reason"] == "TerminationByKubelet"
    assert pod["status"]["phase"] == "Failed"
    # podFailurePolicy Ignore: the failure is not counted and a replacement pod is made.
    replaced = pods_of(kube, ns, "disrupted", count=2, terminal=False)
    assert len(replaced) == 2
    current = kube.get(JOBS, ns, "disrupted")
    assert not (current.get("status") or {}).get("failed")
    print(json.dumps(second.stats()))


RETRY_SCRIPT = (
    "test -f /scratch/tried && cat /scratch/init > /dev/termination-log && exit 0; "
    "touch /scratch/tried; exit 1"
)


def test_on_failure_restarts_the_container_and_init_containers_run_first(
    kube: Kube, ns: str
) -> None:
    scratch = {"name": "scratch", "emptyDir": {}}
    mount = [{"name": "scratch", "mountPath": "/scratch"}]
    body = job(
        "retry",
        ["sh", "-c", RETRY_SCRIPT],
        container={"volumeMounts": mount},
        volumes=[scratch],
        initContainers=[
            {
                "name": "init",
                "image": "busybox",
                "command": ["sh", "-c", "echo -n prepared > /scratch/init"],
                "volumeMounts": mount,
            }
        ],
    )
    body["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    body["spec"]["backoffLimit"] = 2
    kube.create(JOBS, ns, body)
    done = wait_for(kube, JOBS, ns, "retry", finished, timeout=60)
    assert job_condition(done) == "Complete"
    (pod,) = pods_of(kube, ns, "retry")
    status = pod["status"]["containerStatuses"][0]
    assert status["restartCount"] == 1
    assert status["lastState"]["terminated"]["exitCode"] == 1
    assert terminated(pod)["message"] == "prepared"
    assert pod["status"]["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
