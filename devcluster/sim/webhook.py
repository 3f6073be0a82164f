"""Real admission webhooks on loopback: the Maistra SMCP, SMMR and SMM validators, the
ProjectRequest hooks.

The API server calls them over TLS (our own CA, its caBundle in the webhook configurations,
failurePolicy Fail), exactly as it calls the real ones:
- smcp.validation.maistra.io (CREATE/UPDATE ServiceMeshControlPlane): during a refusal window
  (the first seconds after start, or a per-user knob) it fails the request the way a freshly
  installed mesh operator does - mode `deny` answers 500 InternalError with the message the API
  server gives while the operator's webhook service has no endpoints; mode `unavailable` drops
  the connection so the API server itself reports "failed calling webhook". Outside a window it
  enforces "only one service mesh may be installed per project/namespace", then spec.version
  against the operator release (knob mesh_operator; maistra.py RELEASES): unknown to it, 400
  "invalid Version specified; supported versions are: [...]"; known but below its minimum,
  400 "Only '[...]' versions are supported".
- smmr.validation.maistra.io (CREATE/UPDATE ServiceMeshMemberRoll), as maistra 2.4's
  webhooks/validation/memberroll.go: the name must be `default`, not in the operator's namespace,
  members and memberSelectors not combined, members valid namespace names without duplicates, a
  `*` alone, no member claimed by another roll, the mesh namespace not a member. Then a real
  SubjectAccessReview for the requesting user (name, uid, groups, extra), verb `update`,
  resource `pods`: cluster-wide first; if that is refused, a wildcard or a memberSelector is
  403, otherwise every namespace newly added to spec.members is reviewed and the ones refused
  are named in 403 "user '<name>' does not have permission to access namespace(s): [a b]".
- smm.validation.maistra.io (CREATE/UPDATE ServiceMeshMember), as maistra 2.4's
  webhooks/validation/member.go: a member being deleted passes; the name must be `default`, not
  in the operator's namespace; spec.controlPlaneRef may not change on UPDATE; then a real
  SubjectAccessReview: may the requesting user `use` (maistra.io servicemeshcontrolplanes) the
  control plane it names - 403 "user '<name>' does not have permission to use
  ServiceMeshControlPlane <ns>/<name>" if not.
- smmr.mutation.maistra.io (CREATE/UPDATE ServiceMeshMemberRoll), as 2.4's
  webhooks/mutation/memberroll.go: the roll's own namespace is removed from spec.members
  (before the validator, which would refuse it, runs).
- ProjectRequest: a mutating hook stamps openshift.io/requester from the request's userInfo; a
  validating hook refuses existing namespaces (409 AlreadyExists) and openshift-/kube- names.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from devcluster.sim import openshift
from devcluster.sim.informer import Store
from devcluster.sim.knobs import Knobs
from devcluster.sim.kube import (
    MUTATING_WEBHOOKS,
    NAMESPACES,
    SMCPS,
    SMMRS,
    SMMS,
    SUBJECTACCESSREVIEWS,
    VALIDATING_WEBHOOKS,
    Kube,
    KubeError,
    Resource,
)
from devcluster.sim.maistra import version_refusal
from devcluster.sim.objects import name_of, ns_of

log = logging.getLogger(__name__)

CONFIG_NAME = "devcluster-sim"
SMCP_WEBHOOK = "smcp.validation.maistra.io"
NOT_READY_MESSAGE = (
    'failed to call webhook: Post "https://maistra-admission-controller.openshift-operators.svc'
    ':443/validate-smcp?timeout=10s": no endpoints available for service '
    '"maistra-admission-controller"'
)
ONE_MESH_MESSAGE = "only one service mesh may be installed per project/namespace"
SMMR_WEBHOOK = "smmr.validation.maistra.io"
SMM_WEBHOOK = "smm.validation.maistra.io"
SMMR_MUTATION = "smmr.mutation.maistra.io"
OPERATOR_NAMESPACE = "openshift-operators"
MEMBER_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# (userInfo of the admission request, the review's resourceAttributes) -> allowed
AccessReview = Callable[[dict[str, Any], dict[str, str]], bool]


def make_certs(directory: Path) -> tuple[bytes, Path, Path]:
    """A throwaway CA and a serving certificate for 127.0.0.1: (CA PEM, cert file, key file)."""
    from cryptography.hazmat.primitives import serialization

    from devcluster import pki

    directory.mkdir(parents=True, exist_ok=True)
    ca = pki.make_ca(directory, "devcluster-sim-webhook-ca")
    ca_pem = ca[0].public_bytes(serialization.Encoding.PEM)
    cert_file, key_file = directory / "webhook.crt", directory / "webhook.key"
    pki.make_leaf(
        ca, cert_file, key_file, "127.0.0.1", dns=("localhost",), ips=("127.0.0.1",), server=True
    )
    cert_file.write_bytes(cert_file.read_bytes() + ca_pem)
    return ca_pem, cert_file, key_file


SMMR_NAME_MESSAGE = "ServiceMeshMemberRoll must be named 'default'"
SMMR_OPERATOR_NS_MESSAGE = (
    "ServiceMeshMemberRoll may not be created in the same project/namespace as the operator"
)
SMMR_BOTH_MESSAGE = "combining .spec.members and .spec.memberSelectors is not allowed"
SMMR_CLAIMED_MESSAGE = "one or more members are already defined in another ServiceMeshMemberRoll"
SMMR_MESH_NS_MESSAGE = "mesh project/namespace cannot be listed as a member"


SMM_NAME_MESSAGE = 'the ServiceMeshMember resource must be named "default"'
SMM_OPERATOR_NS_MESSAGE = "namespace where operator is installed cannot be added to any mesh"
SMM_REF_MUTATION_MESSAGE = "mutation of .spec.controlPlaneRef isn't allowed"


def smm_forbidden_message(username: str, namespace: str, name: str) -> str:
    """The member validator's 403."""
    return (
        f"user '{username}' does not have permission to use ServiceMeshControlPlane "
        f"{namespace}/{name}"
    )


