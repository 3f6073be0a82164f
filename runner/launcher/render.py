"""Build every object a launch applies, in Python, from the shipped manifests.

The deploy base (namespace, ServiceAccount, RBAC, admission guard) and the two Job bases are
read from `runner/_deploy` inside the wheel (else `<repo>/manifests/deploy`), following each
kustomization's `resources` list. A launch then fills in only what is per launch: Job names,
the launch/user labels, the users, the image, completions/parallelism, and the name of the
per-launch ConfigMap that carries the templates (and the parameters) into the pods.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml

from runner import config, templates
from runner.config import User
from runner.errors import InvalidInput, TemplateError
from runner.logs import one_line
from runner.waits import Obj

Mode = Literal["indexed", "jobs"]
NAME_LABEL = "app.kubernetes.io/name"
LAUNCH_LABEL = "workshop-runner.io/launch"
USER_LABEL = "workshop-runner.io/user"
APP = "workshop-runner"
CONTAINER = "runner"
TEMPLATES_VOLUME = "templates"
# JSON is YAML, so the runner reads it with --params; the .json suffix keeps the runner's
# template loader (*.yaml, *.yml) from taking it for a template in the same mounted directory.
PARAMS_KEY = "params.json"
JOB_PREFIX = "wr-"
MAX_NAME = 63  # the job controller copies the Job name into a label value
# The OLM guard's parameter ConfigMap (manifests/deploy/guard-params.yaml) and the template
# parameters it carries: what the runner may subscribe to is what the templates render.
GUARD_PARAMS_NAME = "workshop-runner-guard-olm"
GUARD_PARAMS = (
    "catalog_image",
    "catalog_source_name",
    "sso_channel",
    "sso_package",
    "sso_starting_csv",
    "sso_subscription_name",
)


def packaged_deploy_dir() -> Path:
    """runner/_deploy inside an installed wheel, else <repo>/manifests/deploy."""
    shipped = Path(str(resources.files("runner"))) / "_deploy"
    if shipped.is_dir():
        return shipped
    return Path(__file__).resolve().parents[2] / "manifests" / "deploy"


@dataclass(frozen=True)
class DeployBase:
    objects: tuple[Obj, ...]
    indexed_job: Obj
    per_user_job: Obj

    @property
    def namespace(self) -> str:
        """The Jobs namespace the base is written for (its Namespace object)."""
        for obj in self.objects:
            if obj["kind"] == "Namespace":
                return str(obj["metadata"]["name"])
        raise TemplateError("deploy base: no Namespace object")


def guard_params(params: Mapping[str, object]) -> dict[str, str]:
    """The OLM guard's parameters (its ConfigMap's data) for these template parameters."""
    return {name: str(params[name]) for name in GUARD_PARAMS}


def with_guard_params(base: DeployBase, params: Mapping[str, object]) -> DeployBase:
    """The deploy base with the OLM guard's parameter ConfigMap rendered from `params` (the
    launch's defaults + --params), so the guard allows exactly what the templates render."""
    objects = [copy.deepcopy(o) if _is_guard_params(o) else o for o in base.objects]
    rendered = [o for o in objects if _is_guard_params(o)]
    if not rendered:
        raise TemplateError(f"deploy base: no ConfigMap {GUARD_PARAMS_NAME} (the OLM guard)")
    for obj in rendered:
        obj["data"] = guard_params(params)
    return dataclasses.replace(base, objects=tuple(objects))


def _is_guard_params(obj: Obj) -> bool:
    return bool(obj["kind"] == "ConfigMap" and obj["metadata"]["name"] == GUARD_PARAMS_NAME)


def load_deploy(directory: Path | None = None) -> DeployBase:
    root = directory or packaged_deploy_dir()
    return DeployBase(
        objects=tuple(_kustomization_objects(root)),
        indexed_job=_one_job(root / "jobs" / "indexed"),
        per_user_job=_one_job(root / "jobs" / "per-user"),
    )


def _kustomization_objects(directory: Path) -> list[Obj]:
    path = directory / "kustomization.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise TemplateError(f"deploy base {path}: {one_line(e)}") from None
    objects: list[Obj] = []
    for entry in data.get("resources") or []:
        objects.extend(templates.parse_documents(directory / str(entry)))
    return objects


def _one_job(directory: Path) -> Obj:
    jobs = [o for o in _kustomization_objects(directory) if o["kind"] == "Job"]
    if len(jobs) != 1:
        raise TemplateError(f"deploy base {directory}: expected one Job, found {len(jobs)}")
    return jobs[0]


