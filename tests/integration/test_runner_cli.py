"""The runner's CLI against the real control plane: bad inputs refused with their exit code,
one line on stderr and nothing created; identities; in-cluster config; logs; pod progress."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.integration.test_runner_support import Objects, Outcome, run_inprocess, run_subprocess

pytestmark = pytest.mark.integration
ISSUE4 = "namespace,catalog-source,rbac,istio-namespace,limit-ranges"
NO_WAIT = "namespace,rbac,istio-namespace,limit-ranges"


def _assert_refused(out: Outcome, code: int, message: str) -> None:
    assert out.code == code, out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("workshop-runner: error: ")
    assert message in lines[0]
    assert out.result["exit_code"] == code
    assert out.result["outcome"] == "failed"


@pytest.mark.parametrize(
    ("user", "message"),
    [
        ("Bad_User", "not a DNS-1123 label"),
        ("u" * 58, "at most 57"),
        ("kube-system", "system namespace kube-system"),
        ("openshift-monitoring", "system namespace openshift-monitoring"),
        ("default", "system namespace default"),
    ],
)
def test_bad_users(runner: Any, objects: Objects, user: str, message: str) -> None:
    before = objects.core.list_namespace().metadata.resource_version
    _assert_refused(runner("--user", user), 2, message)
    # Nothing written anywhere: the namespace list is at the same resourceVersion... or, as
    # other tests run concurrently, at least no namespace of that name appeared.
    assert objects.namespace(f"{user}-istio") is None
    del before


def test_unknown_step(runner: Any, objects: Objects, unique_user: str) -> None:
    _assert_refused(
        runner("--user", unique_user, "--steps", "namespace,nope"), 2, "unknown step(s) nope"
    )
    assert objects.exists(unique_user) == {"namespace": False, "istio": False}


@pytest.mark.parametrize(
    ("files", "params", "message"),
    [
        (
            {"rbac.yaml": "apiVersion: v1\nkind: X\nmetadata:\n  name: ${nope}\n"},
            None,
            "unknown parameter(s) nope",
        ),
        ({"rbac.yaml": "apiVersion: v1\nkind: [\n"}, None, "malformed YAML"),
        ({}, "nonsense_param: 1\n", "unknown parameter 'nonsense_param'"),
        ({}, "catalog_image: [\n", "malformed YAML"),
        ({}, 'catalog_source_name: "x\\nkind: Secret"\n', "is not a valid name"),
        (
            {},
            'catalog_source_name: "x\\n---\\napiVersion: v1\\nkind: Secret"\n',
            "is not a valid name",
        ),
    ],
)
def test_template_and_param_errors(  # noqa: PLR0917 (fixtures)
    runner: Any,
    objects: Objects,
    unique_user: str,
    tmp_path: Path,
    files: dict[str, str],
    params: str | None,
    message: str,
) -> None:
    argv = ["--user", unique_user]
    if files:
        directory = tmp_path / "templates"
        directory.mkdir()
        for name, text in files.items():
            (directory / name).write_text(text)
        argv += ["--templates", str(directory)]
    if params is not None:
        (tmp_path / "params.yaml").write_text(params)
        argv += ["--params", str(tmp_path / "params.yaml")]
    _assert_refused(runner(*argv), 3, message)
    assert objects.exists(unique_user) == {"namespace": False, "istio": False}


def test_no_cluster_configuration(tmp_path: Path, unique_user: str) -> None:
    out = run_subprocess(["--user", unique_user], tmp_path, {"HOME": str(tmp_path)})
    assert out.code == 2
    assert out.stderr.splitlines() == [
        "workshop-runner: error: no cluster configuration: pass --kubeconfig, set KUBECONFIG, "
        "or run in a pod (KUBERNETES_SERVICE_HOST/PORT and a service account token)"
    ]


def widget_templates(tmp_path: Path, filename: str) -> Path:
    """A templates directory whose `filename` is an object of an API nobody serves."""
    directory = tmp_path / "templates"
    directory.mkdir()
    (directory / filename).write_text(
        "apiVersion: widgets.example.com/v1\nkind: Widget\n"
        "metadata:\n  name: w\n  namespace: ${user_namespace}\n"
    )
    return directory


def test_missing_crd_is_exit_7(
    runner: Any, objects: Objects, unique_user: str, tmp_path: Path
) -> None:
    directory = widget_templates(tmp_path, "catalog-source.yaml")
    out = runner("--user", unique_user, "--templates", str(directory), "--steps", ISSUE4)
    _assert_refused(out, 7, "Widget (widgets.example.com/v1) is not served")
    assert out.result["failed_step"] == "catalog-source"
    assert objects.exists(unique_user) == {"namespace": False, "istio": False}


def test_missing_crd_of_an_extra_template_is_exit_7_before_any_write(
    runner: Any, objects: Objects, unique_user: str, tmp_path: Path
) -> None:
    """A template no step names is applied by `extra`, last; its API is still resolved first."""
    directory = widget_templates(tmp_path, "widget.yaml")
    out = runner("--user", unique_user, "--templates", str(directory))
    _assert_refused(out, 7, "Widget (widgets.example.com/v1) is not served")
    assert out.result["failed_step"] == "extra"
    assert objects.exists(unique_user) == {"namespace": False, "istio": False}


@pytest.fixture
def service_account(api_client: Any) -> tuple[str, str]:
    """A ServiceAccount with no rights at all, in a namespace of its own."""
    core = client.CoreV1Api(api_client)
    namespace = f"wr-sa-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="runner"))
    )
    return namespace, "runner"


def test_identity_without_rights_is_exit_4(  # noqa: PLR0917 (fixtures)
    cluster: Any,
    service_account: tuple[str, str],
    objects: Objects,
    unique_user: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    kubeconfig = cluster.sa_kubeconfig(*service_account, path=tmp_path / "sa.kubeconfig")
    out = run_inprocess(
        ["--user", unique_user, "--kubeconfig", str(kubeconfig), "--steps", ISSUE4],
        tmp_path,
        capsys,
        {},
    )
    _assert_refused(out, 4, "forbidden")
    assert out.result["failed_step"] == "namespace"
    assert objects.exists(unique_user) == {"namespace": False, "istio": False}


def test_in_cluster_identity_and_own_namespace(  # noqa: PLR0917 (fixtures)
    cluster: Any,
    api_client: Any,
    service_account: tuple[str, str],
    objects: Objects,
    unique_user: str,
    tmp_path: Path,
) -> None:
    namespace, name = service_account
    client.RbacAuthorizationV1Api(api_client).create_cluster_role_binding(
        client.V1ClusterRoleBinding(
            metadata=client.V1ObjectMeta(name=f"{namespace}-admin"),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="cluster-admin"
            ),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name=name, namespace=namespace)],
        )
    )
    env = cluster.in_cluster_env(namespace, name, tmp_path / "sa")
    refused = run_subprocess([], tmp_path, {**env, "WORKSHOP_USER": namespace})
    assert refused.code == 2
    assert "runner's own namespace" in refused.stderr

    out = run_subprocess(["--steps", NO_WAIT], tmp_path, {**env, "WORKSHOP_USER": unique_user})
    assert out.code == 0, out.stderr
    assert objects.exists(unique_user) == {"namespace": True, "istio": True}
    assert "in-cluster service account" in out.stdout


def test_indexed_job_user_and_json_logs_without_secrets(
    cluster: Any, objects: Objects, unique_user: str, tmp_path: Path
) -> None:
    env = {
        "KUBECONFIG": str(cluster.kubeconfig),
        "JOB_COMPLETION_INDEX": "1",
        "WORKSHOP_USERS": f"someone-else,{unique_user}",
        "USER": "root",
    }
    out = run_subprocess(["--steps", "namespace"], tmp_path, env)
    assert out.code == 0, out.stderr
    assert objects.namespace(unique_user) is not None
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert lines, "no log lines"
    for line in lines:
        assert {"user", "step", "object", "event", "level", "timestamp"} <= set(line)
        assert line["user"] in (None, unique_user)
    assert any(line["object"] == f"Namespace {unique_user}" for line in lines)
    assert "bearer" not in out.stdout.lower()
    assert json.loads((tmp_path / "termination-sub").read_text())["user"] == unique_user


def test_progress_annotation_on_own_pod(
    runner: Any, api_client: Any, service_account: tuple[str, str], unique_user: str
) -> None:
    namespace, _ = service_account
    core = client.CoreV1Api(api_client)
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="runner-pod"),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="workshop-runner")]),
    )
    core.create_namespaced_pod(namespace, pod)
    out = runner(
        "--user",
        unique_user,
        "--steps",
        "namespace,rbac",
        "--serial",
        env={"POD_NAME": "runner-pod", "POD_NAMESPACE": namespace},
    )
    assert out.code == 0, out.stderr
    live = core.read_namespaced_pod("runner-pod", namespace).metadata
    # Coalesced: the first step is written at once; the next only if 2 s passed before the end.
    assert (live.annotations or {}).get("workshop-runner.io/step", "") in {"namespace", "rbac"}
    assert "workshop-runner" in {m.manager for m in live.managed_fields or []}


def test_progress_annotation_failure_is_not_fatal(runner: Any, unique_user: str) -> None:
    out = runner(
        "--user",
        unique_user,
        "--steps",
        "namespace",
        env={"POD_NAME": "absent", "POD_NAMESPACE": "nowhere"},
    )
    assert out.code == 0, out.stderr
    assert "could not annotate own pod" in out.stdout


def test_sigterm_stops_the_run_and_names_the_step(
    sim_knobs: Any, cluster: Any, unique_user: str, tmp_path: Path
) -> None:
    sim_knobs.set({"kind": "CatalogSource", "delay": 3600})
    import os
    import signal
    import subprocess
    import sys

    term = tmp_path / "termination"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runner",
            "run",
            "--user",
            unique_user,
            "--steps",
            ISSUE4,
            "--termination-log",
            str(term),
        ],
        env={"PATH": os.environ.get("PATH", ""), "KUBECONFIG": str(cluster.kubeconfig)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    # The CatalogSource wait never ends by itself (knob); the other steps run beside it and
    # finish. SIGTERM once catalog-source is the only step still running.
    others = {"rbac", "istio-namespace", "limit-ranges"}
    waiting = False
    for line in proc.stdout:
        event = json.loads(line)
        if event["event"] == "waiting" and event["step"] == "catalog-source":
            waiting = True
        elif event["event"] == "step finished":
            others.discard(event["step"])
        if waiting and not others:
            break
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 1
    result = json.loads(term.read_text())
    assert result["failed_step"] == "catalog-source"
    assert result["reason"] == "cancelled: terminated by SIGTERM"


def test_untrusted_server_certificate_is_exit_2(
    runner: Any, kubeconfig: Path, unique_user: str, tmp_path: Path
) -> None:
    import yaml

    config = yaml.safe_load(kubeconfig.read_text())
    for entry in config["clusters"]:
        entry["cluster"]["certificate-authority"] = "/etc/ssl/certs/ca-certificates.crt"
    wrong = tmp_path / "wrong-ca.kubeconfig"
    wrong.write_text(yaml.safe_dump(config))
    out = runner("--user", unique_user, "--kubeconfig", str(wrong))
    _assert_refused(out, 2, "certificate was rejected")
