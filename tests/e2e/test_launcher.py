"""The launcher end to end on devcluster: real kube-apiserver and job controller, Pods run by
the process kubelet with the installed console script, simulated operators."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from devcluster.cluster import Cluster
from steps import STEPS
from steps.kiali import run_state
from tests.e2e.meter import metered_kubeconfig, scrape
from tests.e2e.support import (
    IMAGE,
    JOBS_NAMESPACE,
    clean_env,
    command,
    namespace_exists,
)
from tests.manifests import kubectl_events

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
STEP_NAMES = [s.NAME for s in STEPS]
MESH_MEMBER = "workshop-runner-mesh-member"
FIGURES = Path(__file__).resolve().parents[2] / ".cache" / "e2e-launcher-figures.json"


def launch_args(prefix: str, count: int, *extra: str) -> tuple[str, ...]:
    return ("launch", "--count", str(count), "--prefix", prefix, "--image", IMAGE, *extra)


def assert_all_succeeded(ran: Any, count: int) -> None:
    assert ran.rc == 0, ran.stdout + ran.stderr
    assert ran.summary["counts"] == {"succeeded": count, "failed": 0, "unfinished": 0}
    for user in ran.users().values():
        assert user["steps_done"], user  # the runner's termination message was read


def test_indexed_launch_of_ten_users_all_succeed(
    fleet_cluster: Cluster, wr: Any, prefix: str
) -> None:
    ran = wr(fleet_cluster.kubeconfig, *launch_args(prefix, 10, "--parallelism", "5"))
    assert_all_succeeded(ran, 10)
    assert ran.summary["mode"] == "indexed"
    assert {u["job"] for u in ran.users().values()} == {f"wr-{ran.summary['launch']}"}
    for n in (1, 10):
        assert namespace_exists(fleet_cluster, f"{prefix}{n}")
        assert namespace_exists(fleet_cluster, f"{prefix}{n}-istio")
    # The Jobs ran as the deploy ServiceAccount, which Maistra's member-roll webhook lets into
    # a roll only after it bound the mesh-member role to itself in the user's namespace.
    with fleet_cluster.api_client() as api:
        from kubernetes import client

        rbac = client.RbacAuthorizationV1Api(api)
        for n in (1, 10):
            binding = rbac.read_namespaced_role_binding(MESH_MEMBER, f"{prefix}{n}")
            assert [(s.kind, s.namespace, s.name) for s in binding.subjects] == [
                ("ServiceAccount", "workshop-runner", "workshop-runner")
            ]
    # Live progress: one JSON line per change, showing the steps the pods reported.
    lines = ran.lines()
    seen_steps = {
        s for x in lines if x.get("event") == "progress" for s in (x["step"] or "").split(",")
    }
    assert seen_steps & set(STEP_NAMES)
    assert lines[-1]["event"] == "summary"


def test_jobs_mode_relaunch_unchanged_and_teardown(
    fleet_cluster: Cluster, wr: Any, prefix: str
) -> None:
    kubeconfig = fleet_cluster.kubeconfig
    first = wr(kubeconfig, *launch_args(prefix, 10, "--mode", "jobs"))
    assert_all_succeeded(first, 10)
    assert len({u["job"] for u in first.users().values()}) == 10

    # Launching the same users again: deploy base unchanged, every step of every user
    # unchanged, quickly.
    again = wr(kubeconfig, *launch_args(prefix, 10, "--mode", "jobs"))
    assert_all_succeeded(again, 10)
    assert "applied: ConfigMap" in again.stderr  # only the new launch's own objects
    assert "ClusterRole" not in again.stderr.split("applied:")[1].split("(")[0]
    for user in again.users().values():
        assert user["steps_changed"] == 0, user

    users = ",".join(f"{prefix}{n}" for n in range(1, 11))
    down = wr(kubeconfig, "teardown", "--user", users)
    assert down.rc == 0, down.stdout + down.stderr
    for n in range(1, 11):
        assert not namespace_exists(fleet_cluster, f"{prefix}{n}")
        assert not namespace_exists(fleet_cluster, f"{prefix}{n}-istio")
    twice = wr(kubeconfig, "teardown", "--user", users)
    assert twice.rc == 0, twice.stdout + twice.stderr
    assert twice.stderr.count("nothing left to remove") == 10


def test_a_user_refused_by_the_guard_fails_alone(
    fleet_cluster: Cluster, wr: Any, prefix: str
) -> None:
    """A user whose namespace exists and is not the runner's: the admission guard refuses
    (exit 4, no retry); the others succeed; the launch exits 10 naming user, step, reason."""
    victim = f"{prefix}2"
    with fleet_cluster.api_client() as api:
        from kubernetes import client

        client.CoreV1Api(api).create_namespace({"metadata": {"name": victim}})
    ran = wr(fleet_cluster.kubeconfig, *launch_args(prefix, 3))
    assert ran.rc == 10, ran.stdout + ran.stderr
    assert ran.summary["counts"] == {"succeeded": 2, "failed": 1, "unfinished": 0}
    failed = ran.users()[victim]
    assert (failed["failed_step"], failed["exit_code"], failed["retries"]) == ("namespace", 4, 0)
    assert "workshop-runner may only" in failed["reason"]


def test_an_injected_failure_fails_that_user_only_and_the_retry_runs_only_it(
    fleet_cluster: Cluster, wr: Any, prefix: str, sim_knobs: Any
) -> None:
    """Kiali's failed runs: exit 6 (retried by the Job), and once the knob is cleared the
    operator's next run succeeds - a failure an admin can fix and then retry."""
    victim = f"{prefix}2"
    sim_knobs.set({"user": victim, "kind": "Kiali", "fail": "Failed: injected by e2e"})
    ran = wr(fleet_cluster.kubeconfig, *launch_args(prefix, 3))
    assert ran.rc == 10, ran.stdout + ran.stderr
    assert ran.summary["counts"] == {"succeeded": 2, "failed": 1, "unfinished": 0}
    failed = ran.users()[victim]
    assert failed["failed_step"] == "kiali"
    assert "injected by e2e" in failed["reason"]
    assert failed["exit_code"] == 6
    assert failed["retries"] == 2  # exit 6 is retried: backoffLimitPerIndex 2
    # `kubectl get events`: one Event per user on the Job (the launcher's), one per pod (the
    # runner's): Provisioned for each success, StepFailed for each of the victim's attempts.
    job = f"wr-{ran.summary['launch']}"
    events = kubectl_events(fleet_cluster.kubeconfig, JOBS_NAMESPACE)
    on_job = {
        e["note"].split(":")[0]: e
        for e in events
        if (e["regarding"]["kind"], e["regarding"]["name"]) == ("Job", job)
    }
    assert {k: v["reason"] for k, v in on_job.items()} == {
        f"user {prefix}1": "UserSucceeded",
        f"user {victim}": "UserFailed",
        f"user {prefix}3": "UserSucceeded",
    }
    assert "step kiali failed with exit code 6: " in on_job[f"user {victim}"]["note"]
    on_pods = [
        e["reason"]
        for e in events
        if e["regarding"]["kind"] == "Pod" and e["regarding"]["name"].startswith(f"{job}-")
    ]
    assert sorted(on_pods) == ["Provisioned"] * 2 + ["StepFailed"] * 3

    # Retry: the summary said how; with the knob fixed, exactly the victim runs again, with
    # the same image and templates. A retry of a launch still running is refused.
    launch = ran.summary["launch"]
    assert f"workshop-runner launch --retry-failed --launch {launch} -n" in ran.stderr
    sim_knobs.set()
    kiali = f"/apis/kiali.io/v1alpha1/namespaces/{victim}-istio/kialis/kiali"
    deadline = time.monotonic() + 120
    while run_state(json.loads(fleet_cluster.raw(kiali)[1])) != "successful":
        assert time.monotonic() < deadline, "Kiali did not recover once the knob was cleared"
        time.sleep(0.5)
    kubeconfig = fleet_cluster.kubeconfig
    retry = wr(kubeconfig, "launch", "--retry-failed", "--launch", launch, "--no-wait")
    assert retry.rc == 0, retry.stdout + retry.stderr
    assert f"retrying launch {launch}: 1 user(s) that failed or did not finish: {victim}" in (
        retry.stderr
    )
    again = retry.stdout.strip().splitlines()[-1]
    followed = wr(kubeconfig, "status", "--launch", again)
    assert followed.rc == 0, followed.stdout + followed.stderr
    assert list(followed.users()) == [victim]
    assert followed.summary["image"] == ran.summary["image"]


