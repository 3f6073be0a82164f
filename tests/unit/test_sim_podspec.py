"""What the process kubelet derives from a Pod spec: env, argv, paths, identity, messages."""

from __future__ import annotations

import stat
import tempfile
from pathlib import Path
from typing import Any

import pytest

from devcluster.sim import podspec
from devcluster.sim.podspec import ImageMap, Lookups, PathMap, PodSpecError

POD: dict[str, Any] = {
    "metadata": {
        "name": "runner-0-abcde",
        "namespace": "workshop-runner",
        "uid": "u-1",
        "labels": {"app": "x"},
        "annotations": {"batch.kubernetes.io/job-completion-index": "4"},
    },
    "spec": {"nodeName": "devcluster-kubelet", "serviceAccountName": "workshop-runner"},
    "status": {"podIP": "127.0.0.1"},
}
INDEX_FIELD = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
CONFIGMAPS = {"settings": {"LEVEL": "debug", "users": "a,b"}}
SECRETS = {"creds": {"password": "s3cret"}}
LOOKUPS = Lookups(configmap=CONFIGMAPS.get, secret=SECRETS.get)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$(A)-$(B)", "1-2"),
        ("$$(A)", "$(A)"),
        ("$(MISSING)", "$(MISSING)"),
        ("cost $5", "cost $5"),
        ("$(A", "$(A"),
        ("end$", "end$"),
    ],
)
def test_expansion_follows_kubernetes(text: str, expected: str) -> None:
    assert podspec.expand(text, {"A": "1", "B": "2"}) == expected


def test_env_from_every_source_in_order() -> None:
    container = {
        "name": "runner",
        "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {
                "name": "POD_NAMESPACE",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
            },
            {
                "name": "JOB_COMPLETION_INDEX",
                "valueFrom": {"fieldRef": {"fieldPath": INDEX_FIELD}},
            },
            {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {
                "name": "USERS",
                "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "users"}},
            },
            {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
            {
                "name": "OPT",
                "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": True}},
            },
            {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
            {
                "name": "MEM",
                "valueFrom": {
                    "resourceFieldRef": {"resource": "requests.memory", "divisor": "1Mi"}
                },
            },
            {"name": "GREETING", "value": "hi $(POD_NAME) in $(KUBERNETES_SERVICE_HOST)"},
            {"name": "KUBERNETES_SERVICE_PORT", "value": "9999"},
        ],
        "resources": {"limits": {"cpu": "500m"}, "requests": {"memory": "128Mi"}},
    }
    base = podspec.kubelet_env(POD, "127.0.0.1", 6443)
    env = podspec.build_env(POD, container, base, LOOKUPS)
    assert env["POD_NAME"] == "runner-0-abcde"
    assert env["POD_NAMESPACE"] == "workshop-runner"
    assert env["JOB_COMPLETION_INDEX"] == "4"
    assert env["SA"] == "workshop-runner"
    assert env["IP"] == "127.0.0.1"
    assert env["CFG_LEVEL"] == "debug"
    assert env["USERS"] == "a,b"
    assert env["PW"] == "s3cret"
    assert "OPT" not in env
    assert env["CPU"] == "1"
    assert env["MEM"] == "128"
    assert env["GREETING"] == "hi runner-0-abcde in 127.0.0.1"
    assert env["KUBERNETES_SERVICE_PORT"] == "9999"
    assert env["KUBERNETES_SERVICE_HOST"] == "127.0.0.1"
    assert env["HOSTNAME"] == "runner-0-abcde"


def test_missing_required_references_are_config_errors() -> None:
    missing_cm = {
        "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k"}}}]
    }
    with pytest.raises(PodSpecError, match='configmap "nope" not found'):
        podspec.build_env(POD, missing_cm, {}, LOOKUPS)
    missing_key = {
        "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "k"}}}]
    }
    with pytest.raises(PodSpecError, match="couldn't find key k"):
        podspec.build_env(POD, missing_key, {}, LOOKUPS)
    with pytest.raises(PodSpecError, match="unsupported fieldRef"):
        podspec.field_value(POD, "spec.containers")


def test_an_image_map_entry_can_give_the_images_environment() -> None:
    images = ImageMap.from_mapping(
        {"*runner-scaled*": {"command": ["/opt/bin/run"], "env": {"SCALE": 0.1}}},
        ImageMap.default(Path("/venv/bin")),
    )
    assert images.entrypoint("runner-scaled:1") == ("/opt/bin/run",)
    assert images.env("runner-scaled:1") == {"SCALE": "0.1"}
    assert images.env("quay.io/acme/workshop-runner:0.1.0") == {}  # the default: no ENV
    assert images.entrypoint("quay.io/acme/workshop-runner:0.1.0") == ("/venv/bin/workshop-runner",)


