"""A cache of API objects kept current by list + watch, and the handlers its events feed.

Like client-go's informer: list, then watch from the list's resourceVersion with bookmarks,
resume from the last version seen, re-list on 410 Gone. Writes the simulators make are put into
the cache at once ("write-through"), so a decision never rests on a copy older than our own
last write.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from devcluster.sim.kube import Kube, KubeError, Obj, Resource
from devcluster.sim.objects import name_of, ns_of

log = logging.getLogger(__name__)

Handler = Callable[[Resource, str, Obj, float], None]
WATCH_SECONDS = 240


def _rv(obj: Obj) -> int:
    try:
        return int(obj.get("metadata", {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


class Store:
    """Objects by resource, namespace and name; safe to read from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data: dict[Resource, dict[tuple[str, str], Obj]] = {}

    def track(self, res: Resource) -> None:
        with self._lock:
            self._data.setdefault(res, {})

    def tracked(self, res: Resource) -> bool:
        return res in self._data

    def update(self, res: Resource, obj: Obj) -> bool:
        """Keep `obj` unless the cache already holds a newer version; True if it was kept."""
        key = (ns_of(obj), name_of(obj))
        with self._lock:
            bucket = self._data.setdefault(res, {})
            current = bucket.get(key)
            if current is not None and _rv(current) > _rv(obj):
                return False
            bucket[key] = obj
            return True

    def remove(self, res: Resource, obj: Obj) -> None:
        with self._lock:
            self._data.get(res, {}).pop((ns_of(obj), name_of(obj)), None)

    def replace(
        self, res: Resource, objs: list[Obj], namespace: str | None, list_rv: int
    ) -> tuple[list[Obj], list[Obj]]:
        """Swap in a fresh listing of `namespace` (every namespace when None) taken at
        `list_rv`. Like the reflector's Replace, except that what the simulators wrote
        themselves after the listing (a newer resourceVersion) is kept: the watch that follows
        the list delivers it again. Objects of other namespaces are left alone (several
        namespaced informers may share this store). Returns (vanished, now listed)."""
        fresh = {(ns_of(o), name_of(o)): o for o in objs}
        gone: list[Obj] = []
        with self._lock:
            bucket = self._data.setdefault(res, {})
            for key, cached in list(bucket.items()):
                if namespace is not None and key[0] != namespace:
                    continue
                listed = fresh.get(key)
                if listed is not None and _rv(cached) > _rv(listed):
                    fresh[key] = cached
                elif listed is None and _rv(cached) <= list_rv:
                    gone.append(bucket.pop(key))
            bucket.update(fresh)
        return gone, list(fresh.values())

    def get(self, res: Resource, namespace: str | None, name: str) -> Obj | None:
        with self._lock:
            return self._data.get(res, {}).get((namespace or "", name))

    def list(self, res: Resource, namespace: str | None = None) -> list[Obj]:
        with self._lock:
            bucket = self._data.get(res, {})
            if namespace is None:
                return list(bucket.values())
            return [o for (ns, _), o in bucket.items() if ns == namespace]


class Informer:
    """One thread per resource: list, watch, keep `store` current, call handlers."""

    def __init__(
        self,
        kube: Kube,
        store: Store,
        res: Resource,
        namespace: str | None = None,
        *,
        field_selector: str | None = None,
    ) -> None:
        self.kube = kube
        self.store = store
        self.res = res
        self.namespace = namespace
        self.field_selector = field_selector
        self.handlers: list[Handler] = []
        self.synced = threading.Event()
        self.on_synced: list[Callable[[], None]] = []  # called once, after the first listing
        self.stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch-{res.plural}", daemon=True)
        store.track(res)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stopped.set()

    def _dispatch(self, kind: str, obj: Obj, at: float) -> None:
        for handler in self.handlers:
            try:
                handler(self.res, kind, obj, at)
            except Exception:
                log.exception("handler for %s %s/%s failed", kind, ns_of(obj), name_of(obj))

    def _query(self, **extra: Any) -> dict[str, Any]:
        q: dict[str, Any] = dict(extra)
        if self.field_selector:
            q["fieldSelector"] = self.field_selector
        return q

    def _relist(self) -> str:
        items, rv = self.kube.list(self.res, self.namespace, **self._query())
        at = time.monotonic()
        for obj in items:
            obj.setdefault("apiVersion", self.res.api_version)
            obj.setdefault("kind", self.res.kind)
        try:
            list_rv = int(rv)
        except ValueError:
            list_rv = 0
        gone, listed = self.store.replace(self.res, items, self.namespace, list_rv)
        for obj in gone:
            self._dispatch("DELETED", obj, at)
        for obj in listed:
            self._dispatch("ADDED", obj, at)
        if not self.synced.is_set():
            self.synced.set()
            for callback in self.on_synced:
                callback()
        return rv

    def _run(self) -> None:
        rv = ""
        backoff = 0.2
        while not self.stopped.is_set():
            try:
                if not rv:
                    rv = self._relist()
                rv = self._watch(rv)
                backoff = 0.2
            except KubeError as exc:
                if exc.status == 410:
                    rv = ""
                    continue
                log.warning("watch %s: %s", self.res.plural, exc)
                rv = "" if exc.status >= 400 else rv
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception as exc:  # connection resets, API server restarts
                log.warning("watch %s interrupted: %s", self.res.plural, exc)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def _watch(self, rv: str) -> str:
        query = self._query(
            watch="true",
            resourceVersion=rv,
            allowWatchBookmarks="true",
            timeoutSeconds=WATCH_SECONDS,
        )
        path = self.res.path(self.namespace)
        for event in self.kube.stream(path, query, timeout=WATCH_SECONDS + 30):
            if self.stopped.is_set():
                break
            kind = event.get("type", "")
            obj = event.get("object") or {}
            if kind == "ERROR":
                code = int(obj.get("code") or 500)
                raise KubeError(code, str(obj.get("reason", "")), str(obj.get("message", "")))
            rv = obj.get("metadata", {}).get("resourceVersion") or rv
            if kind == "BOOKMARK":
                continue
            at = time.monotonic()
            if kind == "DELETED":
                self.store.remove(self.res, obj)
            else:
                self.store.update(self.res, obj)
            self._dispatch(kind, obj, at)
        return rv