def test_a_retry_of_a_running_launch_is_refused(
    fleet_cluster: Cluster, wr: Any, prefix: str
) -> None:
    """A suspended Job of a launch: never finished, and starts no pod."""
    launch = f"{prefix}running"
    job = {
        "metadata": {
            "name": f"wr-{launch}",
            "labels": {
                "app.kubernetes.io/name": "workshop-runner",
                "workshop-runner.io/launch": launch,
            },
        },
        "spec": {
            "suspend": True,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "runner", "image": IMAGE}],
                }
            },
        },
    }
    from kubernetes import client

    # In `default`: it always exists (no earlier launch needed), and no namespace comes or
    # goes (other suites compare the set of namespaces).
    namespace = "default"
    with fleet_cluster.api_client() as api:
        jobs = client.BatchV1Api(api)
        jobs.create_namespaced_job(namespace, job)
        try:
            refused = wr(
                fleet_cluster.kubeconfig,
                "launch",
                "--retry-failed",
                "--launch",
                launch,
                "-n",
                namespace,
            )
        finally:
            jobs.delete_namespaced_job(f"wr-{launch}", namespace, propagation_policy="Background")
    assert refused.rc == 2, refused.stdout + refused.stderr
    assert f"launch {launch} is still running (1 Job(s) not finished)" in refused.stderr


