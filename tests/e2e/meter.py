"""Count API requests on the apiserver's side, per client identity.

apiserver_request_total has no label naming the client, so the launcher runs as its own
ServiceAccount, and a FlowSchema (API Priority and Fairness) classifies exactly that
identity's requests: apiserver_flowcontrol_dispatched_requests_total{flow_schema=METER} counts
them (watches included), while apiserver_request_total gives every client's total.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client

from devcluster.cluster import Cluster

METER = "workshop-launcher-meter"
NAMESPACE = "devcluster-meter"
_SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)"
)
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Counts:
    launcher: float  # requests of the metered identity (APF flow schema)
    total: float  # apiserver_request_total, every client
    by_verb: dict[str, float]  # the metered identity's... not available per verb; total's

    def minus(self, earlier: Counts) -> Counts:
        verbs = {k: v - earlier.by_verb.get(k, 0.0) for k, v in self.by_verb.items()}
        return Counts(self.launcher - earlier.launcher, self.total - earlier.total, verbs)


def samples(text: str, metric: str) -> list[tuple[dict[str, str], float]]:
    found: list[tuple[dict[str, str], float]] = []
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m and m.group("name") == metric:
            labels = dict(_LABEL.findall(m.group("labels") or ""))
            found.append((labels, float(m.group("value"))))
    return found


def scrape(cluster: Cluster) -> Counts:
    text = cluster.metrics_text()
    launcher = sum(
        v
        for labels, v in samples(text, "apiserver_flowcontrol_dispatched_requests_total")
        if labels.get("flow_schema") == METER
    )
    by_verb: dict[str, float] = {}
    for labels, v in samples(text, "apiserver_request_total"):
        by_verb[labels.get("verb", "?")] = by_verb.get(labels.get("verb", "?"), 0.0) + v
    return Counts(launcher, sum(by_verb.values()), by_verb)


def metered_kubeconfig(cluster: Cluster, path: Path) -> Path:
    """A cluster-admin ServiceAccount whose requests the METER flow schema classifies."""
    api: Any
    with cluster.api_client() as api:
        core = client.CoreV1Api(api)
        rbac = client.RbacAuthorizationV1Api(api)
        custom = client.CustomObjectsApi(api)
        _ignore_exists(lambda: core.create_namespace({"metadata": {"name": NAMESPACE}}))
        _ignore_exists(
            lambda: core.create_namespaced_service_account(NAMESPACE, {"metadata": {"name": METER}})
        )
        _ignore_exists(
            lambda: rbac.create_cluster_role_binding(
                {
                    "metadata": {"name": METER},
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "ClusterRole",
                        "name": "cluster-admin",
                    },
                    "subjects": [{"kind": "ServiceAccount", "name": METER, "namespace": NAMESPACE}],
                }
            )
        )
        _ignore_exists(
            lambda: custom.create_cluster_custom_object(
                "flowcontrol.apiserver.k8s.io",
                "v1",
                "flowschemas",
                {
                    "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
                    "kind": "FlowSchema",
                    "metadata": {"name": METER},
                    "spec": {
                        "matchingPrecedence": 600,
                        "priorityLevelConfiguration": {"name": "workload-high"},
                        "rules": [
                            {
                                "subjects": [
                                    {
                                        "kind": "ServiceAccount",
                                        "serviceAccount": {"name": METER, "namespace": NAMESPACE},
                                    }
                                ],
                                "resourceRules": [
                                    {
                                        "verbs": ["*"],
                                        "apiGroups": ["*"],
                                        "resources": ["*"],
                                        "clusterScope": True,
                                        "namespaces": ["*"],
                                    }
                                ],
                                "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                            }
                        ],
                    },
                },
            )
        )
    return cluster.sa_kubeconfig(NAMESPACE, METER, path)


def _ignore_exists(create: Any) -> None:
    try:
        create()
    except client.exceptions.ApiException as e:
        if e.status != 409:
            raise
