"""Per-user manifest templates: parse the YAML first, then substitute parameters.

Parameters go into the parsed documents' string values, never into YAML text, so a value such
as "x\\nkind: Secret" stays the string it is. A value that is exactly one placeholder takes the
parameter's typed value (int, bool, list of strings); a placeholder inside a longer string must
name a scalar. `$${` writes a literal `${`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from runner.config import load_yaml_documents
from runner.errors import TemplateError
from runner.hints import suggest
from runner.logs import one_line

PLACEHOLDER = re.compile(r"\$(\$?)\{([^{}]*)\}")
TEMPLATE_SUFFIXES = (".yaml", ".yml")
# The order objects are applied in, dependencies first: namespaces, then what RBAC binds to,
# then the bindings, then the rest (Jobs last). Kinds in one tier keep their given order.
APPLY_TIERS: tuple[tuple[str, ...], ...] = (
    ("Namespace",),
    ("ServiceAccount", "ClusterRole", "Role"),
    ("ClusterRoleBinding", "RoleBinding"),
    ("ConfigMap",),  # the admission guard's parameters before the binding that reads them
    ("ValidatingAdmissionPolicy",),
    ("ValidatingAdmissionPolicyBinding",),
)
LAST_KINDS = ("Job",)


def packaged_templates_dir() -> Path:
    """runner/_templates inside an installed wheel, else <repo>/manifests/templates."""
    shipped = Path(str(resources.files("runner"))) / "_templates"
    if shipped.is_dir():
        return shipped
    return Path(__file__).resolve().parent.parent / "manifests" / "templates"


@dataclass(frozen=True)
class Template:
    name: str
    source: Path
    documents: tuple[dict[str, Any], ...]


def load_dir(directory: Path) -> dict[str, Template]:
    """Every *.yaml / *.yml file in `directory`, parsed strictly; hidden entries are skipped
    (a mounted ConfigMap has `..data` links next to the files)."""
    if not directory.is_dir():
        raise TemplateError(f"templates directory {directory} does not exist")
    found: dict[str, Template] = {}
    for path in sorted(directory.iterdir()):
        if path.name.startswith(".") or not path.name.endswith(TEMPLATE_SUFFIXES):
            continue
        if path.is_file():
            found[path.name] = Template(path.name, path, parse_documents(path))
    return found


def load_templates(override: Path | None) -> dict[str, Template]:
    """The packaged templates, with files of the same name replaced (and new ones added) by
    the override directory."""
    templates = load_dir(packaged_templates_dir())
    if override is not None:
        templates.update(load_dir(override))
    return templates


def parse_documents(path: Path) -> tuple[dict[str, Any], ...]:
    try:
        text = path.read_text(encoding="utf-8")
        raw = load_yaml_documents(text)
    except (OSError, UnicodeDecodeError) as e:
        raise TemplateError(f"template {path}: cannot read: {e}") from None
    except yaml.YAMLError as e:
        raise TemplateError(f"template {path}: malformed YAML: {one_line(e)}") from None
    docs: list[dict[str, Any]] = []
    for index, doc in enumerate(raw):
        if doc is None:
            continue
        where = f"template {path} document {index + 1}"
        if not isinstance(doc, dict):
            raise TemplateError(f"{where}: expected a mapping, got {type(doc).__name__}")
        check_object(doc, where)
        docs.append(doc)
    return tuple(docs)


def check_object(doc: Mapping[str, Any], where: str) -> None:
    for key in ("apiVersion", "kind"):
        if not isinstance(doc.get(key), str) or not doc[key]:
            raise TemplateError(f"{where}: missing {key}")
    meta = doc.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
        raise TemplateError(f"{where}: missing metadata.name")


def placeholders(value: Any) -> set[str]:
    """Every parameter name a parsed document refers to."""
    names: set[str] = set()
    for text in _strings(value):
        names.update(m.group(2) for m in PLACEHOLDER.finditer(text) if not m.group(1))
    return names


def render(template: Template, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Substitute `params` into the template's string values; unknown names are an error."""
    unknown = sorted(placeholders(template.documents) - set(params))
    if unknown:
        raise TemplateError(
            f"template {template.source}: unknown parameter(s) {', '.join(unknown)}; "
            f"{suggest(unknown, sorted(params), quote=False)}"
        )
    out: list[dict[str, Any]] = []
    for index, doc in enumerate(template.documents):
        rendered = _substitute(doc, params)
        check_object(rendered, f"template {template.source} document {index + 1} (rendered)")
        out.append(rendered)
    return out


DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def check_rendered(name: str, docs: list[dict[str, Any]], namespaces: set[str]) -> None:
    """Names, namespaces and label values of rendered objects, checked before any API call:
    a parameter value that is not a valid name fails here (exit 3) instead of after earlier
    steps wrote something, and no template may write outside the user's namespaces."""
    for index, doc in enumerate(docs):
        where = f"template {name} document {index + 1} ({doc['kind']})"
        meta = doc["metadata"]
        obj_name = meta["name"]
        if len(obj_name) > 253 or not DNS1123_SUBDOMAIN.match(obj_name):
            raise TemplateError(f"{where}: metadata.name {obj_name!r} is not a valid name")
        namespace = meta.get("namespace")
        if namespace is not None and namespace not in namespaces:
            raise TemplateError(
                f"{where}: namespace {namespace!r} is not one of the user's namespaces "
                f"({', '.join(sorted(namespaces))})"
            )
        if doc["kind"] == "Namespace" and obj_name not in namespaces:
            raise TemplateError(f"{where}: Namespace {obj_name!r} is not one of the user's")
        labels = meta.get("labels") or {}
        if not isinstance(labels, dict):
            raise TemplateError(f"{where}: metadata.labels must be a mapping")
        for key, value in labels.items():
            if not isinstance(value, str) or len(value) > 63 or not LABEL_VALUE.match(value):
                raise TemplateError(f"{where}: label {key}={value!r} is not a valid label value")


def _substitute(value: Any, params: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        return _substitute_string(value, params)
    if isinstance(value, dict):
        return {k: _substitute(v, params) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, params) for v in value]
    return value


def _substitute_string(text: str, params: Mapping[str, Any]) -> Any:
    whole = PLACEHOLDER.fullmatch(text)
    if whole and not whole.group(1):
        return _copy(params[whole.group(2)])

    def one(match: re.Match[str]) -> str:
        if match.group(1):
            return "${" + match.group(2) + "}"
        value = params[match.group(2)]
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str | int | float):
            return str(value)
        raise TemplateError(
            f"parameter {match.group(2)} is a {type(value).__name__} and cannot be part of "
            f"the string {text!r}"
        )

    return PLACEHOLDER.sub(one, text)


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def apply_order(objects: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """`objects` sorted (stably) by APPLY_TIERS; kinds no tier names next, then LAST_KINDS."""

    def tier(obj: dict[str, Any]) -> int:
        kind = str(obj["kind"])
        found = [i for i, kinds in enumerate(APPLY_TIERS) if kind in kinds]
        if found:
            return found[0]
        return len(APPLY_TIERS) + (kind in LAST_KINDS)

    return sorted(objects, key=tier)