def test_ctrl_c_leaves_the_jobs_running_and_status_reattaches(
    fleet_cluster: Cluster, wr: Any, prefix: str
) -> None:
    kubeconfig = fleet_cluster.kubeconfig
    # The launcher as a terminal starts it: a test run started in the background by a
    # non-interactive shell has SIGINT ignored, a child inherits that, and Python then installs
    # no KeyboardInterrupt handler (the launch ran to its end with exit 0 in such a CI run).
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(
            command(kubeconfig, *launch_args(prefix, 2), "--progress", "json"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
        )
    finally:
        signal.signal(signal.SIGINT, inherited)
    assert proc.stdout is not None
    launch_id = ""
    for line in proc.stdout:  # interrupt as soon as the launch is being followed
        launch_id = json.loads(line)["launch"]
        break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert f"workshop-runner status --launch {launch_id}" in out
    ran = wr(kubeconfig, "status", "--launch", launch_id)
    assert_all_succeeded(ran, 2)
    snapshot = wr(kubeconfig, "status", "--launch", launch_id, "--no-wait")
    assert snapshot.rc == 0
    missing = wr(kubeconfig, "status", "--launch", "no-such-launch")
    assert missing.rc == 2


def test_launcher_requests_do_not_grow_with_users(
    fleet_cluster: Cluster, wr: Any, prefix: str, tmp_path: Path
) -> None:
    """Counted on the apiserver: the launcher runs as its own ServiceAccount, classified by
    an APF FlowSchema; apiserver_request_total gives everyone's total for comparison."""
    kubeconfig = metered_kubeconfig(fleet_cluster, tmp_path / "meter.kubeconfig")
    wr(kubeconfig, *launch_args(f"{prefix}w", 1))  # warm-up: deploy base applied once
    figures: dict[str, Any] = {}
    for count in (10, 50):
        before = scrape(fleet_cluster)
        started = time.monotonic()
        ran = wr(kubeconfig, *launch_args(f"{prefix}{count}u", count, "--parallelism", "10"))
        seconds = time.monotonic() - started
        time.sleep(1)  # the last watch closes after the summary is printed
        delta = scrape(fleet_cluster).minus(before)
        assert_all_succeeded(ran, count)
        figures[str(count)] = {
            "launcher_requests_apiserver": delta.launcher,
            "launcher_requests_client": ran.summary["api_requests"],
            "all_clients_requests_apiserver": delta.total,
            "all_clients_by_verb": {k: v for k, v in delta.by_verb.items() if v},
            "launch_seconds": round(seconds, 1),
        }
    FIGURES.parent.mkdir(exist_ok=True)
    FIGURES.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
    ten, fifty = figures["10"], figures["50"]
    # Bounded: the same requests for 5x the users (a relist or a watch renewal at most),
    # besides the one Event the launcher records per user when it finishes.
    assert fifty["launcher_requests_apiserver"] - 50 <= ten["launcher_requests_apiserver"] - 10 + 4
    assert fifty["all_clients_requests_apiserver"] > ten["all_clients_requests_apiserver"]
