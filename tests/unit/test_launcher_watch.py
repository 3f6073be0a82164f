"""The launch watch against a scripted API: list, watch, resume, re-list on 410, stop."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, cast

from kubernetes.client.exceptions import ApiException

from runner.errors import Forbidden
from runner.kube import Cluster, Kube
from runner.launcher.watch import Event, LaunchWatch
from runner.logs import get_logger
from runner.waits import CancelToken, Deadline


class FakeResponse:
    """A list answer (data) or an open watch stream (events) of the API server."""

    def __init__(
        self, events: list[dict[str, Any]], hold: threading.Event | None, data: bytes = b""
    ) -> None:
        self.events = events
        self.hold = hold
        self.data = data
        self.status = 200
        self.closed = threading.Event()

    def stream(self, amt: Any = None, decode_content: bool = False) -> Iterator[bytes]:
        for event in self.events:
            yield (json.dumps(event) + "\n").encode()
        if self.hold is not None:  # a watch that stays open until shut down
            self.closed.wait(10)

    def shutdown(self) -> None:
        self.closed.set()

    def release_conn(self) -> None:
        pass


class FakeHttp:
    """The HTTP side of runner.kube.Kube (its cluster's `request` and `discovery`), scripted
    per kind: a real Kube runs the launcher's watches over it."""

    def __init__(self, watches: dict[str, list[list[dict[str, Any]]]]) -> None:
        self.watches = watches
        self.requests: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()

    def get(self, api_version: str, kind: str) -> Any:
        return SimpleNamespace(
            namespaced=True, path=lambda name=None, namespace=None: f"/{kind}/{namespace}"
        )

    def request(self, method: str, path: str, **params: Any) -> FakeResponse:
        kind = path.split("/")[1]
        query = params["query"]
        with self._lock:
            if not query.get("watch"):
                self.requests.append(("LIST", kind, query["labelSelector"]))
                n = sum(1 for r in self.requests if r[:2] == ("LIST", kind))
                listed = {
                    "metadata": {"resourceVersion": f"{n}00"},
                    "items": [{"metadata": {"name": f"{kind}-listed-{n}"}}],
                }
                return FakeResponse([], None, json.dumps(listed).encode())
            self.requests.append(("WATCH", kind, query["resourceVersion"]))
            script = self.watches[kind]
            events = script.pop(0) if script else []
        return FakeResponse(events, hold=threading.Event() if not script else None)


class FakeCluster:
    def __init__(self, http: FakeHttp) -> None:
        self.discovery = http
        self.request = http.request

    def count(self) -> None:
        pass

    def note_transient(self, now: float) -> None:
        pass

    def settling(self, now: float) -> bool:
        return False

    def is_fresh(self, namespace: str | None) -> bool:
        return False


def kube_over(http: FakeHttp) -> Kube:
    cluster = cast(Cluster, FakeCluster(http))
    return Kube(cluster, log=get_logger(), deadline=Deadline.after(30), cancel=CancelToken())


def obj(name: str, rv: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "resourceVersion": rv}}


def drain(events: queue.Queue[Event], n: int) -> list[Event]:
    return [events.get(timeout=5) for _ in range(n)]


def test_list_then_watch_resume_and_relist_on_gone() -> None:
    http = FakeHttp(
        {
            "Job": [[{"type": "ADDED", "object": obj("j1", "101")}]],
            "Pod": [
                [
                    {"type": "ADDED", "object": obj("p1", "102")},
                    {"type": "BOOKMARK", "object": obj("", "150")},
                ],
                # The server ended the watch; resumed from the bookmark, then history is gone.
                [{"type": "ERROR", "object": {"code": 410, "message": "too old"}}],
                [{"type": "MODIFIED", "object": obj("p1", "205")}],
            ],
        }
    )
    watch = LaunchWatch(kube_over(http), "ns", "workshop-runner.io/launch=x").start()
    try:
        got = drain(watch.events, 6)
    finally:
        watch.stop()
    pods = [(e.type, e.obj.get("metadata", {}).get("name")) for e in got if e.kind == "Pod"]
    assert pods == [("SYNC", None), ("ADDED", "p1"), ("SYNC", None), ("MODIFIED", "p1")]
    jobs = [e.type for e in got if e.kind == "Job"]
    assert jobs == ["SYNC", "ADDED"]
    pod_calls = [r for r in http.requests if r[1] == "Pod"]
    assert pod_calls == [
        ("LIST", "Pod", "workshop-runner.io/launch=x"),
        ("WATCH", "Pod", "100"),
        ("WATCH", "Pod", "150"),  # resumed from the bookmark, no list
        ("LIST", "Pod", "workshop-runner.io/launch=x"),  # 410: re-list
        ("WATCH", "Pod", "200"),
    ]


def test_a_forbidden_list_is_reported_as_an_error_event() -> None:
    class Refusing(FakeHttp):
        def request(self, method: str, path: str, **params: Any) -> FakeResponse:
            error = ApiException(status=403, reason="Forbidden")
            error.body = json.dumps({"kind": "Status", "message": "forbidden", "reason": "x"})
            raise error

    watch = LaunchWatch(kube_over(Refusing({})), "ns", "x=y").start()
    try:
        event = watch.events.get(timeout=5)
    finally:
        watch.stop()
    assert event.type == "ERROR"
    assert isinstance(event.error, Forbidden)
