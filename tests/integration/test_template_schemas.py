"""Every shipped template against the API's schemas on the devcluster apiserver, strictly: a
misspelled or mistyped field fails here instead of being pruned by a real cluster (the
Maistra CRDs are as strict as maistra/api, devcluster/crds/maistra.yaml)."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from runner import config, templates

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl needed"),
]


def rendered_for(user: str) -> list[dict[str, Any]]:
    params = config.load_params(None, config.User(user), project_request=False)
    docs: list[dict[str, Any]] = []
    for template in templates.load_templates(None).values():
        docs += templates.render(template, params)
    return docs


def dry_run_apply(kubeconfig: Path, docs: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    """Server-side apply, server dry-run, strict field validation (kubectl's default)."""
    return subprocess.run(
        [
            "kubectl",
            f"--kubeconfig={kubeconfig}",
            "apply",
            "--server-side",
            "--dry-run=server",
            "--validate=strict",
            "--field-manager=schema-test",
            "-f",
            "-",
        ],
        input=yaml.safe_dump_all(docs),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@pytest.fixture
def user_namespaces(kubeconfig: Path, unique_user: str) -> Any:
    """The user's two namespaces, really created (the templates' objects live in them)."""
    docs = [d for d in rendered_for(unique_user) if d["kind"] == "Namespace"]
    made = subprocess.run(
        ["kubectl", f"--kubeconfig={kubeconfig}", "apply", "--server-side", "-f", "-"],
        input=yaml.safe_dump_all(docs),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    yield unique_user
    for doc in docs:
        subprocess.run(
            [
                "kubectl",
                f"--kubeconfig={kubeconfig}",
                "delete",
                "namespace",
                doc["metadata"]["name"],
                "--wait=false",
            ],
            capture_output=True,
            check=False,
            timeout=60,
        )


def test_every_shipped_template_fits_the_schemas(kubeconfig: Path, user_namespaces: str) -> None:
    docs = [d for d in rendered_for(user_namespaces) if d["kind"] != "Namespace"]
    assert {d["kind"] for d in docs} >= {
        "ServiceMeshControlPlane",
        "ServiceMeshMemberRoll",
        "CatalogSource",
        "NetworkPolicy",
    }
    done = dry_run_apply(kubeconfig, docs)
    assert done.returncode == 0, done.stderr


def test_typed_sections_a_workshop_may_set_are_accepted(
    kubeconfig: Path, user_namespaces: str
) -> None:
    (doc,) = [d for d in rendered_for(user_namespaces) if d["kind"] == "ServiceMeshControlPlane"]
    doc["spec"]["runtime"] = {
        "components": {
            "pilot": {
                "deployment": {"replicas": 2, "autoScaling": {"enabled": False}},
                "pod": {"tolerations": [{"key": "k", "operator": "Exists"}]},
                "container": {"resources": {"requests": {"cpu": "100m", "memory": 128}}},
            }
        },
        "defaults": {"deployment": {"podDisruption": {"enabled": True, "minAvailable": 1}}},
    }
    doc["spec"]["gateways"] = {
        "openshiftRoute": {"enabled": False},
        "ingress": {"enabled": True, "runtime": {"deployment": {"replicas": 1}}},
        "additionalEgress": {"egress-two": {"enabled": True, "requestedNetworkView": ["net-a"]}},
    }
    doc["spec"]["security"] = {"dataPlane": {"mtls": True}, "manageNetworkPolicy": True}
    done = dry_run_apply(kubeconfig, [doc])
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("kind", "change", "complaint"),
    [
        ("ServiceMeshControlPlane", {"tracing": {"samplng": 100}}, "samplng"),
        ("ServiceMeshControlPlane", {"tracing": {"sampling": "all"}}, "sampling"),
        ("ServiceMeshControlPlane", {"addons": {"kiali": {"enable": True}}}, "enable"),
        (
            "ServiceMeshControlPlane",
            {"proxy": {"networking": {"trafficcontrol": {}}}},
            "trafficcontrol",
        ),
        ("ServiceMeshMemberRoll", {"member": ["x"]}, "member"),
        (
            "ServiceMeshControlPlane",
            {"runtime": {"components": {"pilot": {"container": {"resources": {"requets": {}}}}}}},
            "requets",
        ),
        ("ServiceMeshControlPlane", {"gateways": {"ingres": {"enabled": True}}}, "ingres"),
    ],
)
def test_a_misspelled_or_mistyped_field_fails(
    kubeconfig: Path, user_namespaces: str, kind: str, change: dict[str, Any], complaint: str
) -> None:
    (doc,) = [copy.deepcopy(d) for d in rendered_for(user_namespaces) if d["kind"] == kind]
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(doc["spec"].get(key), dict):
            doc["spec"][key] = {**doc["spec"][key], **value}
        else:
            doc["spec"][key] = value
    refused = dry_run_apply(kubeconfig, [doc])
    assert refused.returncode != 0, refused.stdout
    assert complaint in refused.stderr, refused.stderr


def test_the_runner_reports_a_field_outside_the_schema_as_a_template_error(
    simulators: Any, runner: Any, unique_user: str, tmp_path: Path
) -> None:
    """Server-side apply of an undeclared field: the API server refuses the typed patch
    (HTTP 500 'failed to create typed patch object' on some versions, 400/422 on others);
    either way it is exit 3 at once, never retried as a server error until the deadline."""
    source = templates.packaged_templates_dir() / "smcp.yaml"
    broken = source.read_text().replace(
        "    sampling: ${smcp_trace_sampling}", "    samplng: ${smcp_trace_sampling}"
    )
    assert broken != source.read_text()
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "smcp.yaml").write_text(broken)
    out = runner(
        "--user",
        unique_user,
        "--templates",
        str(tmp_path / "templates"),
        "--steps",
        "namespace,istio-namespace,limit-ranges,smcp",
    )
    assert out.code == 3, out.stderr
    assert out.result["failed_step"] == "smcp"
    assert "samplng" in out.result["reason"]
