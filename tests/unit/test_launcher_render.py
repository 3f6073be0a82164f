"""Rendering a launch from the shipped deploy base: Jobs, ConfigMap, users, order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runner import config
from runner.errors import InvalidInput, TemplateError
from runner.launcher.render import (
    GUARD_PARAMS,
    GUARD_PARAMS_NAME,
    LAUNCH_LABEL,
    PARAMS_KEY,
    USER_LABEL,
    LaunchPlan,
    job_name,
    load_deploy,
    owned_by,
    pod_files,
    render_config_map,
    render_jobs,
    users_of_job,
    with_guard_params,
)
from runner.launcher.users import select_users, validate_users
from runner.templates import apply_order


def plan(
    mode: str = "indexed", users: tuple[str, ...] = ("user1", "user2", "user3"), **kw: object
) -> LaunchPlan:
    fields: dict[str, object] = {
        "launch_id": "1125-101500-abc",
        "namespace": "workshop-runner",
        "users": users,
        "image": "workshop-runner:dev",
        "mode": mode,
        "parallelism": 2,
    }
    fields.update(kw)
    return LaunchPlan(**fields)


def env_of(job: dict[str, object]) -> dict[str, object]:
    container = job["spec"]["template"]["spec"]["containers"][0]  # type: ignore[index]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_deploy_base_is_read_from_the_kustomizations() -> None:
    base = load_deploy()
    kinds = [o["kind"] for o in base.objects]
    assert base.namespace == "workshop-runner"
    assert {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding"} <= set(kinds)
    assert base.indexed_job["spec"]["completionMode"] == "Indexed"
    assert "completionMode" not in base.per_user_job["spec"]


def test_indexed_job_carries_users_labels_image_and_parallelism() -> None:
    (job,) = render_jobs(load_deploy(), plan())
    assert job["metadata"]["name"] == "wr-1125-101500-abc"
    assert job["metadata"]["labels"][LAUNCH_LABEL] == "1125-101500-abc"
    assert job["spec"]["template"]["metadata"]["labels"][LAUNCH_LABEL] == "1125-101500-abc"
    assert job["spec"]["completions"] == 3
    assert job["spec"]["parallelism"] == 2
    assert job["spec"]["activeDeadlineSeconds"] == 2 * 14400  # two waves
    assert env_of(job)["WORKSHOP_USERS"] == "user1,user2,user3"
    pod = job["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "workshop-runner:dev"
    assert pod["volumes"][0]["configMap"]["name"] == "wr-1125-101500-abc"
    assert "--params" not in pod["containers"][0]["args"]
    assert users_of_job(job) == ["user1", "user2", "user3"]
    # The base's podFailurePolicy and retry budget are kept as they are.
    assert job["spec"]["podFailurePolicy"] == load_deploy().indexed_job["spec"]["podFailurePolicy"]


def test_per_user_jobs_one_per_user_with_user_label_and_env() -> None:
    jobs = render_jobs(load_deploy(), plan("jobs", has_params=True))
    assert [j["metadata"]["name"] for j in jobs] == [
        "wr-1125-101500-abc-user1",
        "wr-1125-101500-abc-user2",
        "wr-1125-101500-abc-user3",
    ]
    for job, user in zip(jobs, ("user1", "user2", "user3"), strict=True):
        assert job["metadata"]["labels"][USER_LABEL] == user
        assert job["spec"]["template"]["metadata"]["labels"][USER_LABEL] == user
        assert env_of(job)["WORKSHOP_USER"] == user
        assert users_of_job(job) == [user]
        args = job["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[-2:] == ["--params", f"/etc/workshop-runner/templates/{PARAMS_KEY}"]


def test_long_job_names_are_shortened_with_a_hash() -> None:
    user = "u" * 56
    name = job_name("1125-101500-abc", user)
    assert len(name) <= 63
    assert name != job_name("1125-101500-abc", "u" * 55 + "v")


def test_config_map_and_owner_references() -> None:
    cm = render_config_map(plan(), {"a.yaml": "x: 1\n"})
    assert cm["metadata"]["name"] == "wr-1125-101500-abc"
    assert cm["metadata"]["labels"][LAUNCH_LABEL] == "1125-101500-abc"
    owner = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "uid": "u-1"}}
    owned = owned_by(cm, [owner])
    assert owned["metadata"]["ownerReferences"] == [
        {"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "u-1"}
    ]
    assert "ownerReferences" not in cm["metadata"]


def test_apply_order_puts_namespace_first_and_jobs_last() -> None:
    objs = [{"kind": k} for k in ("Job", "RoleBinding", "ConfigMap", "Namespace", "Role")]
    assert [o["kind"] for o in apply_order(objs)] == [
        "Namespace",
        "Role",
        "RoleBinding",
        "ConfigMap",
        "Job",
    ]


def test_pod_files_validate_every_user_before_any_api_call(tmp_path: Path) -> None:
    files = pod_files(["user1"], None, None)
    assert "namespace.yaml" in files
    assert PARAMS_KEY not in files
    params = tmp_path / "params.yaml"
    params.write_text("catalog_image: example/index:v1\n")
    assert '"catalog_image": "example/index:v1"' in pod_files(["user1"], None, params)[PARAMS_KEY]
    params.write_text("no_such_param: 1\n")
    with pytest.raises(TemplateError, match="unknown parameter"):
        pod_files(["user1"], None, params)
    broken = tmp_path / "templates"
    broken.mkdir()
    (broken / "extra.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ${nope}}\n"
    )
    with pytest.raises(TemplateError, match="nope"):
        pod_files(["user1"], broken, None)


@pytest.mark.parametrize(
    ("names", "count", "expected"),
    [
        (["a1,a2", "a3"], None, ["a1", "a2", "a3"]),
        (None, 3, ["user1", "user2", "user3"]),
    ],
)
def test_select_users(names: list[str] | None, count: int | None, expected: list[str]) -> None:
    assert select_users(names, None, count, "user", 1) == expected


def test_select_users_from_file(tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_text("# attendees\nann\nbob, cid\n")
    assert select_users(None, path, None, "user", 1) == ["ann", "bob", "cid"]


@pytest.mark.parametrize(
    ("names", "count", "message"),
    [
        (None, None, "exactly one"),
        (["a"], 2, "exactly one"),
        (["a,a"], None, "twice"),
        (None, 0, "exactly one"),
        (None, 5000, "between"),
    ],
)
def test_select_users_refuses(names: list[str] | None, count: int | None, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        select_users(names, None, count, "user", 1)


def test_validate_users_reports_every_bad_name() -> None:
    with pytest.raises(InvalidInput, match="3 invalid") as info:
        validate_users(["ok1", "Bad", "kube-system", "workshop-runner"], "workshop-runner")
    assert "Bad" in str(info.value)
    assert "kube-system" in str(info.value)


def guard_data(objects: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    (params,) = [
        o
        for o in objects
        if o["kind"] == "ConfigMap" and o["metadata"]["name"] == GUARD_PARAMS_NAME
    ]
    data: dict[str, Any] = params["data"]
    return data


def test_the_shipped_olm_guard_parameters_are_the_default_template_parameters() -> None:
    """manifests/deploy/guard-params.yaml (for `kubectl apply -k`) and runner/defaults.yaml
    cannot drift apart: the guard allows what the templates render by default."""
    defaults = config.load_params(None, config.User("u1"), project_request=False)
    assert guard_data(load_deploy().objects) == {k: str(defaults[k]) for k in GUARD_PARAMS}


def test_launch_renders_the_olm_guard_parameters_from_its_params(tmp_path: Path) -> None:
    overrides = tmp_path / "params.yaml"
    image = "registry.example/index@sha256:" + "a" * 64
    overrides.write_text(f"catalog_image: {image}\nsso_starting_csv: rhsso-operator.7.6.0\n")
    params = config.load_params(overrides, config.User("u1"), project_request=False)
    base = load_deploy()
    rendered = with_guard_params(base, params)
    data = guard_data(rendered.objects)
    assert data["catalog_image"] == image
    assert data["sso_starting_csv"] == "rhsso-operator.7.6.0"
    assert data["sso_package"] == "rhsso-operator"
    assert guard_data(base.objects) != data  # the loaded base itself is left as it was
    kinds = [o["kind"] for o in apply_order(list(rendered.objects))]
    assert kinds.index("ConfigMap") < kinds.index("ValidatingAdmissionPolicyBinding")
