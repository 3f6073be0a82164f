"""Preflight's pure parts: what it asks per RBAC rule, how it prints, its exit code."""

from __future__ import annotations

import io
from typing import Any

from runner import config
from runner.launcher import preflight
from runner.launcher.preflight import Check
from runner.launcher.render import guard_params, load_deploy, with_guard_params
from runner.waits import Deadline


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


class GuardWorld:
    """Just what the catalog-image check reads: the guard's binding and its ConfigMap."""

    def __init__(self, data: dict[str, str]) -> None:
        base = load_deploy()
        self.objects = {
            (o["kind"], o["metadata"]["name"]): o
            for o in with_guard_params(base, defaults()).objects
        }
        self.data = data
        self.deadline = Deadline.after(60)

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Any:
        if kind == "ConfigMap":
            return {"data": self.data}
        return self.objects.get((kind, name))


def defaults(**override: str) -> dict[str, Any]:
    params = dict(config.load_params(None, config.User("u1"), project_request=False))
    return {**params, **override}


def catalog_image(world: GuardWorld, params: dict[str, Any]) -> Check:
    setting = preflight.Setting(load_deploy(), "workshop-runner", (), {}, params)
    return preflight.Preflight(world, world, setting).catalog_image()


def test_catalog_image_compares_every_pin_of_the_guard() -> None:
    pins = guard_params(defaults())
    assert catalog_image(GuardWorld(pins), defaults()).status == "pass"
    other = catalog_image(GuardWorld(pins), defaults(catalog_image="reg/other:v1"))
    assert (other.status, "reg/other:v1" in other.detail) == ("fail", True)
    channel = catalog_image(GuardWorld(pins), defaults(sso_channel="fast"))
    assert channel.status == "fail"
    assert "sso_channel fast (the guard: stable)" in channel.detail
