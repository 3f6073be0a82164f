"""API discovery for the DynamicClient in at most two requests per process.

The stock LazyDiscoverer asks /version, /apis and then one group-version at a time, and keeps a
cache file in /tmp shared by every process on the host. Aggregated discovery
(apidiscovery.k8s.io/v2, GA in Kubernetes 1.30) returns every resource of every group in one
answer: one GET /api for the core group and one GET /apis for the rest, each made only when a
resource of that prefix is first needed and then kept in memory. An older server answers with
the legacy lists; then each needed group-version is fetched once.
"""

# mypy: disallow-untyped-calls=False

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from kubernetes.dynamic.exceptions import ResourceNotFoundError
from kubernetes.dynamic.resource import Resource

AGGREGATED_ACCEPT = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,"
    "application/json"
)
REFRESH_AFTER_SECONDS = 5.0
Key = tuple[str, str, str]  # (group, version, kind)


class AggregatedDiscoverer:
    """Implements the part of kubernetes.dynamic's Discoverer interface the runner uses
    (`get`, `search`); made by DynamicClient as `discoverer(client, cache_file)`."""

    def __init__(self, client: Any, cache_file: str | None = None) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._resources: dict[str, dict[Key, Resource]] = {}
        self._legacy_versions: dict[str, set[str]] = {}
        self._fetched_at: dict[str, float] = {}
        self.requests = 0
        self.on_request: Callable[[str], None] | None = None

    @property
    def version(self) -> dict[str, Any]:
        return {"kubernetes": {}}

    def get(self, *, api_version: str, kind: str, **_ignored: Any) -> Resource:
        found = self.search(api_version=api_version, kind=kind)
        if not found:
            raise ResourceNotFoundError(f"{kind} in {api_version} is not served")
        return found[0]

    def search(self, *, api_version: str, kind: str, **_ignored: Any) -> list[Resource]:
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
            found = self._resources[prefix].get(key)
        return [found] if found is not None else []

    def _stale(self, prefix: str) -> bool:
        return time.monotonic() - self._fetched_at.get(prefix, 0.0) > REFRESH_AFTER_SECONDS

    def _get_json(self, path: str, accept: str) -> dict[str, Any]:
        self.requests += 1
        if self.on_request is not None:
            self.on_request(path)
        resp = self._client.request(
            "GET", path, serialize=False, header_params={"Accept": accept}, _request_timeout=30
        )
        data: dict[str, Any] = json.loads(resp.data)
        return data

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
                api_version=version,
                kind=res["kind"],
                name=res["name"],
                namespaced=res.get("namespaced", False),
                verbs=res.get("verbs"),
                client=self._client,
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
            api_version=version,
            kind=kind,
            name=res["resource"],
            namespaced=res.get("scope") == "Namespaced",
            verbs=res.get("verbs"),
            client=self._client,
        )
