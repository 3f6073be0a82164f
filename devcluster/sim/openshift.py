"""The OpenShift flavour: ProjectRequest -> Namespace, as the cluster's project template does.

Difference from OpenShift, on purpose and documented: there, ProjectRequest is a virtual,
create-only resource of openshift-apiserver (nothing is stored; the response is the Project).
Here it is a CRD, so the object is stored for a moment: the simulator materialises it - the
Namespace (annotations openshift.io/display-name, description, requester), RoleBinding `admin`
for the requester, LimitRange `<project>-core-resource-limits`, a Project object - and then
deletes the ProjectRequest, so nothing lingers. The requester is stamped on the request by the
simulator's mutating webhook from the admission userInfo (who really sent the create), and a
validating webhook refuses a request for an existing namespace with 409 AlreadyExists, as
`oc new-project` fails on a re-run.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from devcluster.sim.engine import Action, Key, Transition
from devcluster.sim.informer import Store
from devcluster.sim.knobs import Knobs
from devcluster.sim.kube import (
    LIMITRANGES,
    NAMESPACES,
    PROJECTREQUESTS,
    PROJECTS,
    ROLEBINDINGS,
    Resource,
)
from devcluster.sim.objects import Obj, annotations_of, deleting, name_of

REQUESTER = "openshift.io/requester"
DISPLAY_NAME = "openshift.io/display-name"
DESCRIPTION = "openshift.io/description"
FORBIDDEN_PREFIXES = ("openshift-", "kube-")


def limit_range(project: str) -> Obj:
    return {
        "metadata": {"name": f"{project}-core-resource-limits", "namespace": project},
        "spec": {
            "limits": [
                {
                    "type": "Container",
                    "default": {"cpu": "500m", "memory": "1536Mi"},
                    "defaultRequest": {"cpu": "50m", "memory": "256Mi"},
                    "max": {"memory": "6Gi"},
                    "min": {"memory": "10Mi"},
                },
                {"type": "Pod", "max": {"memory": "12Gi"}, "min": {"memory": "6Mi"}},
            ]
        },
    }


def admin_binding(project: str, requester: str) -> Obj:
    return {
        "metadata": {"name": "admin", "namespace": project},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "admin",
        },
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": requester}],
    }


def project_transitions(request: Obj, with_projects: bool) -> list[Transition]:
    name = name_of(request)
    requester = annotations_of(request).get(REQUESTER, "")
    notes = {
        DISPLAY_NAME: str(request.get("displayName") or ""),
        DESCRIPTION: str(request.get("description") or ""),
        REQUESTER: requester,
    }
    ns_body = {"metadata": {"name": name, "annotations": notes}}
    acts = [Action("create", NAMESPACES, None, body=ns_body, tolerate=(409,))]
    if requester:
        acts.append(
            Action(
                "create", ROLEBINDINGS, name, body=admin_binding(name, requester), tolerate=(409,)
            )
        )
    acts.append(Action("create", LIMITRANGES, name, body=limit_range(name), tolerate=(409,)))
    if with_projects:
        project = {
            "metadata": {"name": name, "annotations": notes},
            "spec": {"finalizers": ["kubernetes"]},
        }
        acts.append(Action("create", PROJECTS, None, body=project, tolerate=(409,)))
        acts.append(Action("status", PROJECTS, None, name, {"phase": "Active"}, tolerate=(404,)))
    acts.append(Action("delete", PROJECTREQUESTS, None, name))
    return [Transition(name, "ProjectRequest", name, name, "materialize", tuple(acts))]


def admission_refusal(name: str, namespace_exists: bool) -> tuple[int, str, str] | None:
    """(code, reason, message) when openshift-apiserver would refuse this ProjectRequest."""
    if any(name.startswith(p) for p in FORBIDDEN_PREFIXES):
        prefix = next(p for p in FORBIDDEN_PREFIXES if name.startswith(p))
        return 403, "Forbidden", f'cannot request a project starting with "{prefix}"'
    if namespace_exists:
        return 409, "AlreadyExists", f'project.project.openshift.io "{name}" already exists'
    return None


class ProjectRequestController:
    name = "projectrequest"

    def __init__(self, with_projects: bool) -> None:
        self.with_projects = with_projects

    def watches(self) -> Iterable[Resource]:
        return (PROJECTREQUESTS,)

    def keys_for(self, res: Resource, event: str, obj: Obj) -> Iterable[Key]:
        return [] if event == "DELETED" else [name_of(obj)]

    def transitions(self, key: Any, store: Store, knobs: Knobs) -> list[Transition]:
        request = store.get(PROJECTREQUESTS, None, str(key))
        if request is None or deleting(request):
            return []
        return project_transitions(request, self.with_projects)
