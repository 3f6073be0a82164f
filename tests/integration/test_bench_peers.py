"""The bench's peers (bench/peers) provision one user on devcluster the way a real cluster
needs: the workshop's own NetworkPolicy before the catalog, the member roll written as a
cluster admin (Maistra's member-roll admission then needs no binding)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from bench import env
from bench.contenders import ANSIBLE_DIR, BASH_PEER
from devcluster.sim.kube import NETWORKPOLICIES, ROLEBINDINGS, SMMRS, Kube
from devcluster.sim.maistra import MEMBER_OF
from devcluster.sim.testkit import cond_is

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(300),
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl needed"),
]


def assert_provisioned_as_the_workshop_needs(kube: Kube, user: str, marks: Path) -> None:
    own = [
        p
        for p in kube.list(NETWORKPOLICIES, user)[0]
        if MEMBER_OF not in (p["metadata"].get("labels") or {})  # not Maistra's copies
    ]
    assert [p["metadata"]["name"] for p in own] == ["istio-mesh-workshop-all"]
    assert own[0]["spec"]["ingress"] == [{"from": [{"namespaceSelector": {}}]}]
    assert cond_is("Ready", "True", "Configured")(kube.get(SMMRS, f"{user}-istio", "default"))
    bindings = [b["metadata"]["name"] for b in kube.list(ROLEBINDINGS, user)[0]]
    assert "workshop-runner-mesh-member" not in bindings  # a cluster admin needs none
    steps = [line.split()[2] for line in marks.read_text().splitlines()]
    assert steps[-1] == "kiali", steps


def test_the_bash_peer_provisions_a_user(
    simulators: object, kube: Kube, kubeconfig: Path, unique_user: str, tmp_path: Path
) -> None:
    marks = tmp_path / "marks.txt"
    done = subprocess.run(
        ["bash", str(BASH_PEER), unique_user],
        env={
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "POLL": "0.5",
            "TRIES": "400",
            "MARKS": str(marks),
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=280,
    )
    assert done.returncode == 0, done.stderr
    assert_provisioned_as_the_workshop_needs(kube, unique_user, marks)


@pytest.mark.skipif(
    not env.bench_bin("ansible-playbook").exists(), reason="the bench venv (make bench) not built"
)
def test_the_ansible_peer_provisions_a_user(
    simulators: object, kube: Kube, kubeconfig: Path, unique_user: str, tmp_path: Path
) -> None:
    marks = tmp_path / "marks.txt"
    for d in ("ansible-home", "ansible-tmp", "home"):
        (tmp_path / d).mkdir()
    done = subprocess.run(
        [
            str(env.bench_bin("ansible-playbook")),
            "provision.yml",
            "-e",
            json.dumps({"users": [unique_user], "poll": 1, "tries": 200}),
        ],
        env={
            **os.environ,
            "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
            "ANSIBLE_HOME": str(tmp_path / "ansible-home"),
            "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
            "K8S_AUTH_KUBECONFIG": str(kubeconfig),
            "MARKS": str(marks),
            "HOME": str(tmp_path / "home"),
        },
        cwd=ANSIBLE_DIR,
        capture_output=True,
        text=True,
        check=False,
        timeout=280,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert_provisioned_as_the_workshop_needs(kube, unique_user, marks)
