"""NetworkPolicy ingress as the simulators evaluate it, and what Maistra's policies do to a
catalog: the registry pod of a member namespace cut off from OLM, the workshop's policy
letting it back in, and the member roll copying (and removing) the mesh's policies."""

from __future__ import annotations

from typing import Any

import pytest

from devcluster.sim import knobs
from devcluster.sim.catalog import catalog_transitions
from devcluster.sim.maistra import MEMBER_OF, manages_network_policy, mesh_network_policies
from devcluster.sim.memberroll import policy_transitions
from devcluster.sim.netpol import Peer, ingress_admitted

MESH = "user1-istio"
CATALOG_POD = {"olm.catalogSource": "rhsso-catalog"}
OLM = Peer(
    "openshift-operator-lifecycle-manager",
    {"kubernetes.io/metadata.name": "openshift-operator-lifecycle-manager"},
    {"app": "catalog-operator"},
)
MEMBER_POD = Peer("bookinfo", {MEMBER_OF: MESH}, {"app": "productpage"})
ROUTER = Peer("openshift-ingress", {"network.openshift.io/policy-group": "ingress"}, {})
ALLOW_ALL = {
    "metadata": {"name": "istio-mesh-workshop-all", "namespace": "user1"},
    "spec": {
        "podSelector": {},
        "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"namespaceSelector": {}}]}],
    },
}


def smcp() -> dict[str, Any]:
    return {"metadata": {"name": "basic", "namespace": MESH}, "spec": {}}


def copies_in(namespace: str) -> list[dict[str, Any]]:
    out = []
    for policy in mesh_network_policies(smcp()):
        copy = {**policy, "metadata": {**policy["metadata"], "namespace": namespace}}
        out.append(copy)
    return out


def admitted(
    policies: list[dict[str, Any]], source: Peer, pod: dict[str, str] = CATALOG_POD
) -> bool:
    return ingress_admitted(policies, "user1", pod, source, port=50051, port_name="grpc")


def test_no_policy_admits_everything() -> None:
    assert admitted([], OLM)


def test_maistra_policies_admit_members_and_the_router_only() -> None:
    mesh = copies_in("user1")
    assert not admitted(mesh, OLM)
    assert admitted(mesh, MEMBER_POD)
    assert not admitted(mesh, ROUTER)  # only to pods labelled maistra.io/expose-route
    assert admitted(mesh, ROUTER, {"maistra.io/expose-route": "true"})


def test_the_workshop_policy_admits_olm_again() -> None:
    assert admitted([*copies_in("user1"), ALLOW_ALL], OLM)


def test_policies_of_other_namespaces_do_not_isolate() -> None:
    assert admitted(copies_in("elsewhere"), OLM)


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"from": [{"podSelector": {}}]}, False),  # only pods of the policy's own namespace
        ({"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}, False),  # not evaluated
        ({"ports": [{"port": 50051}]}, True),
        ({"ports": [{"port": "grpc"}]}, True),
        ({"ports": [{"port": 8080}]}, False),
        ({"ports": [{"port": 50000, "endPort": 50100}]}, True),
        ({"ports": [{"port": 50051, "protocol": "UDP"}]}, False),
        (
            {
                "from": [
                    {
                        "namespaceSelector": {
                            "matchExpressions": [
                                {
                                    "key": "kubernetes.io/metadata.name",
                                    "operator": "In",
                                    "values": [OLM.namespace],
                                }
                            ]
                        },
                        "podSelector": {"matchLabels": {"app": "catalog-operator"}},
                    }
                ]
            },
            True,
        ),
        (
            {
                "from": [
                    {
                        "namespaceSelector": {
                            "matchExpressions": [{"key": MEMBER_OF, "operator": "Exists"}]
                        }
                    }
                ]
            },
            False,
        ),
    ],
)
def test_rules(rule: dict[str, Any], expected: bool) -> None:
    policy = {
        "metadata": {"name": "p", "namespace": "user1"},
        "spec": {"podSelector": {}, "ingress": [rule]},
    }
    assert admitted([policy], OLM) is expected


def test_an_egress_only_policy_does_not_isolate_ingress() -> None:
    policy = {
        "metadata": {"name": "p", "namespace": "user1"},
        "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": []},
    }
    assert admitted([policy], OLM)


def state_after(state: str, reachable: bool) -> str | None:
    cs = {
        "metadata": {"name": "rhsso-catalog", "namespace": "user1"},
        "status": {"connectionState": {"lastObservedState": state}} if state else {},
    }
    found = catalog_transitions(cs, knobs.build([]), reachable=reachable)
    return found[0].step if found else None


@pytest.mark.parametrize(
    ("state", "reachable", "next_state"),
    [
        ("", True, "CONNECTING"),
        ("CONNECTING", True, "READY"),
        ("READY", True, None),
        ("CONNECTING", False, "TRANSIENT_FAILURE"),
        ("READY", False, "TRANSIENT_FAILURE"),
        ("TRANSIENT_FAILURE", False, None),
        ("TRANSIENT_FAILURE", True, "CONNECTING"),
    ],
)
def test_catalog_connection_follows_reachability(
    state: str, reachable: bool, next_state: str | None
) -> None:
    assert state_after(state, reachable) == next_state


def test_member_roll_copies_the_mesh_policies_and_removes_them_when_a_member_leaves() -> None:
    roll = {"metadata": {"name": "default", "namespace": MESH}}
    mesh = mesh_network_policies(smcp())
    internal = {
        "metadata": {
            "name": "istio-istiod-default",
            "namespace": MESH,
            "labels": {"maistra.io/owner": MESH},
            "annotations": {"maistra.io/internal": "true"},
        },
        "spec": {},
    }
    found = policy_transitions(roll, ["user1"], [*mesh, internal], {"user1": []})
    bodies = [t.actions[0].body for t in found]
    assert sorted(b["metadata"]["name"] for b in bodies) == [
        "istio-expose-route-default",
        "istio-mesh-default",
    ]
    for body in bodies:
        assert body["metadata"]["namespace"] == "user1"
        assert body["metadata"]["labels"][MEMBER_OF] == MESH
        assert "maistra.io/owner" not in body["metadata"]["labels"]
        assert body["metadata"]["labels"]["app"] == "istio"
    copies = [{**b, "metadata": {**b["metadata"]}} for b in bodies]
    assert policy_transitions(roll, ["user1"], mesh, {"user1": copies}) == []
    gone = policy_transitions(roll, [], mesh, {"user1": copies})
    assert sorted((t.actions[0].verb, t.actions[0].name) for t in gone) == [
        ("delete", "istio-expose-route-default"),
        ("delete", "istio-mesh-default"),
    ]


def test_no_mesh_policies_without_manage_network_policy() -> None:
    assert manages_network_policy({})
    assert not manages_network_policy({"security": {"manageNetworkPolicy": False}})