def test_argv_from_image_map_and_rewritten_mount_paths(tmp_path: Path) -> None:
    images = ImageMap.default(Path("/venv/bin"))
    paths = PathMap({"/etc/workshop-runner/templates": str(tmp_path / "tpl"), "/tmp": "/local/tmp"})
    container = {
        "image": "quay.io/acme/workshop-runner:0.1.0",
        "args": [
            "run",
            "--templates",
            "/etc/workshop-runner/templates",
            "--out=/tmp/x",
            "$(USER_X)",
        ],
    }
    argv = podspec.build_argv(container, images, {"USER_X": "user7"}, paths)
    assert argv == [
        "/venv/bin/workshop-runner",
        "run",
        "--templates",
        str(tmp_path / "tpl"),
        "--out=/local/tmp/x",
        "user7",
    ]
    assert images.bin_dirs("workshop-runner:dev") == ["/venv/bin"]
    assert podspec.build_argv(
        {"image": "busybox", "command": ["sh", "-c", "exit 3"]}, images, {}, paths
    ) == [
        "sh",
        "-c",
        "exit 3",
    ]
    with pytest.raises(PodSpecError) as err:
        podspec.build_argv({"image": "busybox"}, images, {}, paths)
    assert err.value.reason == "StartError"


def test_path_map_prefers_the_longest_mount() -> None:
    paths = PathMap({"/data": "/l/data", "/data/deep": "/l/deep"})
    assert paths.local("/data/deep/x") == "/l/deep/x"
    assert paths.local("/data/x") == "/l/data/x"
    assert paths.local("/database") is None
    assert paths.rewrite("relative") == "relative"


def test_termination_message_limits_and_fallback() -> None:
    assert podspec.termination_message("x" * 5000, "", "File", 1) == "x" * 4096
    logs = "\n".join(f"line {i}" for i in range(200))
    fallback = podspec.termination_message("", logs, "FallbackToLogsOnError", 2)
    assert fallback.endswith("line 199")
    assert len(fallback.splitlines()) <= 80
    assert len(fallback.encode()) <= 2048
    assert podspec.termination_message("", logs, "FallbackToLogsOnError", 0) == ""
    assert podspec.termination_message("", logs, "File", 2) == ""
    assert podspec.termination_message('{"ok": 1}', logs, "FallbackToLogsOnError", 2) == '{"ok": 1}'


def test_identity_is_the_arbitrary_uid_with_group_zero() -> None:
    container: dict[str, Any] = {"name": "c"}
    assert podspec.run_identity(POD, container, 1000770000) == (1000770000, 0, [0])
    pod = {
        **POD,
        "spec": {
            "securityContext": {"runAsUser": 1001, "fsGroup": 2000, "supplementalGroups": [5]}
        },
    }
    assert podspec.run_identity(pod, {"securityContext": {"runAsGroup": 7}}, 1) == (
        1001,
        7,
        [0, 5, 2000],
    )
    with pytest.raises(PodSpecError, match="runAsNonRoot"):
        podspec.run_identity(POD, {"securityContext": {"runAsNonRoot": True, "runAsUser": 0}}, 5)


def test_can_execute_checks_every_directory_and_the_interpreter() -> None:
    # Not tmp_path: pytest makes it 0700, which would hide everything from another uid.
    with tempfile.TemporaryDirectory(prefix="sim-exec-") as top:
        _check_can_execute(Path(top))


def _check_can_execute(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    interp = private / "python"
    interp.write_text("")
    interp.chmod(0o755)
    public = tmp_path / "public"
    public.mkdir(mode=0o755)
    script = public / "tool"
    script.write_text(f"#!{interp}\n")
    script.chmod(0o755)
    tmp_path.chmod(0o755)
    for parent in tmp_path.parents:
        if not parent.stat().st_mode & stat.S_IXOTH:
            pytest.skip(f"{parent} is not searchable by others")
    uid = 1000770000
    assert podspec.can_execute(str(interp), 0, [0])
    assert not podspec.can_execute(str(interp), uid, [0])
    assert not podspec.can_execute(str(script), uid, [0])
    script.write_text("#!/bin/sh\n")
    assert podspec.can_execute(str(script), uid, [0])
