"""Inputs decided before any API call: the user, the step selection, the parameters."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner import config
from runner.errors import InvalidInput, TemplateError

NAMES = ["namespace", "catalog-source", "rbac", "istio-namespace", "limit-ranges"]


@pytest.mark.parametrize("name", ["user1", "a", "u-1", "x" * 57, "7up"])
def test_valid_users(name: str) -> None:
    assert config.validate_user(name, set()).istio_namespace == f"{name}-istio"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("User1", "DNS-1123"),
        ("-user", "DNS-1123"),
        ("user-", "DNS-1123"),
        ("us_er", "DNS-1123"),
        ("user.1", "DNS-1123"),
        ("", "DNS-1123"),
        ("x" * 58, "at most 57"),
        ("default", "system namespace default"),
        ("kube-system", "system namespace kube-system"),
        ("kube", "system namespace kube-istio"),
        ("openshift-monitoring", "system namespace openshift-monitoring"),
        ("openshift", "system namespace openshift"),
        ("u1\nkind: Secret", "DNS-1123"),
    ],
)
def test_invalid_users(name: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        config.validate_user(name, set())


def test_runner_namespace_is_refused() -> None:
    with pytest.raises(InvalidInput, match="runner's own namespace workshop-jobs"):
        config.validate_user("workshop-jobs", {"workshop-jobs"})


def test_own_namespace_from_service_account_dir(tmp_path: Path) -> None:
    (tmp_path / "namespace").write_text("jobs-ns\n")
    env = {"WORKSHOP_RUNNER_SERVICEACCOUNT_DIR": str(tmp_path), "POD_NAMESPACE": "pod-ns"}
    assert config.own_namespaces(env) == {"jobs-ns", "pod-ns"}


def test_user_sources_in_order(tmp_path: Path) -> None:
    env = {"WORKSHOP_USER": "from-env", "USER": "root", "JOB_COMPLETION_INDEX": "0"}
    assert config.resolve_user_name("from-flag", env, None) == "from-flag"
    assert config.resolve_user_name(None, env, None) == "from-env"
    indexed = {"JOB_COMPLETION_INDEX": "2", "WORKSHOP_USERS": "u0, u1 ,u2", "USER": "root"}
    assert config.resolve_user_name(None, indexed, None) == "u2"
    users = tmp_path / "users"
    users.write_text("# attendees\nuser0\nuser1  # late\n\nuser2,user3\n")
    assert config.resolve_user_name(None, {"JOB_COMPLETION_INDEX": "3"}, users) == "user3"


def test_never_dollar_user() -> None:
    with pytest.raises(InvalidInput, match="no user"):
        config.resolve_user_name(None, {"USER": "root", "LOGNAME": "root"}, None)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"JOB_COMPLETION_INDEX": "3", "WORKSHOP_USERS": "a,b"}, "outside the users list"),
        ({"JOB_COMPLETION_INDEX": "x", "WORKSHOP_USERS": "a"}, "not an integer"),
        ({"JOB_COMPLETION_INDEX": "0"}, "users list is empty"),
    ],
)
def test_bad_index(env: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        config.resolve_user_name(None, env, None)


@pytest.mark.parametrize(
    ("only", "skip", "start", "expected"),
    [
        ((), (), None, NAMES),
        (("rbac", "namespace"), (), None, ["namespace", "rbac"]),
        ((), ("catalog-source",), None, ["namespace", "rbac", "istio-namespace", "limit-ranges"]),
        ((), (), "istio-namespace", ["istio-namespace", "limit-ranges"]),
        (("rbac", "limit-ranges"), (), "rbac", ["rbac", "limit-ranges"]),
        ((), ("limit-ranges",), "rbac", ["rbac", "istio-namespace"]),
    ],
)
def test_select_steps(
    only: tuple[str, ...], skip: tuple[str, ...], start: str | None, expected: list[str]
) -> None:
    assert config.select_steps(NAMES, only, skip, start) == expected


@pytest.mark.parametrize(
    ("only", "skip", "start"),
    [(("nope",), (), None), ((), ("rbac", "nope"), None), ((), (), "nope")],
)
def test_unknown_steps(only: tuple[str, ...], skip: tuple[str, ...], start: str | None) -> None:
    with pytest.raises(InvalidInput, match=r"unknown step.*nope"):
        config.select_steps(NAMES, only, skip, start)


def test_empty_selection() -> None:
    with pytest.raises(InvalidInput, match="empty"):
        config.select_steps(NAMES, ("rbac",), ("rbac",))


def test_split_names() -> None:
    assert config.split_names(["a,b", " c ", ""]) == ["a", "b", "c"]
    assert config.split_names(None) == []


USER = config.User("user1")


def test_params_defaults_and_derived() -> None:
    params = config.load_params(None, USER, project_request=False)
    assert params["sso_starting_csv"] == "rhsso-operator.7.5.2-opr-001"
    assert params["istio_namespace"] == "user1-istio"
    assert params["namespace_mode"] == "namespace"
    assert config.load_params(None, USER, project_request=True)["namespace_mode"] == (
        "project-request"
    )


def test_params_override(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("catalog_image: quay.io/x/index:v1\nsmcp_trace_sampling: 500\n")
    params = config.load_params(path, USER, project_request=False)
    assert params["catalog_image"] == "quay.io/x/index:v1"
    assert params["smcp_trace_sampling"] == 500


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("catalog_imgae: x\n", "unknown parameter 'catalog_imgae'"),
        ("user: root\n", "derived from the user"),
        ("smcp_trace_sampling: lots\n", "must be an integer, not a string"),
        ("smcp_grafana_enabled: 1\n", "must be a boolean"),
        ("catalog_image: {kind: Secret}\n", "must be a string, not a dict"),
        ("kiali_excluded_workloads: [1, 2]\n", "must be a list of strings"),
        ("catalog_image: [unclosed\n", "malformed YAML"),
        ("- a\n- b\n", "expected a mapping"),
        ("namespace_mode: magic\n", "namespace_mode must be"),
    ],
)
def test_bad_params(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(TemplateError, match=message):
        config.load_params(path, USER, project_request=False)


def test_missing_params_file(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="No such file"):
        config.load_params(tmp_path / "absent.yaml", USER, project_request=False)


def test_deadline_scale_from_the_environment() -> None:
    assert config.deadline_scale({}) == 1.0
    assert config.deadline_scale({"WORKSHOP_RUNNER_DEADLINE_SCALE": "0.1"}) == 0.1


@pytest.mark.parametrize("value", ["0", "-1", "fast", "inf", "nan"])
def test_bad_deadline_scale_is_one_clear_line(value: str) -> None:
    with pytest.raises(InvalidInput, match=r"^WORKSHOP_RUNNER_DEADLINE_SCALE=.*greater than 0$"):
        config.deadline_scale({"WORKSHOP_RUNNER_DEADLINE_SCALE": value})


def test_parse_timeouts() -> None:
    assert config.parse_timeouts(["rbac=5", "namespace=1.5,limit-ranges=60"], NAMES) == {
        "rbac": 5.0,
        "namespace": 1.5,
        "limit-ranges": 60.0,
    }
    assert config.parse_timeouts(None, NAMES) == {}


@pytest.mark.parametrize("value", ["rbac", "rbac=", "rbac=0", "rbac=-3", "rbac=soon", "nope=5"])
def test_bad_timeouts(value: str) -> None:
    with pytest.raises(InvalidInput, match="timeout"):
        config.parse_timeouts([value], NAMES)


def test_yaml_documents_read_as_pyyaml_reads_them_with_its_errors() -> None:
    import yaml

    from runner.templates import packaged_templates_dir

    # Every packaged template: libyaml's answer is PyYAML's.
    for path in sorted(packaged_templates_dir().iterdir()):
        if path.suffix in (".yaml", ".yml"):
            text = path.read_text()
            assert config.load_yaml_documents(text) == list(yaml.safe_load_all(text)), path.name
    # What libyaml refuses is PyYAML's error, which quotes the line (libyaml's does not).
    text = "kind: ConfigMap\nmetadata: {name: ${nope}}\n"
    with pytest.raises(yaml.YAMLError) as fast:
        list(yaml.load_all(text, Loader=yaml.CSafeLoader))
    assert "${nope}" not in str(fast.value)
    with pytest.raises(yaml.YAMLError, match=r"metadata: \{name: \$\{nope\}\}"):
        config.load_yaml_documents(text)
