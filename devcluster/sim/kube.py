"""A thin JSON client over the `kubernetes` package's authenticated connection pool.

The simulators handle hundreds of objects as plain dicts and keep long watch streams open;
the generated models and their deserialisation would cost more CPU than the simulation itself.
So the kubeconfig is loaded by `kubernetes.config`, the pool is `kubernetes.client`'s urllib3
pool (client certificate or token, CA), and requests/responses are raw JSON.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlparse

import urllib3

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
RETRY_AFTER_ATTEMPTS = 10  # client-go's maxRetries for a 429 with Retry-After
RETRY_AFTER_CAP = 2.0  # seconds; the API server asks for 1


def _retry_after(resp: urllib3.BaseHTTPResponse) -> float | None:
    """The wait a 429 asks for, or None when the answer is not one to retry."""
    if resp.status != 429:
        return None
    try:
        seconds = float(resp.headers.get("Retry-After") or "")
    except ValueError:
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_CAP)


Obj = dict[str, Any]


@dataclass(frozen=True)
class Resource:
    """One API resource: where it lives and how it is called."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None, sub: str = "") -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
        if sub:
            base += f"/{sub}"
        return base


class KubeError(Exception):
    """A non-2xx answer from the API server, with its Status reason and message."""

    def __init__(self, status: int, reason: str, message: str, what: str = "") -> None:
        super().__init__(f"{what}: {status} {reason}: {message}" if what else message)
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409


class Kube:
    """JSON requests against one API server as the kubeconfig's identity."""

    def __init__(self, kubeconfig: Path | str, pool_size: int = 64) -> None:
        from kubernetes import client, config

        cfg = client.Configuration()
        config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
        cfg.connection_pool_maxsize = pool_size
        self._api = client.ApiClient(cfg)
        self.config = cfg
        self.host = cfg.host.rstrip("/")
        parsed = urlparse(self.host)
        self.server_host = parsed.hostname or "127.0.0.1"
        self.server_port = parsed.port or 443
        self._pool: urllib3.PoolManager = self._api.rest_client.pool_manager
        self._headers = {"Accept": "application/json", "User-Agent": "devcluster-sim"}
        token = (cfg.api_key or {}).get("authorization")
        if token:
            self._headers["Authorization"] = token

    @property
    def ca_file(self) -> str | None:
        ca: str | None = self.config.ssl_ca_cert
        return ca

    def close(self) -> None:
        self._api.close()

    # -- plumbing ------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: dict[str, Any] | None = None,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> Any:
        url = self.host + path + (("?" + urlencode(query)) if query else "")
        headers = dict(self._headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        for attempt in range(RETRY_AFTER_ATTEMPTS + 1):
            resp = self._pool.request(
                method,
                url,
                body=data,
                headers=headers,
                timeout=urllib3.Timeout(connect=5.0, read=timeout),
                retries=False,
            )
            wait = _retry_after(resp)
            if wait is None or attempt == RETRY_AFTER_ATTEMPTS:
                break
            # As client-go does: a 429 with Retry-After (the watch cache of a fresh or reset
            # resource is "(re)initializing", priority-and-fairness) is retried after the wait.
            time.sleep(wait)
        text = resp.data
        if resp.status >= 300:
            raise _error(resp.status, text, f"{method} {path}")
        return json.loads(text) if text else None

    def stream(self, path: str, query: dict[str, Any], timeout: float) -> Iterator[Obj]:
        """Yield the JSON lines of a watch; returns when the server closes the stream."""
        url = self.host + path + "?" + urlencode(query)
        resp = self._pool.request(
            "GET",
            url,
            headers=self._headers,
            timeout=urllib3.Timeout(connect=5.0, read=timeout),
            retries=False,
            preload_content=False,
        )
        try:
            if resp.status >= 300:
                raise _error(resp.status, resp.read(), f"WATCH {path}")
            buf = b""
            for chunk in resp.stream(65536):
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)
        finally:
            resp.release_conn()

    # -- verbs ---------------------------------------------------------------------------
    def get(self, res: Resource, namespace: str | None, name: str) -> Obj:
        obj: Obj = self.request("GET", res.path(namespace, name))
        return obj

    def get_or_none(self, res: Resource, namespace: str | None, name: str) -> Obj | None:
        try:
            return self.get(res, namespace, name)
        except KubeError as exc:
            if exc.not_found:
                return None
            raise

    def list(
        self, res: Resource, namespace: str | None = None, **query: Any
    ) -> tuple[list[Obj], str]:
        """All items (paginated) and the list's resourceVersion."""
        items: list[Obj] = []
        params = {"limit": 500, **query}
        while True:
            page = self.request("GET", res.path(namespace), query=params)
            items.extend(page.get("items") or [])
            cont = page.get("metadata", {}).get("continue")
            if not cont:
                return items, page["metadata"]["resourceVersion"]
            params["continue"] = cont

    def create(self, res: Resource, namespace: str | None, body: Obj, **query: Any) -> Obj:
        body.setdefault("apiVersion", res.api_version)
        body.setdefault("kind", res.kind)
        obj: Obj = self.request("POST", res.path(namespace), body, query=query or None)
        return obj

    def patch(
        self,
        res: Resource,
        namespace: str | None,
        name: str,
        body: Any,
        *,
        sub: str = "",
        content_type: str = MERGE,
    ) -> Obj:
        obj: Obj = self.request(
            "PATCH", res.path(namespace, name, sub), body, content_type=content_type
        )
        return obj

    def patch_status(
        self,
        res: Resource,
        namespace: str | None,
        name: str,
        status: Obj,
        content_type: str = MERGE,
    ) -> Obj:
        return self.patch(
            res, namespace, name, {"status": status}, sub="status", content_type=content_type
        )

    def delete(
        self,
        res: Resource,
        namespace: str | None,
        name: str,
        *,
        grace: int | None = None,
        uid: str | None = None,
    ) -> None:
        body: Obj = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if grace is not None:
            body["gracePeriodSeconds"] = grace
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            self.request("DELETE", res.path(namespace, name), body)
        except KubeError as exc:
            if not exc.not_found:
                raise

    def exists(self, res: Resource) -> bool:
        """Whether the API server serves this resource (its CRD is installed)."""
        base = f"/apis/{res.group}/{res.version}" if res.group else f"/api/{res.version}"
        try:
            listing = self.request("GET", base)
        except KubeError:
            return False
        return any(r.get("name") == res.plural for r in listing.get("resources", []))


