"""Put a launch into the cluster: deploy base, per-launch ConfigMap, Jobs.

Everything goes through the runner's cluster layer (`Kube.apply`: observe, then server-side
apply with field manager `workshop-runner` only when the live object differs), so launching
again changes nothing that is already as desired. Jobs are immutable records of one launch:
a new launch id makes new Jobs; the same launch id (`--launch-id`) finds them unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

from runner.errors import InvalidInput
from runner.kube import Kube
from runner.launcher.progress import job_finished
from runner.launcher.render import (
    APP,
    LAUNCH_LABEL,
    NAME_LABEL,
    DeployBase,
    LaunchObjects,
    LaunchPlan,
    owned_by,
    users_of_job,
)
from runner.waits import Obj, Target


@dataclass(frozen=True)
class Launched:
    jobs: tuple[Obj, ...]
    changed: tuple[str, ...]  # what was created or updated ("Job workshop-runner/wr-…")
    unchanged: int


class Applier:
    """Applies objects through `Kube.apply`, remembering what changed (for the launch line)."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.changed: list[str] = []
        self.unchanged = 0

    def __call__(self, obj: Obj, *, force: bool = False) -> Obj:
        result = self.kube.apply(obj, force=force)
        if result.changed:
            self.changed.append(Target.of(obj).describe())
        else:
            self.unchanged += 1
        return result.obj


def apply_deploy(
    applier: Applier, objects: LaunchObjects, base: DeployBase, plan: LaunchPlan
) -> None:
    """The deploy base (or, with --skip-deploy, only the check that it is there)."""
    if not objects.deploy:
        _require_service_account(applier.kube, base, plan.namespace)
    # force: the README has the admin apply the same base first (`kubectl apply --server-side
    # -k manifests`, field manager "kubectl"); a newer image brings a newer base, whose changed
    # fields the launcher takes over from that earlier apply.
    for obj in objects.deploy:
        applier(obj, force=True)


def apply_launch(applier: Applier, objects: LaunchObjects, plan: LaunchPlan) -> Launched:
    """The per-launch ConfigMap and the Jobs (after the overlap check)."""
    check_no_overlap(applier.kube, plan)
    applier(objects.config_map)
    jobs = [applier(job) for job in objects.jobs]
    # Owned by the Jobs: gone with them (ttlSecondsAfterFinished), nothing left to clean up.
    applier(owned_by(objects.config_map, jobs))
    return Launched(tuple(jobs), tuple(applier.changed), applier.unchanged)


def check_no_overlap(kube: Kube, plan: LaunchPlan) -> None:
    """Refuse to start a second, concurrent provisioning of a user another launch is still
    running (both would be correct, being idempotent, but would race and double the load)."""
    items, _ = kube.list_items(
        "batch/v1", "Job", plan.namespace, label_selector=f"{NAME_LABEL}={APP}"
    )
    wanted = set(plan.users)
    busy: dict[str, list[str]] = {}
    for job in items:
        launch_id = (job["metadata"].get("labels") or {}).get(LAUNCH_LABEL, "")
        if launch_id == plan.launch_id or job_finished(job):
            continue
        overlap = sorted(wanted.intersection(users_of_job(job)))
        if overlap:
            busy.setdefault(launch_id, []).extend(overlap)
    if busy:
        launch_id, users = next(iter(busy.items()))
        shown = ", ".join(users[:5]) + (f" (+{len(users) - 5})" if len(users) > 5 else "")
        raise InvalidInput(
            f"launch {launch_id} is still provisioning {shown}; follow it with "
            f"`workshop-runner status --launch {launch_id} --namespace {plan.namespace}` "
            "and launch again when it has finished"
        )


def _require_service_account(kube: Kube, base: DeployBase, namespace: str) -> None:
    name = base.per_user_job["spec"]["template"]["spec"].get("serviceAccountName", "default")
    if kube.get("v1", "ServiceAccount", name, namespace) is None:
        raise InvalidInput(
            f"--skip-deploy: ServiceAccount {namespace}/{name} does not exist; apply the "
            "deploy base first (kubectl apply --server-side -k manifests)"
        )
