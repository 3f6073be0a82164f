"""A corpus of bad inputs: names, parameters, templates, identities, missing APIs.

Every case runs the real console script against the real apiserver, through the fault proxy
injecting nothing (so every request the runner makes is seen and counted), with the manifests'
ServiceAccount. Each must give its documented exit code, exactly one line on stderr naming what
is wrong, the same exit code in the termination message, and write nothing: the proxy forwarded
no POST/PUT/PATCH/DELETE (in the foreign-namespace case, the one it forwarded was refused),
and the set of namespaces is unchanged.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from devcluster.cluster import Cluster
from devcluster.faultproxy import FaultProxy
from tests.faults.support import FIGURES, RUNNER_NAMESPACE, Run, run_runner

pytestmark = pytest.mark.faults

USER = "{user}"  # replaced by a fresh user name per case


@dataclass(frozen=True)
class Case:
    id: str
    code: int
    message: str  # must appear in the one stderr line ({user} is replaced)
    argv: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    templates: dict[str, str] = field(default_factory=dict)
    params: str | None = None
    setup: str | None = None  # a named preparation (below) that needs the cluster
    with_kubeconfig: bool = True


def _tpl(api_version: str, kind: str, name: str = "x", namespace: str = "${user}") -> str:
    return yaml.safe_dump(
        {
            "apiVersion": api_version,
            "kind": kind,
            "metadata": {"name": name, "namespace": namespace},
        }
    )


CASES = [
    # -- names -------------------------------------------------------------------------------
    Case("upper-case", 2, "user 'Bad_User' is not a DNS-1123 label", ("--user", "Bad_User")),
    Case("dot", 2, "user 'a.b' is not a DNS-1123 label", ("--user", "a.b")),
    Case("leading-dash", 2, "user '-abc' is not a DNS-1123 label", ("--user=-abc",)),
    Case("too-long", 2, f"user '{'u' * 58}' is 58 characters; at most 57", ("--user", "u" * 58)),
    Case("kube-system", 2, "system namespace kube-system", ("--user", "kube-system")),
    Case("default", 2, "system namespace default", ("--user", "default")),
    Case("openshift", 2, "system namespace openshift", ("--user", "openshift")),
    Case(
        "openshift-x",
        2,
        "system namespace openshift-monitoring",
        ("--user", "openshift-monitoring"),
    ),
    # `kube` itself is fine, but its mesh namespace kube-istio is a system name.
    Case(
        "kube-istio", 2, "user 'kube' would use the system namespace kube-istio", ("--user", "kube")
    ),
    Case("env-user", 2, "system namespace kube-public", env={"WORKSHOP_USER": "kube-public"}),
    Case("no-user", 2, "no user: pass --user, set WORKSHOP_USER"),
    Case("empty-user", 2, "no user: pass --user", ("--user", "")),
    Case(
        "own-namespace",
        2,
        f"would use the runner's own namespace {RUNNER_NAMESPACE}",
        ("--user", RUNNER_NAMESPACE),
        env={"POD_NAMESPACE": RUNNER_NAMESPACE},
    ),
    # -- Indexed Job identities ----------------------------------------------------------------
    Case(
        "index-out-of-range",
        2,
        "JOB_COMPLETION_INDEX=5 is outside the users list (2 users)",
        env={"JOB_COMPLETION_INDEX": "5", "WORKSHOP_USERS": "a1,a2"},
    ),
    Case(
        "index-not-integer",
        2,
        "JOB_COMPLETION_INDEX='x' is not an integer",
        env={"JOB_COMPLETION_INDEX": "x", "WORKSHOP_USERS": "a1"},
    ),
    Case(
        "index-empty-list",
        2,
        "JOB_COMPLETION_INDEX is set but the users list is empty",
        env={"JOB_COMPLETION_INDEX": "0"},
    ),
    Case(
        "index-bad-user",
        2,
        "user 'Not_Valid' is not a DNS-1123 label",
        env={"JOB_COMPLETION_INDEX": "1", "WORKSHOP_USERS": "ok1,Not_Valid"},
    ),
    Case(
        "users-file-missing",
        2,
        "users file",
        ("--users-file", "/nonexistent/users.txt"),
        env={"JOB_COMPLETION_INDEX": "0"},
    ),
    # -- steps and flags -----------------------------------------------------------------------
    Case("unknown-step", 2, "unknown step(s) nope", ("--user", USER, "--steps", "namespace,nope")),
    Case("unknown-skip", 2, "unknown step(s) bogus", ("--user", USER, "--skip", "bogus")),
    Case("unknown-from", 2, "unknown step(s) later", ("--user", USER, "--from", "later")),
    Case(
        "step-typo",
        2,
        "unknown step(s) memberroll; did you mean member-roll?",
        ("--user", USER, "--steps", "memberroll"),
    ),
    Case(
        "empty-selection",
        2,
        "the step selection is empty",
        ("--user", USER, "--steps", "namespace", "--skip", "namespace"),
    ),
    Case(
        "unknown-flag", 2, "unrecognized arguments: --frobnicate", ("--user", USER, "--frobnicate")
    ),
    Case("bad-log-format", 2, "invalid choice: 'xml'", ("--user", USER, "--log-format", "xml")),
    Case(
        "flag-value-typo",
        2,
        "invalid choice: 'jsn'; did you mean 'json'?",
        ("--user", USER, "--log-format", "jsn"),
    ),
    Case("timeout-syntax", 2, "--timeout 'namespace'", ("--user", USER, "--timeout", "namespace")),
    Case(
        "timeout-step", 2, "--timeout: unknown step nope", ("--user", USER, "--timeout", "nope=5")
    ),
    # -- parameters ----------------------------------------------------------------------------
    Case(
        "param-unknown",
        3,
        "unknown parameter 'nonsense_param'",
        ("--user", USER),
        params="nonsense_param: 1\n",
    ),
    Case(
        "param-type",
        3,
        "catalog_image must be a string, not an integer",
        ("--user", USER),
        params="catalog_image: 5\n",
    ),
    Case(
        "param-typo",
        3,
        "unknown parameter 'smcp_verison'; did you mean 'smcp_version'?",
        ("--user", USER),
        params="smcp_verison: v2.5\n",
    ),
    Case(
        "param-not-integer",
        3,
        "smcp_trace_sampling must be an integer, not a string",
        ("--user", USER),
        params="smcp_trace_sampling: lots\n",
    ),
    Case(
        "param-derived",
        3,
        "user is derived from the user and cannot be set",
        ("--user", USER),
        params="user: someone-else\n",
    ),
    Case("param-malformed", 3, "malformed YAML", ("--user", USER), params="catalog_image: [\n"),
    Case(
        "param-not-mapping",
        3,
        "expected a mapping of parameter names",
        ("--user", USER),
        params="- a\n- b\n",
    ),
    Case(
        "param-file-missing",
        3,
        "params file /nonexistent/params.yaml",
        ("--user", USER, "--params", "/nonexistent/params.yaml"),
    ),
    Case(
        "namespace-mode",
        3,
        "namespace_mode must be 'namespace' or 'project-request'",
        ("--user", USER),
        params="namespace_mode: projects\n",
    ),
    Case(
        "param-injects-yaml",
        3,
        "is not a valid name",
        ("--user", USER),
        params='catalog_source_name: "x\\nkind: Secret"\n',
    ),
    # -- templates -----------------------------------------------------------------------------
    Case(
        "template-unknown-param",
        3,
        "unknown parameter(s) nope",
        ("--user", USER),
        templates={"rbac.yaml": "apiVersion: v1\nkind: X\nmetadata:\n  name: ${nope}\n"},
    ),
    Case(
        "template-malformed",
        3,
        "rbac.yaml: malformed YAML",
        ("--user", USER),
        templates={"rbac.yaml": "apiVersion: v1\nkind: [\n"},
    ),
    Case(
        "template-no-kind",
        3,
        "missing kind",
        ("--user", USER),
        templates={"rbac.yaml": "apiVersion: v1\nmetadata:\n  name: x\n"},
    ),
    Case(
        "template-not-mapping",
        3,
        "expected a mapping, got list",
        ("--user", USER),
        templates={"rbac.yaml": "- a\n- b\n"},
    ),
    Case(
        "template-list-in-string",
        3,
        "kiali_excluded_workloads is a list",
        ("--user", USER),
        templates={"rbac.yaml": _tpl("v1", "ConfigMap", name="x-${kiali_excluded_workloads}")},
    ),
    Case(
        "templates-dir-missing",
        3,
        "templates directory /nonexistent/tpl does not exist",
        ("--user", USER, "--templates", "/nonexistent/tpl"),
    ),
    # -- cluster configuration and identities ----------------------------------------------------
    Case(
        "no-cluster-config", 2, "no cluster configuration", ("--user", USER), with_kubeconfig=False
    ),
    Case(
        "kubeconfig-missing",
        2,
        "kubeconfig /nonexistent/kubeconfig",
        ("--user", USER, "--kubeconfig", "/nonexistent/kubeconfig"),
        with_kubeconfig=False,
    ),
    Case("unknown-context", 2, "nosuchcontext", ("--user", USER, "--context", "nosuchcontext")),
    Case(
        "in-cluster-no-token",
        2,
        "in-cluster config",
        ("--user", USER),
        setup="in-cluster-no-token",
        with_kubeconfig=False,
    ),
    Case(
        "untrusted-ca",
        2,
        "the API server's certificate was rejected",
        ("--user", USER),
        setup="untrusted-ca",
        with_kubeconfig=False,
    ),
    Case(
        "invalid-token",
        4,
        "unauthorized (the credentials were rejected)",
        ("--user", USER),
        setup="invalid-token",
        with_kubeconfig=False,
    ),
    Case(
        "sa-without-rights",
        4,
        "forbidden",
        ("--user", USER),
        setup="sa-without-rights",
        with_kubeconfig=False,
    ),
    Case(
        "foreign-namespace", 4, "workshop-runner-guard", ("--user", USER), setup="foreign-namespace"
    ),
    # -- missing APIs ----------------------------------------------------------------------------
    Case(
        "missing-crd",
        7,
        "required API Widget (example.com/v1) is not served",
        ("--user", USER),
        templates={"rbac.yaml": _tpl("example.com/v1", "Widget")},
    ),
    Case(
        "missing-version",
        7,
        "required API CatalogSource (operators.coreos.com/v9) is not served",
        ("--user", USER),
        templates={"catalog-source.yaml": _tpl("operators.coreos.com/v9", "CatalogSource")},
    ),
]


def test_the_corpus_is_big_enough() -> None:
    assert len({c.id for c in CASES}) == len(CASES) >= 20


@pytest.fixture
def namespaces(api_client: Any) -> Callable[[], set[str]]:
    """Live namespaces, without those already being deleted: an earlier test's namespace that
    finishes terminating during a case is not something the case deleted."""
    core = client.CoreV1Api(api_client)
    return lambda: {
        str(ns.metadata.name)
        for ns in core.list_namespace().items
        if ns.metadata.deletion_timestamp is None
    }


def _prepare(  # noqa: PLR0917 (all needed)
    case: Case,
    user: str,
    cluster: Cluster,
    proxy: FaultProxy,
    proxied: Path,
    tmp_path: Path,
    api_client: Any,
) -> tuple[list[str], dict[str, str], Callable[[], object]]:
    """argv and env for a case, and a cleanup."""
    argv = [a.replace(USER, user) for a in case.argv]
    env = dict(case.env)
    cleanup: Callable[[], object] = lambda: None  # noqa: E731
    if case.with_kubeconfig:
        argv += ["--kubeconfig", str(proxied)]
    if case.templates:
        directory = tmp_path / "templates"
        directory.mkdir()
        for name, text in case.templates.items():
            (directory / name).write_text(text)
        argv += ["--templates", str(directory)]
    if case.params is not None:
        (tmp_path / "params.yaml").write_text(case.params)
        argv += ["--params", str(tmp_path / "params.yaml")]
    core = client.CoreV1Api(api_client)
    if case.setup == "in-cluster-no-token":
        sa_dir = tmp_path / "sa"
        sa_dir.mkdir()
        shutil.copyfile(cluster.ca_file, sa_dir / "ca.crt")
        env.update(
            KUBERNETES_SERVICE_HOST="127.0.0.1",
            KUBERNETES_SERVICE_PORT=str(proxy.port),
            WORKSHOP_RUNNER_SERVICEACCOUNT_DIR=str(sa_dir),
        )
    elif case.setup == "untrusted-ca":
        other = tmp_path / "other-ca"
        from cryptography.hazmat.primitives import serialization

        from devcluster import pki

        cert, _ = pki.make_ca(other, "not-the-cluster-ca")
        (tmp_path / "other-ca.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        argv += [
            "--kubeconfig",
            str(_edit_kubeconfig(proxied, tmp_path, ca=tmp_path / "other-ca.crt")),
        ]
    elif case.setup == "invalid-token":
        argv += [
            "--kubeconfig",
            str(_edit_kubeconfig(proxied, tmp_path, token="not-a-valid-token")),
        ]
    elif case.setup == "sa-without-rights":
        ns = f"{user}-sa"
        core.create_namespace({"metadata": {"name": ns}})
        core.create_namespaced_service_account(ns, {"metadata": {"name": "nobody"}})
        kc = proxy.kubeconfig(
            cluster.sa_kubeconfig(ns, "nobody", tmp_path / "n.kc"), tmp_path / "np.kc"
        )
        argv += ["--kubeconfig", str(kc)]
        cleanup = lambda: core.delete_namespace(ns)  # noqa: E731
    elif case.setup == "foreign-namespace":
        # A namespace of that name exists and is not the runner's: the admission guard
        # refuses to take it over (and RBAC alone would not).
        core.create_namespace({"metadata": {"name": user}})
        cleanup = lambda: core.delete_namespace(user)  # noqa: E731
    return argv, env, cleanup


def _edit_kubeconfig(source: Path, tmp_path: Path, **change: Path | str) -> Path:
    config = yaml.safe_load(source.read_text())
    if "ca" in change:
        config["clusters"][0]["cluster"]["certificate-authority"] = str(change["ca"])
    if "token" in change:
        config["users"][0]["user"]["token"] = change["token"]
    out = tmp_path / "edited.kubeconfig"
    out.write_text(yaml.safe_dump(config))
    return out


def _assert_one_line(run: Run, case: Case, user: str) -> None:
    assert run.code == case.code, run.explain()
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.explain()
    assert lines[0].startswith("workshop-runner: error: "), run.explain()
    assert case.message.replace(USER, user) in lines[0], run.explain()
    if run.result:  # argparse errors end before a result exists
        assert run.result["exit_code"] == case.code
        assert run.result["outcome"] == "failed"
    assert "Traceback" not in run.stdout + run.stderr


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(  # noqa: PLR0917 (fixtures)
    case: Case,
    cluster: Cluster,
    proxy: FaultProxy,
    proxied_kubeconfig: Path,
    api_client: Any,
    unique_user: str,
    namespaces: Callable[[], set[str]],
    tmp_path: Path,
) -> None:
    argv, env, cleanup = _prepare(
        case, unique_user, cluster, proxy, proxied_kubeconfig, tmp_path, api_client
    )
    try:
        before = namespaces()
        watched = _resource_version(api_client, unique_user)
        run = run_runner(argv, tmp_path / "run", env, timeout=90)
        FIGURES.bad_inputs += 1
        _assert_one_line(run, case, unique_user)
        stats = proxy.stats()
        assert stats["writes_ok"] == 0, f"the runner wrote: {stats}"
        if case.setup != "foreign-namespace":  # there the guard refuses the one write
            assert stats["writes"] == 0, f"the runner tried to write: {stats}"
        assert namespaces() == before
        assert _resource_version(api_client, unique_user) == watched
    finally:
        cleanup()


def _resource_version(api_client: Any, name: str) -> str | None:
    try:
        return str(client.CoreV1Api(api_client).read_namespace(name).metadata.resource_version)
    except ApiException:
        return None