def _error(status: int, raw: bytes, what: str) -> KubeError:
    try:
        data = json.loads(raw)
        return KubeError(status, data.get("reason", ""), data.get("message", ""), what)
    except (ValueError, AttributeError):
        return KubeError(status, "", raw.decode(errors="replace")[:500], what)


# The resources the simulators and the kubelet talk to.
NAMESPACES = Resource("", "v1", "namespaces", "Namespace", namespaced=False)
CONFIGMAPS = Resource("", "v1", "configmaps", "ConfigMap")
SECRETS = Resource("", "v1", "secrets", "Secret")
PODS = Resource("", "v1", "pods", "Pod")
NODES = Resource("", "v1", "nodes", "Node", namespaced=False)
SERVICEACCOUNTS = Resource("", "v1", "serviceaccounts", "ServiceAccount")
LIMITRANGES = Resource("", "v1", "limitranges", "LimitRange")
EVENTS = Resource("", "v1", "events", "Event")
LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease")
ROLEBINDINGS = Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding")
ROLES = Resource("rbac.authorization.k8s.io", "v1", "roles", "Role")
NETWORKPOLICIES = Resource("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy")
JOBS = Resource("batch", "v1", "jobs", "Job")
VALIDATING_WEBHOOKS = Resource(
    "admissionregistration.k8s.io",
    "v1",
    "validatingwebhookconfigurations",
    "ValidatingWebhookConfiguration",
    namespaced=False,
)
MUTATING_WEBHOOKS = Resource(
    "admissionregistration.k8s.io",
    "v1",
    "mutatingwebhookconfigurations",
    "MutatingWebhookConfiguration",
    namespaced=False,
)
OLM = "operators.coreos.com"
CATALOGSOURCES = Resource(OLM, "v1alpha1", "catalogsources", "CatalogSource")
SUBSCRIPTIONS = Resource(OLM, "v1alpha1", "subscriptions", "Subscription")
INSTALLPLANS = Resource(OLM, "v1alpha1", "installplans", "InstallPlan")
CSVS = Resource(OLM, "v1alpha1", "clusterserviceversions", "ClusterServiceVersion")
OPERATORGROUPS = Resource(OLM, "v1", "operatorgroups", "OperatorGroup")
SMCPS = Resource("maistra.io", "v2", "servicemeshcontrolplanes", "ServiceMeshControlPlane")
SMMRS = Resource("maistra.io", "v1", "servicemeshmemberrolls", "ServiceMeshMemberRoll")
SMMS = Resource("maistra.io", "v1", "servicemeshmembers", "ServiceMeshMember")
KIALIS = Resource("kiali.io", "v1alpha1", "kialis", "Kiali")
PROJECTREQUESTS = Resource(
    "project.openshift.io", "v1", "projectrequests", "ProjectRequest", namespaced=False
)
PROJECTS = Resource("project.openshift.io", "v1", "projects", "Project", namespaced=False)
SUBJECTACCESSREVIEWS = Resource(
    "authorization.k8s.io", "v1", "subjectaccessreviews", "SubjectAccessReview", namespaced=False
)