@dataclass(frozen=True)
class LaunchPlan:
    launch_id: str
    namespace: str
    users: tuple[str, ...]
    image: str
    mode: Mode
    parallelism: int
    has_params: bool = False

    @property
    def selector(self) -> str:
        return f"{LAUNCH_LABEL}={self.launch_id}"

    @property
    def config_map(self) -> str:
        return f"{JOB_PREFIX}{self.launch_id}"


def job_name(launch_id: str, user: str | None = None) -> str:
    """`wr-<launch>` (indexed) or `wr-<launch>-<user>`; shortened with a hash when too long."""
    name = f"{JOB_PREFIX}{launch_id}" + (f"-{user}" if user else "")
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:6]
    return f"{name[: MAX_NAME - 7].rstrip('-')}-{digest}"


def render_jobs(base: DeployBase, plan: LaunchPlan) -> list[Obj]:
    if plan.mode == "indexed":
        n = len(plan.users)
        parallelism = min(plan.parallelism, n)
        job = _job(
            base.indexed_job,
            plan,
            job_name(plan.launch_id),
            {LAUNCH_LABEL: plan.launch_id},
            {"WORKSHOP_USERS": ",".join(plan.users)},
        )
        job["spec"]["completions"] = n
        job["spec"]["parallelism"] = parallelism
        # Each wave of pods gets one user's whole budget (the per-user Job's deadline).
        per_user = int(base.per_user_job["spec"].get("activeDeadlineSeconds") or 14400)
        job["spec"]["activeDeadlineSeconds"] = math.ceil(n / parallelism) * per_user
        return [job]
    return [
        _job(
            base.per_user_job,
            plan,
            job_name(plan.launch_id, user),
            {LAUNCH_LABEL: plan.launch_id, USER_LABEL: user},
            {"WORKSHOP_USER": user},
        )
        for user in plan.users
    ]


def _job(base: Obj, plan: LaunchPlan, name: str, labels: dict[str, str], env: Obj) -> Obj:
    job = copy.deepcopy(base)
    meta = job["metadata"]
    meta.update(name=name, namespace=plan.namespace)
    meta["labels"] = {**(meta.get("labels") or {}), **labels}
    template = job["spec"]["template"]
    template_meta = template.setdefault("metadata", {})
    template_meta["labels"] = {**(template_meta.get("labels") or {}), **labels}
    pod = template["spec"]
    container = next((c for c in pod["containers"] if c["name"] == CONTAINER), None)
    if container is None:
        raise TemplateError(f"deploy base Job {base['metadata']['name']}: no container {CONTAINER}")
    container["image"] = plan.image
    _set_env(container, env)
    volume = next((v for v in pod.get("volumes") or [] if v["name"] == TEMPLATES_VOLUME), None)
    mount = next(
        (m for m in container.get("volumeMounts") or [] if m["name"] == TEMPLATES_VOLUME), None
    )
    if volume is None or mount is None or "configMap" not in volume:
        raise TemplateError(
            f"deploy base Job {base['metadata']['name']}: no ConfigMap volume {TEMPLATES_VOLUME}"
        )
    volume["configMap"]["name"] = plan.config_map
    if plan.has_params:
        container["args"] = [
            *container.get("args", []),
            "--params",
            f"{mount['mountPath']}/{PARAMS_KEY}",
        ]
    return job


def _set_env(container: Obj, values: Obj) -> None:
    env: list[Obj] = container.setdefault("env", [])
    for name, value in values.items():
        entry = next((e for e in env if e["name"] == name), None)
        if entry is None:
            env.append({"name": name, "value": value})
        else:
            entry.clear()
            entry.update(name=name, value=value)


def render_config_map(plan: LaunchPlan, files: Mapping[str, str]) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": plan.config_map,
            "namespace": plan.namespace,
            "labels": {NAME_LABEL: APP, LAUNCH_LABEL: plan.launch_id},
        },
        "data": dict(files),
    }


def owned_by(obj: Obj, owners: Sequence[Obj]) -> Obj:
    """`obj` with ownerReferences to `owners` (live objects): the garbage collector removes
    it once every owner is gone (the Jobs' ttlSecondsAfterFinished)."""
    owned = copy.deepcopy(obj)
    owned["metadata"]["ownerReferences"] = [
        {
            "apiVersion": o["apiVersion"],
            "kind": o["kind"],
            "name": o["metadata"]["name"],
            "uid": o["metadata"]["uid"],
        }
        for o in owners
    ]
    return owned


