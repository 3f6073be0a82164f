"""Everything decided before the first API call: who the user is, which steps, which params.

All checks here raise InvalidInput (exit 2) or TemplateError (exit 3); nothing talks to the
cluster.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from runner.errors import InvalidInput, TemplateError
from runner.hints import article, suggest
from runner.logs import one_line

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
ISTIO_SUFFIX = "-istio"
MAX_USER_LEN = 63 - len(ISTIO_SUFFIX)
SYSTEM_NAMESPACES = ("default", "kube-*", "openshift", "openshift-*")
DERIVED_PARAMS = ("user", "user_namespace", "istio_namespace")
DEFAULTS_FILE = Path(__file__).resolve().parent / "defaults.yaml"
DEFAULT_SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


@dataclass(frozen=True)
class User:
    name: str

    @property
    def namespace(self) -> str:
        return self.name

    @property
    def istio_namespace(self) -> str:
        return self.name + ISTIO_SUFFIX


def service_account_dir(env: Mapping[str, str]) -> Path:
    return Path(env.get("WORKSHOP_RUNNER_SERVICEACCOUNT_DIR") or DEFAULT_SA_DIR)


def own_namespaces(env: Mapping[str, str]) -> set[str]:
    """The namespace(s) the runner itself lives in; never usable as a user."""
    found = {env["POD_NAMESPACE"]} if env.get("POD_NAMESPACE") else set()
    try:
        text = (service_account_dir(env) / "namespace").read_text().strip()
    except OSError:
        text = ""
    if text:
        found.add(text)
    return found


def resolve_user_name(flag: str | None, env: Mapping[str, str], users_file: Path | None) -> str:
    """--user, else WORKSHOP_USER, else JOB_COMPLETION_INDEX into the users list. Never $USER."""
    if flag:
        return flag
    if env.get("WORKSHOP_USER"):
        return env["WORKSHOP_USER"]
    index_text = env.get("JOB_COMPLETION_INDEX")
    if index_text is None:
        raise InvalidInput(
            "no user: pass --user, set WORKSHOP_USER, or run as an Indexed Job "
            "(JOB_COMPLETION_INDEX with WORKSHOP_USERS or --users-file)"
        )
    users = users_list(env, users_file)
    try:
        index = int(index_text)
    except ValueError:
        raise InvalidInput(f"JOB_COMPLETION_INDEX={index_text!r} is not an integer") from None
    if not 0 <= index < len(users):
        raise InvalidInput(
            f"JOB_COMPLETION_INDEX={index} is outside the users list ({len(users)} users)"
        )
    return users[index]


def users_list(env: Mapping[str, str], users_file: Path | None) -> list[str]:
    if users_file is not None:
        try:
            text = users_file.read_text(encoding="utf-8")
        except OSError as e:
            raise InvalidInput(f"users file {users_file}: {e.strerror or e}") from None
        lines = (line.split("#", 1)[0] for line in text.splitlines())
        users = [u.strip() for line in lines for u in line.split(",") if u.strip()]
    else:
        users = [u.strip() for u in env.get("WORKSHOP_USERS", "").split(",") if u.strip()]
    if not users:
        raise InvalidInput("JOB_COMPLETION_INDEX is set but the users list is empty")
    return users


def validate_user(name: str, forbidden_namespaces: set[str]) -> User:
    if not DNS1123_LABEL.match(name):
        raise InvalidInput(
            f"user {name!r} is not a DNS-1123 label (lower-case letters, digits and '-', "
            "starting and ending with a letter or digit)"
        )
    if len(name) > MAX_USER_LEN:
        raise InvalidInput(
            f"user {name!r} is {len(name)} characters; at most {MAX_USER_LEN} fit "
            f"in the namespace {name}{ISTIO_SUFFIX}"
        )
    user = User(name)
    for ns in (user.namespace, user.istio_namespace):
        if is_system_namespace(ns):
            raise InvalidInput(f"user {name!r} would use the system namespace {ns}")
        if ns in forbidden_namespaces:
            raise InvalidInput(f"user {name!r} would use the runner's own namespace {ns}")
    return user


def is_system_namespace(ns: str) -> bool:
    for pattern in SYSTEM_NAMESPACES:
        if pattern.endswith("*") and ns.startswith(pattern[:-1]):
            return True
        if ns == pattern:
            return True
    return False


def select_steps(
    names: Sequence[str],
    only: Sequence[str] = (),
    skip: Sequence[str] = (),
    start: str | None = None,
) -> list[str]:
    """The selected step names in declaration order: from `start` on, restricted to `only`,
    minus `skip`."""
    known = set(names)
    unknown = [n for n in (*only, *skip, *([start] if start else [])) if n not in known]
    if unknown:
        raise InvalidInput(
            f"unknown step(s) {', '.join(unknown)}; {suggest(unknown, names, quote=False)}"
        )
    chosen = list(names[names.index(start) :] if start else names)
    if only:
        chosen = [n for n in chosen if n in only]
    chosen = [n for n in chosen if n not in skip]
    if not chosen:
        raise InvalidInput("the step selection is empty")
    return chosen


DEADLINE_SCALE_ENV = "WORKSHOP_RUNNER_DEADLINE_SCALE"


def deadline_scale(env: Mapping[str, str]) -> float:
    """WORKSHOP_RUNNER_DEADLINE_SCALE: the operator-waiting steps' stall windows and hard caps
    times this (unset: 1). For test clusters whose simulated operators run that much faster."""
    text = env.get(DEADLINE_SCALE_ENV, "").strip()
    if not text:
        return 1.0
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise InvalidInput(f"{DEADLINE_SCALE_ENV}={text!r}: expected a number greater than 0")
    return value


def parse_timeouts(values: Sequence[str] | None, names: Sequence[str]) -> dict[str, float]:
    """`--timeout csv=900 --timeout smcp=60,kiali=30` -> {"csv": 900.0, ...}."""
    timeouts: dict[str, float] = {}
    for item in split_names(values):
        name, sep, seconds = item.partition("=")
        try:
            value = float(seconds) if sep else -1.0
        except ValueError:
            value = -1.0
        if value <= 0:
            raise InvalidInput(f"--timeout {item!r}: expected STEP=SECONDS with SECONDS > 0")
        if name not in names:
            raise InvalidInput(
                f"--timeout: unknown step {name}; {suggest([name], names, quote=False)}"
            )
        timeouts[name] = value
    return timeouts


def split_names(values: Sequence[str] | None) -> list[str]:
    """`--steps a,b --steps c` -> [a, b, c]."""
    return [n.strip() for v in values or () for n in v.split(",") if n.strip()]


def load_params(params_file: Path | None, user: User, *, project_request: bool) -> dict[str, Any]:
    """Defaults, overridden by the params file (known names, same types), plus derived ones."""
    params = _read_yaml_mapping(DEFAULTS_FILE)
    if params_file is not None:
        overrides = _read_yaml_mapping(params_file)
        for name, value in overrides.items():
            if name in DERIVED_PARAMS:
                raise TemplateError(
                    f"params file {params_file}: {name} is derived from the user and cannot be set"
                )
            if name not in params:
                raise TemplateError(
                    f"params file {params_file}: unknown parameter {name!r}; "
                    f"{suggest([name], sorted(params))}"
                )
            _check_type(params_file, name, params[name], value)
            params[name] = value
    if project_request:
        params["namespace_mode"] = "project-request"
    if params["namespace_mode"] not in ("namespace", "project-request"):
        raise TemplateError(
            f"namespace_mode must be 'namespace' or 'project-request', "
            f"not {params['namespace_mode']!r}"
        )
    params.update(
        user=user.name, user_namespace=user.namespace, istio_namespace=user.istio_namespace
    )
    return params


def load_yaml_documents(text: str) -> list[Any]:
    """Every document of `text`, as yaml.safe_load_all reads them. libyaml's parser first
    (PyYAML's wheels have it): the pure-Python one was a third of a pod's CPU time after
    start-up, parsing the templates. Text libyaml refuses is read again by PyYAML's own parser,
    so the answer or the error is PyYAML's (its errors quote the offending line)."""
    fast = getattr(yaml, "CSafeLoader", None)
    if fast is not None:
        try:
            return list(yaml.load_all(text, Loader=fast))
        except yaml.YAMLError:
            pass
    return list(yaml.safe_load_all(text))


def _read_yaml_mapping(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise TemplateError(f"params file {path}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise TemplateError(f"params file {path}: malformed YAML: {one_line(e)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise TemplateError(f"params file {path}: expected a mapping of parameter names")
    return data


def _check_type(source: Path, name: str, default: Any, value: Any) -> None:
    def kind(v: Any) -> str:
        if isinstance(v, bool):
            return "boolean"
        if isinstance(v, int):
            return "integer"
        if isinstance(v, str):
            return "string"
        if isinstance(v, list) and all(isinstance(i, str) for i in v):
            return "list of strings"
        return type(v).__name__

    if kind(default) != kind(value):
        raise TemplateError(
            f"params file {source}: {name} must be {article(kind(default))}, "
            f"not {article(kind(value))}"
        )