def smmr_forbidden_message(username: str, namespaces: list[str]) -> str:
    """The member-roll validator's 403 (Go prints a []string as [a b])."""
    listed = " ".join(namespaces)
    return f"user '{username}' does not have permission to access namespace(s): [{listed}]"


def smmr_cluster_wide_message(username: str) -> str:
    return (
        "only users that are allowed to update pods at the cluster scope are allowed to use "
        f"wildcards or member selectors; user {username} does not have that permission"
    )


def _member_list_refusal(members: list[str]) -> str | None:
    seen: set[str] = set()
    for member in members:
        if member != "*" and not MEMBER_NAME.match(member):
            return (
                f".spec.members contains invalid value '{member}'. Must be a valid namespace name."
            )
        if member in seen:
            return f"duplicate namespace in .spec.members: {member}"
        seen.add(member)
    if "*" in members and len(members) > 1:
        return "when .spec.members contains an asterisk ('*'), it must contain no other entries"
    return None


def update_pods(namespace: str) -> dict[str, str]:
    """What the member-roll validator asks: update pods in `namespace` ("" = everywhere)."""
    return {"verb": "update", "group": "", "resource": "pods", "namespace": namespace}


def use_control_plane(namespace: str, name: str) -> dict[str, str]:
    """What the member validator asks: `use` on the ServiceMeshControlPlane a member names."""
    return {
        "verb": "use",
        "group": "maistra.io",
        "resource": "servicemeshcontrolplanes",
        "name": name,
        "namespace": namespace,
    }


def subject_access_review(user: dict[str, Any], attributes: dict[str, str]) -> dict[str, Any]:
    """The SubjectAccessReview a Maistra validator sends for the requesting user."""
    spec: dict[str, Any] = {
        "user": user.get("username", ""),
        "uid": user.get("uid", ""),
        "groups": list(user.get("groups") or []),
        "resourceAttributes": dict(attributes),
    }
    if user.get("extra"):
        spec["extra"] = user["extra"]
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}


def kube_access_review(kube: Kube) -> AccessReview:
    """Reviews against the API server's own authorizer (RBAC), as the operator's client does."""

    def review(user: dict[str, Any], attributes: dict[str, str]) -> bool:
        answer = kube.create(SUBJECTACCESSREVIEWS, None, subject_access_review(user, attributes))
        status = answer.get("status") or {}
        return bool(status.get("allowed")) and not status.get("denied")

    return review


