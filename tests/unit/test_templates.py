"""Templates: parsed first, parameters substituted into string values only."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from runner import config, templates
from runner.errors import TemplateError
from runner.templates import Template

PARAMS = {
    "user": "user1",
    "user_namespace": "user1",
    "image": "quay.io/x:1",
    "count": 3,
    "flag": True,
    "kinds": ["Job", "CronJob"],
}


def template(text: str, tmp_path: Path, name: str = "t.yaml") -> Template:
    path = tmp_path / name
    path.write_text(text)
    return Template(name, path, templates.parse_documents(path))


BASE = (
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${user}\n  namespace: ${user_namespace}\n"
)


def test_render_strings_and_types(tmp_path: Path) -> None:
    text = BASE + (
        "data:\n  image: ${image}\n  msg: 'hello ${user}, ${count} x ${flag}'\n"
        "  literal: $${user}\nspec:\n  replicas: ${count}\n  enabled: ${flag}\n  kinds: ${kinds}\n"
    )
    [doc] = templates.render(template(text, tmp_path), PARAMS)
    assert doc["metadata"] == {"name": "user1", "namespace": "user1"}
    assert doc["data"] == {
        "image": "quay.io/x:1",
        "msg": "hello user1, 3 x true",
        "literal": "${user}",
    }
    assert doc["spec"] == {"replicas": 3, "enabled": True, "kinds": ["Job", "CronJob"]}


@pytest.mark.parametrize(
    "evil",
    [
        "x\nkind: Secret",
        "x\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: s}",
        "{kind: Secret}",
        "[a, b]",
        "'; rm -rf /",
        "${user}",
        "&anchor x",
        "!!python/object:os.system ls",
    ],
)
def test_injection_stays_a_string(tmp_path: Path, evil: str) -> None:
    text = BASE + "data:\n  value: ${image}\n  inline: 'v=${image}'\n"
    docs = templates.render(template(text, tmp_path), {**PARAMS, "image": evil})
    assert len(docs) == 1
    assert docs[0]["kind"] == "ConfigMap"
    assert docs[0]["data"] == {"value": evil, "inline": f"v={evil}"}
    assert yaml.safe_load(yaml.safe_dump(docs[0]))["data"]["value"] == evil


def test_injection_into_name_is_still_one_string(tmp_path: Path) -> None:
    [doc] = templates.render(template(BASE, tmp_path), {**PARAMS, "user": "a\nkind: Secret"})
    assert doc["metadata"]["name"] == "a\nkind: Secret"
    assert doc["kind"] == "ConfigMap"


def test_unknown_parameter(tmp_path: Path) -> None:
    t = template(BASE + "data:\n  a: ${nope}\n  b: x-${also_nope}\n", tmp_path)
    with pytest.raises(TemplateError, match=r"unknown parameter.*also_nope, nope"):
        templates.render(t, PARAMS)


def test_list_inside_string_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="kinds is a list"):
        templates.render(template(BASE + "data:\n  a: x-${kinds}\n", tmp_path), PARAMS)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("apiVersion: v1\nkind: [unclosed\n", "malformed YAML"),
        ("a: b\n  c: d\n", "malformed YAML"),
        ("- just\n- a list\n", "expected a mapping"),
        ("kind: ConfigMap\nmetadata: {name: x}\n", "missing apiVersion"),
        ("apiVersion: v1\nmetadata: {name: x}\n", "missing kind"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n", "missing metadata.name"),
        ("apiVersion: v1\nkind: ConfigMap\n", "missing metadata.name"),
    ],
)
def test_malformed_templates(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(TemplateError, match=message):
        templates.parse_documents(path)


def test_empty_documents_are_skipped(tmp_path: Path) -> None:
    t = template("---\n" + BASE + "---\n---\n" + BASE.replace("ConfigMap", "Secret"), tmp_path)
    assert [d["kind"] for d in templates.render(t, PARAMS)] == ["ConfigMap", "Secret"]


def test_name_rendering_empty_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match=r"metadata\.name"):
        templates.render(template(BASE, tmp_path), {**PARAMS, "user": ""})


def test_override_directory_replaces_and_adds(tmp_path: Path) -> None:
    (tmp_path / "rbac.yaml").write_text(BASE)
    (tmp_path / "extra-netpol.yaml").write_text(BASE.replace("ConfigMap", "NetworkPolicy"))
    (tmp_path / "..data").mkdir()
    (tmp_path / "README.md").write_text("not a template")
    loaded = templates.load_templates(tmp_path)
    assert loaded["rbac.yaml"].documents[0]["kind"] == "ConfigMap"
    assert "extra-netpol.yaml" in loaded
    assert "namespace.yaml" in loaded
    assert "README.md" not in loaded


def test_missing_override_directory(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="does not exist"):
        templates.load_templates(tmp_path / "nope")


def test_shipped_templates_render_with_default_params() -> None:
    params = config.load_params(None, config.User("user1"), project_request=False)
    rendered = {n: templates.render(t, params) for n, t in templates.load_templates(None).items()}
    assert rendered["namespace.yaml"][0]["metadata"]["name"] == "user1"
    assert rendered["istio-namespace.yaml"][0]["metadata"]["name"] == "user1-istio"
    binding = rendered["istio-rbac.yaml"][0]
    assert binding["metadata"]["namespace"] == "user1-istio"
    assert binding["subjects"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "user1"}
    ]
    assert binding["roleRef"]["name"] == "admin"
    catalog = rendered["catalog-source.yaml"][0]
    assert catalog["spec"]["sourceType"] == "grpc"
    assert catalog["metadata"]["namespace"] == "user1"


USER_NS = {"user1", "user1-istio"}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"user": "a\nkind: Secret"}, "is not a valid name"),
        ({"user": "UPPER"}, "is not a valid name"),
        ({"user_namespace": "kube-system"}, "not one of the user's namespaces"),
        ({"image": "bad value!"}, "not a valid label value"),
    ],
)
def test_check_rendered_refuses(tmp_path: Path, override: dict[str, str], message: str) -> None:
    text = BASE + "  labels:\n    image: ${image}\n"
    docs = templates.render(template(text, tmp_path), {**PARAMS, "image": "ok", **override})
    with pytest.raises(TemplateError, match=message):
        templates.check_rendered("t.yaml", docs, USER_NS)


def test_check_rendered_accepts_shipped_templates() -> None:
    params = config.load_params(None, config.User("user1"), project_request=False)
    for name, t in templates.load_templates(None).items():
        templates.check_rendered(name, templates.render(t, params), USER_NS)


def test_namespace_outside_the_users_is_refused(tmp_path: Path) -> None:
    docs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "payroll"}}]
    with pytest.raises(TemplateError, match="Namespace 'payroll'"):
        templates.check_rendered("ns.yaml", docs, USER_NS)
