"""Every shipped template against the API's schemas on the devcluster apiserver, strictly: a
misspelled or mistyped field fails here instead of being pruned by a real cluster (the
Maistra CRDs are as strict as maistra/api, devcluster/crds/maistra.yaml)."""

from __future__ import annotations

import copy
import json
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


def merged(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in change.items():
        old = out.get(key)
        out[key] = (
            merged(old, value) if isinstance(old, dict) and isinstance(value, dict) else value
        )
    return out


def smcp_with(user: str, change: dict[str, Any]) -> dict[str, Any]:
    (doc,) = [d for d in rendered_for(user) if d["kind"] == "ServiceMeshControlPlane"]
    doc["spec"] = merged(doc["spec"], change)
    return doc


# One well-formed value for each block of the SMCP v2 spec that upstream's types define and
# that an earlier schema kept free-form (gateway Service specs and volumes, mesh expansion,
# access logging, the addons' install blocks, Stackdriver, 3scale, meshConfig, cert-manager).
TYPED_BLOCKS: dict[str, Any] = {
    "gateways": {
        "ingress": {
            "service": {
                "type": "ClusterIP",
                "ports": [{"name": "http2", "port": 80, "targetPort": 8080}],
                "metadata": {"labels": {"a": "b"}},
                "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 30}},
            },
            "volumes": [
                {
                    "volume": {
                        "secret": {"secretName": "certs", "items": [{"key": "k", "path": "p"}]}
                    },
                    "volumeMount": {"name": "certs", "mountPath": "/etc/certs"},
                },
                {
                    "volume": {"configMap": {"name": "cfg", "defaultMode": 420}},
                    "volumeMount": {"name": "cfg", "mountPath": "/etc/cfg"},
                },
            ],
            "meshExpansionPorts": [{"name": "tcp-istiod", "port": 15012, "targetPort": 15012}],
            "routeConfig": {"enabled": False},
            "runtime": {
                "pod": {
                    "affinity": {
                        "nodeAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": {
                                "nodeSelectorTerms": [
                                    {"matchExpressions": [{"key": "k", "operator": "Exists"}]}
                                ]
                            }
                        },
                        "podAntiAffinity": {
                            "requiredDuringScheduling": [
                                {
                                    "key": "app",
                                    "operator": "In",
                                    "values": ["x"],
                                    "topologyKey": "t",
                                }
                            ],
                            "preferredDuringSchedulingIgnoredDuringExecution": [
                                {"weight": 1, "podAffinityTerm": {"topologyKey": "t"}}
                            ],
                        },
                    }
                }
            },
        },
        "additionalIngress": {"extra": {"enabled": True, "sds": {"enabled": False}}},
    },
    "cluster": {
        "meshExpansion": {"enabled": False, "ilbGateway": {"enabled": False, "service": {}}}
    },
    "proxy": {
        "accessLogging": {"file": {"name": "/dev/stdout", "encoding": "TEXT"}},
        "envoyMetricsService": {
            "enabled": False,
            "address": "m:15000",
            "tcpKeepalive": {"probes": 3, "time": "10s"},
            "tlsSettings": {"mode": "DISABLE"},
        },
    },
    "addons": {
        "prometheus": {"install": {"service": {"nodePort": 30000, "ingress": {"hosts": ["h"]}}}},
        "grafana": {
            "install": {
                "persistence": {"enabled": True, "capacity": {"requests": {"storage": "5Gi"}}}
            }
        },
        "kiali": {
            "install": {
                "deployment": {
                    "nodeSelector": {"a": "b"},
                    "resources": {"limits": {"memory": "1Gi"}},
                    "affinity": {
                        "podAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "t"}]
                        }
                    },
                }
            }
        },
        "jaeger": {"install": {"ingress": {"enabled": True, "metadata": {"labels": {"a": "b"}}}}},
        "stackdriver": {"tracer": {"debug": False}, "telemetry": {"auth": {"apiKey": "k"}}},
        "3scale": {"enabled": False, "listen_addr": 3333, "backend": {"enable_cache": True}},
    },
    "meshConfig": {
        "extensionProviders": [
            {"name": "authz", "envoyExtAuthzHttp": {"service": "s", "port": 8000}}
        ],
        "discoverySelectors": [{"matchLabels": {"mesh": "x"}}],
    },
    "security": {"certificateAuthority": {"cert-manager": {"address": "a:443"}}},
}


