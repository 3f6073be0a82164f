"""`launch --retry-failed [--launch ID]`: a new launch of exactly the users of an earlier one
that failed or never finished, with that launch's image, mode, parallelism, templates and
parameters.

Everything is read back from the cluster: the users and their outcomes from the launch's Jobs
and Pods (one list each, as `status --no-wait`), the image, mode and parallelism from its Jobs,
the templates and parameters from its ConfigMap `wr-<launch>` (which holds every template the
pods used, shipped ones included). They are written to a temporary directory and handed to the
ordinary launch path, so a retry is checked, applied, preflighted and followed like any launch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runner.errors import InvalidInput
from runner.kube import Kube
from runner.launcher.follow import snapshot
from runner.launcher.progress import Fleet, job_finished
from runner.launcher.render import (
    APP,
    JOB_PREFIX,
    LAUNCH_LABEL,
    NAME_LABEL,
    PARAMS_KEY,
    is_indexed,
    users_of_job,
)
from runner.waits import Obj

PARAMS_FILE = "params.yaml"  # JSON is YAML: the runner's params loader reads params.json as is


@dataclass(frozen=True)
class Launch:
    """One launch as its Jobs record it."""

    launch_id: str
    namespace: str
    jobs: tuple[Obj, ...]

    @property
    def users(self) -> list[str]:
        return [u for j in sorted(self.jobs, key=created) for u in users_of_job(j)]

    @property
    def indexed(self) -> bool:
        return any(is_indexed(j) for j in self.jobs)

    @property
    def image(self) -> str:
        newest = max(self.jobs, key=created)
        return str(newest["spec"]["template"]["spec"]["containers"][0]["image"])


@dataclass(frozen=True)
class Retry:
    of: Launch
    users: tuple[str, ...]
    parallelism: int | None
    files: dict[str, str]


def find_launch(kube: Kube, namespace: str, launch_id: str | None) -> Launch:
    """The Jobs of `launch_id`, or of the newest launch in the namespace."""
    selector = f"{LAUNCH_LABEL}={launch_id}" if launch_id else f"{NAME_LABEL}={APP}"
    jobs, _ = kube.list_items("batch/v1", "Job", namespace, label_selector=selector)
    if not jobs:
        what = f"launch {launch_id}" if launch_id else "any launch"
        raise InvalidInput(
            f"no Jobs of {what} in namespace {namespace} (finished Jobs are removed after "
            "their ttlSecondsAfterFinished)"
        )
    newest = max(jobs, key=created)
    found = launch_id or str(newest["metadata"]["labels"][LAUNCH_LABEL])
    mine = tuple(j for j in jobs if j["metadata"]["labels"].get(LAUNCH_LABEL) == found)
    return Launch(found, namespace, mine)


def plan_retry(kube: Kube, namespace: str, launch_id: str | None) -> Retry:
    """Who to run again and with what; refuses (exit 2) while the launch is still running."""
    launch = find_launch(kube, namespace, launch_id)
    running = [j for j in launch.jobs if not job_finished(j)]
    if running:
        raise InvalidInput(
            f"launch {launch.launch_id} is still running ({len(running)} Job(s) not finished); "
            f"follow it with `workshop-runner status --launch {launch.launch_id} -n "
            f"{namespace}` and retry once it has ended"
        )
    fleet = Fleet(launch.users, indexed=launch.indexed)
    snapshot(kube, fleet, namespace, f"{LAUNCH_LABEL}={launch.launch_id}")
    users = tuple(v.user for v in fleet.views() if v.state != "succeeded")
    parallelism = None
    if launch.indexed:
        parallelism = max(int(j["spec"].get("parallelism") or 1) for j in launch.jobs)
    files: dict[str, str] = {}
    if users:
        name = f"{JOB_PREFIX}{launch.launch_id}"
        config_map = kube.get("v1", "ConfigMap", name, namespace)
        if config_map is None:
            raise InvalidInput(
                f"launch {launch.launch_id}: its ConfigMap {namespace}/{name} (templates and "
                "parameters) is gone; launch those users again with --users"
            )
        files = dict(config_map.get("data") or {})
    return Retry(launch, users, parallelism, files)


def write_files(files: dict[str, str], directory: Path) -> tuple[Path, Path | None]:
    """The launch's templates into `directory/templates`, its parameters beside them."""
    templates = directory / "templates"
    templates.mkdir(parents=True)
    params: Path | None = None
    for name, text in files.items():
        if name == PARAMS_KEY:
            params = directory / PARAMS_FILE
            params.write_text(text, encoding="utf-8")
        else:
            (templates / Path(name).name).write_text(text, encoding="utf-8")
    return templates, params


def created(job: Obj) -> str:
    return str(job["metadata"].get("creationTimestamp", ""))
