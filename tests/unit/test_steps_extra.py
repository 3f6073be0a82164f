"""The generic `extra` step: further templates applied in dependency order, undone in reverse."""

from __future__ import annotations

from typing import Any

from steps import STEPS, extra
from tests.unit.stepkit import ScriptedKube, context, run

Obj = dict[str, Any]


def obj(api: str, kind: str, name: str, namespace: str | None = "user1") -> Obj:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": api, "kind": kind, "metadata": meta}


RBAC = "rbac.authorization.k8s.io/v1"
WORKSHOP = {
    "a-config.yaml": [obj("v1", "ConfigMap", "lab-settings")],
    "b-access.yaml": [
        obj(RBAC, "RoleBinding", "lab-reader"),
        obj(RBAC, "Role", "lab-reader"),
        obj("v1", "ServiceAccount", "lab"),
    ],
}


def test_no_further_templates_are_shipped() -> None:
    """The shipped NetworkPolicy is applied by catalog-source (before the mesh can cut the
    catalog off), so by default there is nothing further."""
    result, kube = run(extra)
    assert (kube.actions, result.detail) == ([], "no further templates")


def test_dependency_order_then_reverse_on_undo() -> None:
    result, kube = run(extra, extra_templates=WORKSHOP)
    assert kube.actions == [  # same rank: file, then document order
        "apply Role user1/lab-reader",
        "apply ServiceAccount user1/lab",
        "apply RoleBinding user1/lab-reader",
        "apply ConfigMap user1/lab-settings",
    ]
    assert result.changed
    down = ScriptedKube(list(kube.objects.values()), [])
    undone = extra.undo(context(extra, down, extra_templates=WORKSHOP))
    assert down.actions == [
        "delete ConfigMap user1/lab-settings",
        "delete RoleBinding user1/lab-reader",
        "delete ServiceAccount user1/lab",
        "delete Role user1/lab-reader",
    ]
    assert undone.changed
    assert not extra.undo(context(extra, down, extra_templates=WORKSHOP)).changed


def test_templates_other_steps_name_are_never_applied_here() -> None:
    named = {t for s in STEPS for t in getattr(s, "TEMPLATES", ())}
    assert {"smcp.yaml", "member-roll.yaml", "subscription.yaml", "network-policy.yaml"} <= named
    kube = ScriptedKube([], [])
    ctx = context(extra, kube, extra_templates=WORKSHOP)
    assert [o["kind"] for o in extra.objects(ctx)] == [
        "Role",
        "ServiceAccount",
        "RoleBinding",
        "ConfigMap",
    ]


def test_rerun_unchanged() -> None:
    _, first = run(extra, extra_templates=WORKSHOP)
    result, again = run(extra, list(first.objects.values()), extra_templates=WORKSHOP)
    assert (again.actions, result.changed) == ([], False)
    kube = ScriptedKube([], [])
    ctx = context(extra, kube, steps=[extra])  # every template "further" except none named
    assert len(extra.objects(ctx)) > 1
