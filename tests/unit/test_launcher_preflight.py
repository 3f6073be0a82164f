"""Preflight's pure parts: what it asks per RBAC rule, how it prints, its exit code."""

from __future__ import annotations

import io

from runner.launcher import preflight
from runner.launcher.preflight import Check


def test_one_review_per_group_resource_verb_and_name() -> None:
    rule = {
        "apiGroups": ["rbac.authorization.k8s.io"],
        "resources": ["clusterroles"],
        "verbs": ["bind"],
        "resourceNames": ["admin", "workshop-runner-mesh-member"],
    }
    asked = list(preflight._attributes(rule, None))
    assert [a["name"] for a in asked] == ["admin", "workshop-runner-mesh-member"]
    assert all("namespace" not in a for a in asked)  # a ClusterRoleBinding: everywhere
    (pods,) = preflight._attributes({"resources": ["pods"], "verbs": ["patch"]}, "wr")
    assert pods == {"group": "", "resource": "pods", "verb": "patch", "namespace": "wr"}
    assert preflight._describe(pods) == "patch pods in wr"


def test_print_and_exit_code() -> None:
    results = [
        Check("apis", "pass", "all served"),
        Check("operators", "fail", "no CSV", "install them"),
        Check("catalog-csv", "skip", "not served"),
    ]
    out = io.StringIO()
    preflight.print_checks(results, out)
    lines = out.getvalue().splitlines()
    assert lines[0].split()[:2] == ["PASS", "apis"]
    assert lines[1].split()[:2] == ["FAIL", "operators"]
    assert lines[2].strip() == "-> install them"
    assert lines[-1] == "preflight: 1 check(s) failed: operators"
    assert preflight.exit_code(results) == preflight.EXIT_PREFLIGHT == 13
    assert preflight.exit_code([r for r in results if r.status != "fail"]) == 0


def test_allowed_images_are_read_from_keys_naming_an_image() -> None:
    param = {
        "metadata": {"name": "x", "annotations": {"image": "not-this"}},
        "data": {"catalogImage": "reg/index:v1", "channel": "stable"},
        "spec": {"allowedImages": ["reg/index:v1", "reg/index@sha256:abc"]},
    }
    assert sorted(set(preflight._image_values(param))) == [
        "reg/index:v1",
        "reg/index@sha256:abc",
    ]