def test_every_block_upstream_types_is_typed_and_accepts_its_fields(
    kubeconfig: Path, user_namespaces: str
) -> None:
    done = dry_run_apply(kubeconfig, [smcp_with(user_namespaces, TYPED_BLOCKS)])
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"gateways": {"ingress": {"service": {"tpye": "ClusterIP"}}}}, "tpye"),
        ({"gateways": {"egress": {"service": {"ports": [{"port": 80, "nmae": "x"}]}}}}, "nmae"),
        (
            {"gateways": {"ingress": {"volumes": [{"volume": {"secret": {"secretNmae": "s"}}}]}}},
            "secretNmae",
        ),
        (
            {"gateways": {"ingress": {"volumes": [{"volume": {"configmap": {"name": "c"}}}]}}},
            "configmap",
        ),
        (
            {"gateways": {"ingress": {"meshExpansionPorts": [{"port": 1, "protcol": "TCP"}]}}},
            "protcol",
        ),
        ({"gateways": {"ingress": {"meshExpansionPorts": [{"name": "no-port"}]}}}, "port"),
        (
            {"gateways": {"additionalIngress": {"x": {"meshExpansionPorts": []}}}},
            "meshExpansionPorts",
        ),
        ({"gateways": {"ingress": {"routeConfig": {"enable": True}}}}, "enable"),
        ({"cluster": {"meshExpansion": {"enable": True}}}, "enable"),
        ({"cluster": {"meshExpansion": {"ilbGateway": {"servce": {}}}}}, "servce"),
        ({"proxy": {"accessLogging": {"file": {"nmae": "/dev/stdout"}}}}, "nmae"),
        ({"proxy": {"envoyMetricsService": {"adress": "m"}}}, "adress"),
        ({"proxy": {"envoyMetricsService": {"tcpKeepalive": {"probes": "3"}}}}, "probes"),
        (
            {"runtime": {"components": {"pilot": {"pod": {"affinity": {"nodeAfinity": {}}}}}}},
            "nodeAfinity",
        ),
        ({"addons": {"prometheus": {"install": {"service": {"nodeport": 1}}}}}, "nodeport"),
        (
            {"addons": {"grafana": {"install": {"persistence": {"storageClass": "x"}}}}},
            "storageClass",
        ),
        (
            {
                "addons": {
                    "grafana": {
                        "install": {"persistence": {"capacity": {"requests": {"storage": "lots"}}}}
                    }
                }
            },
            "storage",
        ),
        ({"addons": {"kiali": {"install": {"deployment": {"nodeSelectr": {}}}}}}, "nodeSelectr"),
        ({"addons": {"jaeger": {"install": {"ingress": {"enable": True}}}}}, "enable"),
        ({"addons": {"stackdriver": {"tracer": {"debg": True}}}}, "debg"),
        ({"addons": {"3scale": {"listenAddr": 3333}}}, "listenAddr"),
        ({"addons": {"3scale": {"listen_addr": "3333"}}}, "listen_addr"),
        ({"meshConfig": {"extensionProvider": []}}, "extensionProvider"),
        ({"meshConfig": {"extensionProviders": [{"envoyExtAuthzGrpc": {}}]}}, "name"),
        ({"security": {"certificateAuthority": {"cert-manager": {"adress": "a"}}}}, "adress"),
        ({"tracing": {"sampling": 20000}}, "sampling"),
    ],
)
def test_a_misspelled_field_in_a_typed_block_is_refused(
    kubeconfig: Path, user_namespaces: str, change: dict[str, Any], complaint: str
) -> None:
    refused = dry_run_apply(kubeconfig, [smcp_with(user_namespaces, change)])
    assert refused.returncode != 0, refused.stdout
    assert complaint in refused.stderr, refused.stderr


def test_without_strict_validation_the_apiserver_prunes_a_misspelled_field(
    kubeconfig: Path, user_namespaces: str
) -> None:
    """What a real cluster does with `kubectl apply --validate=false` (or a client that does
    not ask for strict validation): the unknown field is dropped, its typed siblings kept."""
    change = {
        "proxy": {"accessLogging": {"file": {"name": "/dev/stdout", "nmae": "x"}}},
        "addons": {"3scale": {"enabled": False, "listenAddr": 3333}},
    }
    done = subprocess.run(
        [
            "kubectl",
            f"--kubeconfig={kubeconfig}",
            "create",
            "--dry-run=server",
            "--validate=false",
            "-o",
            "json",
            "-f",
            "-",
        ],
        input=yaml.safe_dump(smcp_with(user_namespaces, change)),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    spec = json.loads(done.stdout)["spec"]
    assert spec["proxy"]["accessLogging"]["file"] == {"name": "/dev/stdout"}
    assert spec["addons"]["3scale"] == {"enabled": False}


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