def pod_files(
    users: Sequence[str], templates_dir: Path | None, params_file: Path | None
) -> dict[str, str]:
    """The ConfigMap's files: the templates the pods will use (shipped ones, overridden and
    extended by `templates_dir`) and the parameters. Everything is rendered for every user
    here first, so a template or parameter error fails the launch (exit 3) before any API
    call instead of failing every pod."""
    loaded = templates.load_templates(templates_dir)
    for name in users:
        params = config.load_params(params_file, User(name), project_request=False)
        for template in loaded.values():
            templates.render(template, params)
    files = {name: t.source.read_text(encoding="utf-8") for name, t in loaded.items()}
    if params_file is not None:
        overrides = yaml.safe_load(params_file.read_text(encoding="utf-8")) or {}
        files[PARAMS_KEY] = json.dumps(overrides, indent=2, sort_keys=True) + "\n"
    size = sum(len(v.encode()) for v in files.values())
    if size > 900 * 1024:
        raise InvalidInput(f"templates and parameters are {size} bytes; a ConfigMap holds 1 MiB")
    return files


@dataclass(frozen=True)
class LaunchObjects:
    """Everything a launch applies, in the order it applies it. `launch` applies exactly
    these; `launch --render` writes them."""

    deploy: tuple[Obj, ...]  # the deploy base in dependency order (empty: --skip-deploy)
    config_map: Obj
    jobs: tuple[Obj, ...]

    def all(self) -> list[Obj]:
        return [*self.deploy, self.config_map, *self.jobs]


def launch_objects(
    base: DeployBase, plan: LaunchPlan, files: Mapping[str, str], *, deploy: bool = True
) -> LaunchObjects:
    return LaunchObjects(
        tuple(templates.apply_order(base.objects)) if deploy else (),
        render_config_map(plan, files),
        tuple(render_jobs(base, plan)),
    )


RENDER_FILES = (
    ("00-deploy.yaml", "the deploy base: namespace, ServiceAccount, RBAC, admission guard"),
    ("10-configmap.yaml", "the per-launch ConfigMap: templates and parameters for the pods"),
    ("20-jobs.yaml", "the Job or Jobs"),
)


def render_yaml(objects: Sequence[Obj], header: str) -> str:
    """A YAML stream of `objects` (one document each) under a comment header."""
    comment = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    body = "---\n".join(yaml.safe_dump(o, sort_keys=False, width=100) for o in objects)
    return comment + ("---\n" + body if objects else "")


def write_rendered(objects: LaunchObjects, plan: LaunchPlan, directory: Path | None) -> str:
    """`launch --render`: the YAML of everything the launch would apply, as one stream
    (returned), or as three files in `directory` whose names sort in apply order (so
    `kubectl apply --server-side -f DIR` creates the namespace before what lives in it).
    Returns what to print."""
    header = (
        f"workshop-runner launch --render: launch {plan.launch_id}, {len(plan.users)} user(s), "
        f"--mode {plan.mode}, image {plan.image}\n"
        "Apply with: kubectl apply --server-side --field-manager workshop-runner -f <this>;\n"
        "follow with: workshop-runner status "
        f"--launch {plan.launch_id} -n {plan.namespace}"
    )
    parts = ((objects.deploy), (objects.config_map,), objects.jobs)
    if directory is None:
        return render_yaml(objects.all(), header)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for (name, what), part in zip(RENDER_FILES, parts, strict=True):
            path = directory / name
            if part:
                path.write_text(render_yaml(part, f"{header}\n\n{what}"), encoding="utf-8")
            else:
                path.unlink(missing_ok=True)  # --skip-deploy: no stale base from an earlier render
    except OSError as e:
        raise InvalidInput(f"--output {directory}: {e.strerror or e}") from None
    written = [n for (n, _), part in zip(RENDER_FILES, parts, strict=True) if part]
    return f"wrote {', '.join(written)} to {directory} (launch {plan.launch_id})\n"


def users_of_job(job: Obj) -> list[str]:
    """The users a Job provisions: its user label, or the Indexed Job's WORKSHOP_USERS."""
    labels = job["metadata"].get("labels") or {}
    if labels.get(USER_LABEL):
        return [str(labels[USER_LABEL])]
    for container in job["spec"]["template"]["spec"]["containers"]:
        for entry in container.get("env") or []:
            if entry.get("name") == "WORKSHOP_USERS" and "value" in entry:
                return [u.strip() for u in str(entry["value"]).split(",") if u.strip()]
    return []


def is_indexed(job: Obj) -> bool:
    return bool(job["spec"].get("completionMode") == "Indexed")
