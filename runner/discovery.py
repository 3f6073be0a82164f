"""API discovery in at most two requests per process.

The stock LazyDiscoverer asks /version, /apis and then one group-version at a time, and keeps a
cache file in /tmp shared by every process on the host. Aggregated discovery
(apidiscovery.k8s.io/v2, GA in Kubernetes 1.30) returns every resource of every group in one
answer: one GET /api for the core group and one GET /apis for the rest, each made only when a
resource of that prefix is first needed and then kept in memory. An older server answers with
the legacy lists; then each needed group-version is fetched once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

AGGREGATED_ACCEPT = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,"
    "application/json"
)
REFRESH_AFTER_SECONDS = 5.0
Key = tuple[str, str, str]  # (group, version, kind)
# GET `path` with this Accept header; the parsed JSON answer (the cluster layer's request).
Fetch = Callable[[str, str], dict[str, Any]]


@dataclass(frozen=True)
class Resource:
    """One served resource: where its objects live."""

    prefix: str  # "api" (the core group) or "apis"
    group: str
    version: str
    kind: str
    name: str  # the plural, as in the URL
    namespaced: bool

    def path(self, name: str | None = None, namespace: str | None = None) -> str:
        """The collection's URL path, or the object's with `name`; `namespace` only where the
        resource is namespaced (a cluster-scoped one ignores it, as the API does)."""
        parts = [self.prefix, self.group, self.version]
        if self.namespaced and namespace:
            parts += ["namespaces", namespace]
        parts.append(self.name)
        if name:
            parts.append(name)
        return "/" + "/".join(p for p in parts if p)


class AggregatedDiscoverer:
    """Which resources the cluster serves, asked once per prefix and kept in memory."""

    def __init__(self, fetch: Fetch) -> None:
        self._fetch_json = fetch
        self._lock = threading.Lock()
        self._resources: dict[str, dict[Key, Resource]] = {}
        self._legacy_versions: dict[str, set[str]] = {}
        self._fetched_at: dict[str, float] = {}
        self.requests = 0
        self.on_request: Callable[[str], None] | None = None

    def get(self, *, api_version: str, kind: str) -> Resource | None:
        """The resource serving `kind` in `api_version`, or None when none does."""
        group, _, version = api_version.rpartition("/")
        prefix = "apis" if group else "api"
        key = (group, version, kind)
        with self._lock:
            if prefix not in self._resources:
                self._fetch(prefix)
            if key not in self._resources[prefix]:
                self._fetch_legacy_group_version(prefix, group, version)
            if key not in self._resources[prefix] and self._stale(prefix):
                # A CRD may have been installed since (an operator's CSV creates its CRDs).
                self._fetch(prefix)
                self._fetch_legacy_group_version(prefix, group, version)
            return self._resources[prefix].get(key)

    def _stale(self, prefix: str) -> bool:
        return time.monotonic() - self._fetched_at.get(prefix, 0.0) > REFRESH_AFTER_SECONDS

    def _get_json(self, path: str, accept: str) -> dict[str, Any]:
        self.requests += 1
        if self.on_request is not None:
            self.on_request(path)
        return self._fetch_json(path, accept)

    def _fetch(self, prefix: str) -> None:
        data = self._get_json("/" + prefix, AGGREGATED_ACCEPT)
        self._fetched_at[prefix] = time.monotonic()
        table: dict[Key, Resource] = {}
        if data.get("kind") == "APIGroupDiscoveryList":
            for group in data.get("items") or []:
                name = group.get("metadata", {}).get("name", "")
                for version in group.get("versions") or []:
                    for res in version.get("resources") or []:
                        self._add_aggregated(table, prefix, name, version["version"], res)
        else:
            # Legacy answer (APIVersions for /api, APIGroupList for /apis): remember which
            # group-versions exist, fetch their resources only when asked for.
            if prefix == "api":
                self._legacy_versions[""] = set(data.get("versions") or [])
            for group in data.get("groups") or []:
                versions = {v["version"] for v in group.get("versions") or []}
                self._legacy_versions[group["name"]] = versions
        self._resources[prefix] = table

    def _fetch_legacy_group_version(self, prefix: str, group: str, version: str) -> None:
        if version not in self._legacy_versions.get(group, set()):
            return
        path = f"/{prefix}/{group}/{version}" if group else f"/{prefix}/{version}"
        data = self._get_json(path, "application/json")
        self._legacy_versions[group].discard(version)
        for res in data.get("resources") or []:
            if "/" in res["name"]:
                continue
            self._resources[prefix][(group, version, res["kind"])] = Resource(
                prefix=prefix,
                group=group,
                version=version,
                kind=res["kind"],
                name=res["name"],
                namespaced=bool(res.get("namespaced", False)),
            )

    def _add_aggregated(
        self, table: dict[Key, Resource], prefix: str, group: str, version: str, res: Any
    ) -> None:
        kind = (res.get("responseKind") or {}).get("kind")
        if not kind:
            return
        table[(group, version, kind)] = Resource(
            prefix=prefix,
            group=group,
            version=version,
            kind=kind,
            name=res["resource"],
            namespaced=res.get("scope") == "Namespaced",
        )
