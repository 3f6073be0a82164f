"""NetworkPolicy ingress semantics, as a CNI plugin enforces them (networking.k8s.io/v1).

devcluster runs no pod network, so nothing is enforced on packets; the simulators ask this
module instead whether a connection would be admitted (OLM's catalog-operator reaching a
catalog's registry pod). The rules, from the NetworkPolicy API reference:
- a pod is isolated for ingress once any policy in its namespace selects it (podSelector; `{}`
  selects every pod) with Ingress among its policyTypes (absent: Ingress, plus Egress when the
  policy has egress rules);
- an isolated pod admits a connection when some rule of some selecting policy admits it: the
  rule's `from` peers (absent or empty: any source) and `ports` (absent or empty: any port);
- a peer with only podSelector means pods of the policy's own namespace; with a
  namespaceSelector, pods of the namespaces it selects (and, when both are set, those pods
  only). ipBlock peers are not evaluated (no pod IPs here): they admit nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from devcluster.sim.objects import Obj, labels, ns_of, spec


@dataclass(frozen=True)
class Peer:
    """One end of a connection: a pod's namespace (and its labels) and the pod's labels."""

    namespace: str
    namespace_labels: Mapping[str, str]
    pod_labels: Mapping[str, str]


def selects(selector: Any, found: Mapping[str, str]) -> bool:
    """A LabelSelector (matchLabels and matchExpressions) against a label set; `{}` matches all."""
    if not isinstance(selector, dict):
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if found.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        present = key in found
        ok = {
            "In": present and found.get(key) in values,
            "NotIn": not present or found.get(key) not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }.get(op, False)
        if not ok:
            return False
    return True


def policy_types(policy: Obj) -> list[str]:
    declared = spec(policy).get("policyTypes")
    if declared:
        return list(declared)
    return ["Ingress", "Egress"] if spec(policy).get("egress") else ["Ingress"]


def isolates_ingress(policy: Obj, pod_labels: Mapping[str, str]) -> bool:
    return "Ingress" in policy_types(policy) and selects(
        spec(policy).get("podSelector") or {}, pod_labels
    )


def _peer_admits(peer: Obj, policy_ns: str, source: Peer) -> bool:
    ns_sel, pod_sel = peer.get("namespaceSelector"), peer.get("podSelector")
    if ns_sel is None and pod_sel is None:
        return False  # an ipBlock peer: not evaluated here
    if ns_sel is None:
        in_namespace = source.namespace == policy_ns
    else:
        in_namespace = selects(ns_sel, source.namespace_labels)
    return in_namespace and (pod_sel is None or selects(pod_sel, source.pod_labels))


def _port_admits(ports: list[Obj], port: int, port_name: str, protocol: str) -> bool:
    if not ports:
        return True
    for entry in ports:
        if (entry.get("protocol") or "TCP") != protocol:
            continue
        wanted = entry.get("port")
        if wanted is None or wanted in (port, port_name):
            return True
        end = entry.get("endPort")
        if isinstance(wanted, int) and isinstance(end, int) and wanted <= port <= end:
            return True
    return False


def ingress_admitted(
    policies: Iterable[Obj],
    target_ns: str,
    target_labels: Mapping[str, str],
    source: Peer,
    *,
    port: int,
    port_name: str = "",
    protocol: str = "TCP",
) -> bool:
    """Whether a connection from `source` to a pod (namespace, labels) on `port` gets in."""
    selecting = [
        p for p in policies if ns_of(p) == target_ns and isolates_ingress(p, target_labels)
    ]
    if not selecting:
        return True
    for policy in selecting:
        for rule in spec(policy).get("ingress") or []:
            peers = rule.get("from") or []
            if not _port_admits(rule.get("ports") or [], port, port_name, protocol):
                continue
            if not peers or any(_peer_admits(p, ns_of(policy), source) for p in peers):
                return True
    return False


def namespace_peer(namespace: Obj | None, name: str, pod_labels: Mapping[str, str]) -> Peer:
    """A source pod in namespace `name` (its labels from the cache when it is there; the
    API server always sets kubernetes.io/metadata.name)."""
    found = dict(labels(namespace)) if namespace is not None else {}
    found.setdefault("kubernetes.io/metadata.name", name)
    return Peer(name, found, dict(pod_labels))