def _response(
    uid: str, allowed: bool, code: int = 200, reason: str = "", message: str = ""
) -> dict[str, Any]:
    resp: dict[str, Any] = {"uid": uid, "allowed": allowed}
    if not allowed:
        resp["status"] = {"code": code, "reason": reason, "message": message, "status": "Failure"}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": resp}


class Admission:
    """The decisions, separate from HTTP so they can be tested as plain functions."""

    def __init__(
        self,
        store: Store,
        knobs: Callable[[], Knobs],
        live_smcps: Callable[[str], list[dict[str, Any]]] | None = None,
        review_access: AccessReview | None = None,
    ) -> None:
        self.store = store
        self.knobs = knobs
        # The SubjectAccessReviews the validators make (None: everyone is refused).
        self.review_access = review_access or (lambda _user, _attributes: False)
        # The one-mesh rule reads the API (a quorum list) when it can: the informer may not have
        # seen an SMCP created a moment ago, and a create right after it must still be refused.
        self.live_smcps = live_smcps

    def _smcps(self, namespace: str) -> list[dict[str, Any]]:
        if self.live_smcps is not None:
            return self.live_smcps(namespace)
        return self.store.list(SMCPS, namespace)

    def smcp_refusing(self, namespace: str) -> bool:
        return self.knobs().refusing(namespace)

    def validate_smcp(self, request: dict[str, Any]) -> dict[str, Any]:
        uid = request.get("uid", "")
        ns = request.get("namespace", "")
        if self.smcp_refusing(ns):
            return _response(uid, False, 500, "InternalError", NOT_READY_MESSAGE)
        obj = request.get("object") or {}
        name = (obj.get("metadata") or {}).get("name", "")
        # As upstream: the one-mesh rule first (any operation), then a mesh being deleted
        # passes (its finalizer's removal), then the version.
        others = [s for s in self._smcps(ns) if s["metadata"]["name"] != name]
        if others:
            return _response(uid, False, 400, "BadRequest", ONE_MESH_MESSAGE)
        if (obj.get("metadata") or {}).get("deletionTimestamp"):
            return _response(uid, True)
        version = str((obj.get("spec") or {}).get("version") or "")
        refusal = version_refusal(self.knobs().mesh_operator, version)
        if refusal:
            return _response(uid, False, 400, "BadRequest", refusal)
        return _response(uid, True)

    def validate_smmr(self, request: dict[str, Any]) -> dict[str, Any]:
        uid = request.get("uid", "")
        ns = request.get("namespace", "")
        obj = request.get("object") or {}
        meta, smmr_spec = obj.get("metadata") or {}, obj.get("spec") or {}
        if meta.get("deletionTimestamp"):
            return _response(uid, True)
        if meta.get("name") != "default":
            return _response(uid, False, 400, "BadRequest", SMMR_NAME_MESSAGE)
        if ns == OPERATOR_NAMESPACE:
            return _response(uid, False, 400, "BadRequest", SMMR_OPERATOR_NS_MESSAGE)
        members = list(smmr_spec.get("members") or [])
        selectors = list(smmr_spec.get("memberSelectors") or [])
        if members and selectors:
            return _response(uid, False, 400, "BadRequest", SMMR_BOTH_MESSAGE)
        refusal = _member_list_refusal(members)
        if refusal:
            return _response(uid, False, 400, "BadRequest", refusal)
        elsewhere = {
            m
            for other in self.store.list(SMMRS)
            if (ns_of(other), name_of(other)) != (ns, "default")
            for m in (other.get("spec") or {}).get("members") or []
        }
        for member in members:
            if (member == "*" and elsewhere) or member in elsewhere or "*" in elsewhere:
                return _response(uid, False, 400, "BadRequest", SMMR_CLAIMED_MESSAGE)
            if member == ns:
                return _response(uid, False, 400, "BadRequest", SMMR_MESH_NS_MESSAGE)
        user = request.get("userInfo") or {}
        username = user.get("username", "")
        old = ((request.get("oldObject") or {}).get("spec") or {}).get("members") or []
        added = sorted(set(members) - (set(old) if request.get("operation") == "UPDATE" else set()))
        try:
            if self.review_access(user, update_pods("")):
                return _response(uid, True)
            if "*" in members or selectors:
                message = smmr_cluster_wide_message(username)
                return _response(uid, False, 403, "Forbidden", message)
            refused = [m for m in added if not self.review_access(user, update_pods(m))]
        except KubeError as exc:  # the operator answers 500 when its SAR call fails
            return _response(uid, False, 500, "InternalError", str(exc))
        if refused:
            message = smmr_forbidden_message(username, refused)
            return _response(uid, False, 403, "Forbidden", message)
        return _response(uid, True)

    def mutate_smmr(self, request: dict[str, Any]) -> dict[str, Any]:
        """webhooks/mutation/memberroll.go: the roll's own (mesh) namespace is dropped from
        spec.members - so the validator's "mesh project/namespace cannot be listed as a
        member" never sees it on a real install, where this mutator runs first."""
        uid = request.get("uid", "")
        obj = request.get("object") or {}
        if (obj.get("metadata") or {}).get("deletionTimestamp"):
            return _response(uid, True)
        members = list((obj.get("spec") or {}).get("members") or [])
        kept = [m for m in members if m != request.get("namespace", "")]
        review = _response(uid, True)
        if kept != members:
            patch = [{"op": "replace", "path": "/spec/members", "value": kept}]
            review["response"]["patchType"] = "JSONPatch"
            review["response"]["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
        return review

    def validate_smm(self, request: dict[str, Any]) -> dict[str, Any]:
        """webhooks/validation/member.go: name `default`, not in the operator's namespace,
        controlPlaneRef unchanged on UPDATE, then a SubjectAccessReview: may the requester
        `use` the ServiceMeshControlPlane it names."""
        uid = request.get("uid", "")
        obj = request.get("object") or {}
        meta = obj.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            return _response(uid, True)
        if meta.get("name") != "default":
            return _response(uid, False, 400, "BadRequest", SMM_NAME_MESSAGE)
        if request.get("namespace", "") == OPERATOR_NAMESPACE:
            return _response(uid, False, 400, "BadRequest", SMM_OPERATOR_NS_MESSAGE)
        ref = (obj.get("spec") or {}).get("controlPlaneRef") or {}
        ref_ns, ref_name = str(ref.get("namespace", "")), str(ref.get("name", ""))
        if request.get("operation") == "UPDATE":
            old = ((request.get("oldObject") or {}).get("spec") or {}).get("controlPlaneRef") or {}
            if (old.get("name", ""), old.get("namespace", "")) != (ref_name, ref_ns):
                return _response(uid, False, 400, "BadRequest", SMM_REF_MUTATION_MESSAGE)
        user = request.get("userInfo") or {}
        try:
            allowed = self.review_access(user, use_control_plane(ref_ns, ref_name))
        except KubeError as exc:
            return _response(uid, False, 500, "InternalError", str(exc))
        if not allowed:
            message = smm_forbidden_message(user.get("username", ""), ref_ns, ref_name)
            return _response(uid, False, 403, "Forbidden", message)
        return _response(uid, True)

    def validate_project_request(self, request: dict[str, Any]) -> dict[str, Any]:
        uid = request.get("uid", "")
        name = request.get("name") or ((request.get("object") or {}).get("metadata") or {}).get(
            "name", ""
        )
        exists = self.store.get(NAMESPACES, None, name) is not None
        refusal = openshift.admission_refusal(name, exists)
        if refusal:
            return _response(uid, False, *refusal)
        return _response(uid, True)

    def mutate_project_request(self, request: dict[str, Any]) -> dict[str, Any]:
        uid = request.get("uid", "")
        user = (request.get("userInfo") or {}).get("username", "")
        meta = (request.get("object") or {}).get("metadata") or {}
        if meta.get("annotations") is None:
            patch = [
                {"op": "add", "path": "/metadata/annotations", "value": {openshift.REQUESTER: user}}
            ]
        else:
            key = openshift.REQUESTER.replace("~", "~0").replace("/", "~1")
            patch = [{"op": "add", "path": f"/metadata/annotations/{key}", "value": user}]
        review = _response(uid, True)
        review["response"]["patchType"] = "JSONPatch"
        review["response"]["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
        return review


class WebhookServer:
    """HTTPS on 127.0.0.1:<free port>; `register` points the API server at it."""

    PATHS = (
        "/validate-smcp",
        "/validate-smmr",
        "/validate-smm",
        "/mutate-smmr",
        "/validate-projectrequest",
        "/mutate-projectrequest",
    )

    def __init__(self, admission: Admission, cert_dir: Path) -> None:
        self.admission = admission
        self.ca_pem, cert, key = make_certs(cert_dir)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert), str(key))
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.httpd.daemon_threads = True
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = int(self.httpd.server_address[1])
        self.calls = 0
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="webhook", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("webhook: " + format, *args)

            def do_POST(self) -> None:
                server.calls += 1
                length = int(self.headers.get("Content-Length") or 0)
                review = json.loads(self.rfile.read(length) or b"{}")
                request = review.get("request") or {}
                adm = server.admission
                path = self.path.split("?", 1)[0]
                if path == "/validate-smcp":
                    ns = request.get("namespace", "")
                    if adm.smcp_refusing(ns) and adm.knobs().webhook_mode == "unavailable":
                        # No answer at all: the API server reports the failed call itself.
                        self.close_connection = True
                        return
                    answer = adm.validate_smcp(request)
                elif path == "/validate-smmr":
                    answer = adm.validate_smmr(request)
                elif path == "/validate-smm":
                    answer = adm.validate_smm(request)
                elif path == "/mutate-smmr":
                    answer = adm.mutate_smmr(request)
                elif path == "/validate-projectrequest":
                    answer = adm.validate_project_request(request)
                elif path == "/mutate-projectrequest":
                    answer = adm.mutate_project_request(request)
                else:
                    self.send_error(404)
                    return
                body = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler

    def _hook(self, name: str, path: str, res: Resource, operations: list[str]) -> dict[str, Any]:
        return {
            "name": name,
            "clientConfig": {
                "url": f"https://127.0.0.1:{self.port}{path}",
                "caBundle": base64.b64encode(self.ca_pem).decode(),
            },
            "rules": [
                {
                    "apiGroups": [res.group],
                    "apiVersions": ["*"],
                    "operations": operations,
                    "resources": [res.plural],
                    "scope": "Namespaced" if res.namespaced else "Cluster",
                }
            ],
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 5,
        }

    def configurations(self, with_projects: bool) -> tuple[dict[str, Any], dict[str, Any]]:
        from devcluster.sim.kube import PROJECTREQUESTS

        validating = [
            self._hook(SMCP_WEBHOOK, "/validate-smcp", SMCPS, ["CREATE", "UPDATE"]),
            self._hook(SMMR_WEBHOOK, "/validate-smmr", SMMRS, ["CREATE", "UPDATE"]),
            self._hook(SMM_WEBHOOK, "/validate-smm", SMMS, ["CREATE", "UPDATE"]),
        ]
        mutating = [self._hook(SMMR_MUTATION, "/mutate-smmr", SMMRS, ["CREATE", "UPDATE"])]
        if with_projects:
            validating.append(
                self._hook(
                    "projectrequest.validation.devcluster.io",
                    "/validate-projectrequest",
                    PROJECTREQUESTS,
                    ["CREATE"],
                )
            )
            mutating.append(
                self._hook(
                    "projectrequest.mutation.devcluster.io",
                    "/mutate-projectrequest",
                    PROJECTREQUESTS,
                    ["CREATE"],
                )
            )
        meta = {"name": CONFIG_NAME, "labels": {"app.kubernetes.io/managed-by": "devcluster-sim"}}
        return (
            {"metadata": meta, "webhooks": validating},
            {"metadata": dict(meta), "webhooks": mutating},
        )

    def register(self, kube: Kube, with_smcp: bool, with_projects: bool) -> None:
        validating, mutating = self.configurations(with_projects)
        if not with_smcp:
            validating["webhooks"] = validating["webhooks"][3:]
            mutating["webhooks"] = mutating["webhooks"][1:]
        for res, body in ((VALIDATING_WEBHOOKS, validating), (MUTATING_WEBHOOKS, mutating)):
            kube.delete(res, None, CONFIG_NAME)
            if body["webhooks"]:
                kube.create(res, None, body)

    def unregister(self, kube: Kube) -> None:
        for res in (VALIDATING_WEBHOOKS, MUTATING_WEBHOOKS):
            try:
                kube.delete(res, None, CONFIG_NAME)
            except KubeError as exc:
                log.warning("removing webhook configuration: %s", exc)
