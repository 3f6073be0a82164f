"""The agnosticd-style Ansible role (examples/ansible) on devcluster: kubernetes.core only, in
the bench's own virtualenv (ansible-core + kubernetes.core), against Jobs run by the process
kubelet."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bench import env as bench_env
from devcluster.cluster import Cluster
from tests.e2e.support import IMAGE, clean_env, namespace_exists

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
ROLE_DIR = Path(__file__).resolve().parents[2] / "examples" / "ansible"
VAR = "ocp4_workload_workshop_runner_"


@pytest.fixture(scope="module")
def playbook() -> Path:
    bench_env.ensure_bench_venv()
    return bench_env.bench_bin("ansible-playbook")


def play(
    binary: Path, cluster: Cluster, tmp_path: Path, action: str, **variables: Any
) -> subprocess.CompletedProcess[str]:
    extra = {"ACTION": action, **{VAR + k: v for k, v in variables.items()}}
    environ = {
        **clean_env(),
        "ANSIBLE_CONFIG": str(ROLE_DIR / "ansible.cfg"),
        "ANSIBLE_HOME": str(tmp_path / "ansible-home"),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
        "K8S_AUTH_KUBECONFIG": str(cluster.kubeconfig),
        "PATH": f"{binary.parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    return subprocess.run(
        [str(binary), "playbook.yml", "-e", json.dumps(extra)],
        cwd=ROLE_DIR,
        env=environ,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_role_provisions_sets_facts_and_removes(
    fleet_cluster: Cluster, playbook: Path, prefix: str, tmp_path: Path, wr: Any
) -> None:
    launch_id = f"{prefix}a".replace("-", "")
    common = {"user_prefix": prefix, "user_count": 2, "launch_id": launch_id}
    ran = play(playbook, fleet_cluster, tmp_path, "create", image=IMAGE, **common)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    facts = ran.stdout.split("ocp4_workload_workshop_runner_result:")[1]  # for later tasks
    assert f"launch: {launch_id}" in facts, ran.stdout
    assert f"- {prefix}2" in facts.split("succeeded:")[1], ran.stdout
    for n in (1, 2):
        assert namespace_exists(fleet_cluster, f"{prefix}{n}-istio")
    # The role made the same Job a launch makes: the launcher follows it.
    followed = wr(fleet_cluster.kubeconfig, "status", "--launch", launch_id)
    assert followed.rc == 0, followed.stdout + followed.stderr
    assert followed.summary["counts"] == {"succeeded": 2, "failed": 0, "unfinished": 0}

    down = play(playbook, fleet_cluster, tmp_path, "destroy", image=IMAGE, **common)
    assert down.returncode == 0, down.stdout + down.stderr
    for n in (1, 2):
        assert not namespace_exists(fleet_cluster, f"{prefix}{n}")
        assert not namespace_exists(fleet_cluster, f"{prefix}{n}-istio")


def test_role_fails_the_play_naming_the_failed_user(
    fleet_cluster: Cluster, playbook: Path, prefix: str, tmp_path: Path
) -> None:
    """The second user's namespace exists and is not the runner's: the guard refuses it
    (exit 4, its index fails at once); the play fails with that user, step and reason."""
    victim = f"{prefix}2"
    with fleet_cluster.api_client() as api:
        from kubernetes import client

        client.CoreV1Api(api).create_namespace({"metadata": {"name": victim}})
    ran = play(
        playbook,
        fleet_cluster,
        tmp_path,
        "create",
        image=IMAGE,
        user_prefix=prefix,
        user_count=3,
        wait_slice=10,
    )
    assert ran.returncode != 0
    out = ran.stdout + ran.stderr
    assert "1 of 3 user(s) failed" in out, out
    line = next(x for x in out.splitlines() if x.strip().startswith(victim))
    assert " namespace " in line, line
    assert "workshop-runner may only" in line, line
    assert f"{prefix}1 " not in out.split("1 of 3 user(s) failed")[1]
