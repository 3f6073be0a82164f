"""Shared by the namespace and istio-namespace steps: make a namespace the configured way.

namespace_mode=namespace applies the Namespace template. namespace_mode=project-request first
creates an OpenShift ProjectRequest (create-only: it runs the cluster's project template, which
may add LimitRanges and quotas) when the namespace does not exist yet and the API is served,
then applies the template's labels and annotations, and drops the RoleBindings the project
template made for the requester (the runner itself): the runner keeps nothing in the user's
project beyond its ClusterRole. Without the API it falls back to a Namespace.
"""

from __future__ import annotations

from runner.context import StepContext
from runner.errors import Forbidden, TemporaryCondition
from runner.result import StepResult
from runner.waits import Obj, Target, Verdict, done, pending

PROJECT_API = ("project.openshift.io/v1", "ProjectRequest")
PROJECT = ("project.openshift.io/v1", "Project")
RBAC = "rbac.authorization.k8s.io/v1"
# The member-roll step's own binding of the runner (mesh-member-rbac.yaml): kept.
MESH_MEMBER_ROLE = "workshop-runner-mesh-member"


def project_active(obj: Obj | None) -> Verdict:
    """A Project is usable once its phase is Active (the template's objects exist by then)."""
    if obj is None:
        return pending("Project not found yet")
    phase = (obj.get("status") or {}).get("phase")
    return done("Active") if phase == "Active" else pending(f"phase={phase or '(none)'}")


def ensure_namespace(ctx: StepContext, template: str) -> StepResult:
    desired = ctx.object(template)
    name = desired["metadata"]["name"]
    made_by_project = False
    project_mode = ctx.params["namespace_mode"] == "project-request"
    if project_mode:
        made_by_project = _request_project(ctx, name, desired)
    # force: on OpenShift, openshift-apiserver makes every project's Namespace with the
    # annotations display-name, description and requester - by the runner's ProjectRequest the
    # requester is the runner itself, not the user the template names; by `oc new-project`
    # (a namespace an admin adopts by label) whoever ran it - so those fields are its manager's
    # and the runner takes them over (docs/design.md, "Apply").
    applied = ctx.kube.apply(desired, force=True)
    deleted_at = applied.obj.get("metadata", {}).get("deletionTimestamp")
    if deleted_at:
        # Writing into it would fail with 403 "being terminated"; exit 5 lets the Job retry.
        raise TemporaryCondition(
            f"Namespace {name} is being deleted (since {deleted_at}); run again once it is gone"
        )
    dropped = []
    if project_mode and ctx.kube.has_api(*PROJECT_API):
        dropped = drop_own_grants(ctx, name)
    note = f"; dropped the runner's own RoleBinding(s) {', '.join(dropped)}" if dropped else ""
    if made_by_project:
        return StepResult.done(ctx.did("create", f"project {name} via ProjectRequest") + note)
    return StepResult(applied.changed or bool(dropped), applied.detail + note)


def drop_own_grants(ctx: StepContext, namespace: str) -> list[str]:
    """OpenShift's project template makes the requester admin of the new project, and the
    requester is the runner: that would let it read the project's Secrets and run pods there.
    Delete every RoleBinding in the namespace whose subjects are all the runner itself (the
    admission guard allows the runner no other RoleBinding delete) - except the member-roll
    step's own workshop-runner-mesh-member binding. The user's admin binding is the rbac
    step's. Also on a re-run, should an earlier run have stopped between."""
    me = ctx.kube.username()
    dropped = []
    items, _ = ctx.kube.list_items(RBAC, "RoleBinding", namespace)
    for binding in items:
        subjects = binding.get("subjects") or []
        ours = (binding.get("roleRef") or {}).get("name") == MESH_MEMBER_ROLE
        if subjects and not ours and all(_is(subject, me) for subject in subjects):
            name = binding["metadata"]["name"]
            if ctx.kube.delete(RBAC, "RoleBinding", name, namespace):
                dropped.append(name)
    return dropped


def _is(subject: Obj, username: str) -> bool:
    """Does this RoleBinding subject name the identity `username`?"""
    if subject.get("kind") == "User":
        return bool(subject.get("name") == username)
    if subject.get("kind") == "ServiceAccount":
        return f"system:serviceaccount:{subject.get('namespace')}:{subject.get('name')}" == username
    return False


def _request_project(ctx: StepContext, name: str, desired: dict[str, object]) -> bool:
    if not ctx.kube.has_api(*PROJECT_API):
        ctx.log.warning("ProjectRequest API not served; creating a Namespace", object=name)
        return False
    if ctx.kube.get("v1", "Namespace", name) is not None:
        return False
    meta = desired.get("metadata")
    annotations = meta.get("annotations", {}) if isinstance(meta, dict) else {}
    ctx.kube.create(
        {
            "apiVersion": PROJECT_API[0],
            "kind": PROJECT_API[1],
            "metadata": {"name": name},
            "displayName": annotations.get("openshift.io/display-name", ""),
            "description": annotations.get("openshift.io/description", ""),
        }
    )
    # AlreadyExists (None) too: a retried create whose first answer was lost lands here.
    # openshift-apiserver answers once the template's objects exist; wait on the Project all
    # the same where it is served, so the LimitRanges are there before limit-ranges looks.
    if ctx.kube.has_api(*PROJECT):
        try:
            so_far = StepResult.done(ctx.did("create", f"project {name} via ProjectRequest"))
            ctx.wait(Target(*PROJECT, None, name), project_active, "Active", so_far=so_far)
        except Forbidden as e:
            ctx.log.warning(
                "cannot watch Projects; not waiting", object=f"Project {name}", error=str(e)
            )
    return True
