"""No credential in any output: with debug logging on, every log line, stderr and the termination
message are searched for the ServiceAccount token (whole, and each of its three JWT parts) and
for anything shaped like an Authorization header or a bearer credential. Runs: a full run
through the fault proxy (so retries log their errors), an in-cluster run (token read from the
service-account directory), and runs whose token is rejected or lacks rights."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from devcluster.cluster import Cluster
from devcluster.faultproxy import FaultPlan, FaultProxy
from tests.faults.support import RUNNER_NAMESPACE, RUNNER_SA, Run, run_runner

pytestmark = pytest.mark.faults

HEADER_SHAPES = re.compile(r"(?i)(authorization\s*[\"']?\s*[:=]|\bbearer\s+[A-Za-z0-9._~+/=-]{8,})")


def _token_of(kubeconfig: Path) -> str:
    token: str = yaml.safe_load(kubeconfig.read_text())["users"][0]["user"]["token"]
    return token


def _assert_clean(run: Run, secrets: list[str]) -> None:
    text = "\n".join([run.stdout, run.stderr, yaml.safe_dump(run.result)])
    assert run.stdout.strip(), "no log output to check"
    for secret in secrets:
        parts = [secret, *[p for p in secret.split(".") if len(p) >= 16]]
        for part in parts:
            assert part not in text, "a token (or a part of it) appears in the output"
    found = HEADER_SHAPES.findall(text)
    assert not found, f"header-shaped text in the output: {found}"


def test_debug_run_through_faults_logs_no_credentials(
    proxy: FaultProxy,
    proxied_kubeconfig: Path,
    sims: Any,
    unique_user: str,
    tmp_path: Path,
) -> None:
    proxy.set_plan(FaultPlan({"429": 0.1, "500": 0.05, "reset": 0.05, "drop_watch": 0.3}, seed=21))
    run = run_runner(
        ["--user", unique_user, "--kubeconfig", str(proxied_kubeconfig), "--log-level", "debug"],
        tmp_path,
        timeout=240,
    )
    assert run.code == 0, run.explain()
    assert any(e.get("event") == "retrying" for e in run.events), "no retry was logged"
    _assert_clean(run, [_token_of(proxied_kubeconfig)])


def test_in_cluster_debug_run_logs_no_credentials(  # noqa: PLR0917 (fixtures)
    cluster: Cluster,
    proxy: FaultProxy,
    runner_kubeconfig: Path,
    sims: Any,
    unique_user: str,
    tmp_path: Path,
) -> None:
    env = cluster.in_cluster_env(RUNNER_NAMESPACE, RUNNER_SA, tmp_path / "sa")
    env["KUBERNETES_SERVICE_PORT"] = str(proxy.port)  # through the proxy, same CA
    token = (tmp_path / "sa" / "token").read_text()
    run = run_runner(["--user", unique_user, "--log-level", "debug"], tmp_path, env, timeout=240)
    assert run.code == 0, run.explain()
    _assert_clean(run, [token])


def test_rejected_and_unauthorized_tokens_are_not_echoed(  # noqa: PLR0917 (fixtures)
    cluster: Cluster,
    proxy: FaultProxy,
    proxied_kubeconfig: Path,
    api_client: Any,
    unique_user: str,
    tmp_path: Path,
) -> None:
    # A syntactically valid JWT the apiserver did not sign: 401.
    forged = _token_of(proxied_kubeconfig)
    head, payload, signature = forged.split(".")
    forged = ".".join([head, payload, signature[::-1]])
    config = yaml.safe_load(proxied_kubeconfig.read_text())
    config["users"][0]["user"]["token"] = forged
    bad = tmp_path / "forged.kubeconfig"
    bad.write_text(yaml.safe_dump(config))
    run = run_runner(
        ["--user", unique_user, "--kubeconfig", str(bad), "--log-level", "debug"],
        tmp_path / "forged",
    )
    assert run.code == 4, run.explain()
    _assert_clean(run, [forged])
    # A valid token without rights: 403 messages name the identity, never its token.
    ns = f"{unique_user}-nobody"
    core = client.CoreV1Api(api_client)
    core.create_namespace({"metadata": {"name": ns}})
    try:
        core.create_namespaced_service_account(ns, {"metadata": {"name": "nobody"}})
        nobody = proxy.kubeconfig(
            cluster.sa_kubeconfig(ns, "nobody", tmp_path / "n.kc"), tmp_path / "np.kc"
        )
        run = run_runner(
            ["--user", unique_user, "--kubeconfig", str(nobody), "--log-level", "debug"],
            tmp_path / "nobody",
        )
        assert run.code == 4, run.explain()
        _assert_clean(run, [_token_of(nobody)])
    finally:
        core.delete_namespace(ns)
