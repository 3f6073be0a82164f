"""The cluster layer without a cluster: retries, error translation, discovery parsing."""

from __future__ import annotations

import json
import random
from typing import Any, cast

import pytest
import urllib3
from kubernetes.client.exceptions import ApiException

from runner import errors
from runner.apierrors import translate
from runner.discovery import AggregatedDiscoverer
from runner.kube import (
    FIELD_MANAGER,
    SETTLE_SECONDS,
    Cluster,
    Kube,
    in_sync,
    is_subset,
    merge_patch_between,
    shutdown_stream,
)
from runner.logs import get_logger
from runner.waits import CancelToken, Deadline


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeCluster:
    def __init__(self) -> None:
        self.requests = 0
        self.unsettled_until = float("-inf")

    def count(self) -> None:
        self.requests += 1

    note_transient = Cluster.note_transient
    settling = Cluster.settling


def api_error(
    status: int, message: str = "boom", headers: dict[str, str] | None = None
) -> ApiException:
    e = ApiException(status=status, reason="Reason")
    e.body = json.dumps({"kind": "Status", "message": message, "reason": "R"})
    e.headers = headers or {}
    return e


def kube(clock: Clock, seconds: float = 30) -> tuple[Kube, list[float]]:
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        clock.now += s

    k = Kube(
        FakeCluster(),
        log=get_logger(),
        deadline=Deadline(clock, clock.now + seconds),
        cancel=CancelToken(),
        sleep=sleep,
        rng=random.Random(7),
    )
    return k, slept


def flaky(*failures: Exception) -> Any:
    queue = list(failures)

    def call() -> str:
        if queue:
            raise queue.pop(0)
        return "ok"

    return call


def test_retry_after_is_honoured() -> None:
    clock = Clock()
    k, slept = kube(clock)
    assert (
        k._call("get", "Namespace u1", flaky(api_error(429, headers={"Retry-After": "3"}))) == "ok"
    )
    assert slept == [3.0]


def test_backoff_is_capped_and_jittered() -> None:
    clock = Clock()
    k, slept = kube(clock, seconds=100)
    failures = [api_error(503)] * 4 + [urllib3.exceptions.ProtocolError("reset")] * 4
    assert k._call("apply", "X a/b", flaky(*failures)) == "ok"
    tops = [min(5.0, 0.2 * 2**i) for i in range(8)]
    assert all(top / 2 <= s <= top for s, top in zip(slept, tops, strict=True))
    assert k.cluster.requests == 9


def test_retries_stop_at_the_deadline() -> None:
    clock = Clock()
    k, _ = kube(clock, seconds=2)
    with pytest.raises(errors.WaitTimeout, match=r"apply X a/b: boom; gave up at the deadline"):
        k._call("apply", "X a/b", flaky(*[api_error(500)] * 100))


@pytest.mark.parametrize(
    ("status", "kind", "code"),
    [
        (401, errors.Forbidden, 4),
        (403, errors.Forbidden, 4),
        (404, errors.NotFound, 1),
        (409, errors.Conflict, 1),
        (422, errors.TemplateError, 3),
        (400, errors.ApiError, 1),
    ],
)
def test_no_retry_for_permanent_errors(status: int, kind: type[Exception], code: int) -> None:
    clock = Clock()
    k, slept = kube(clock)
    with pytest.raises(kind) as info:
        k._call("create", "RoleBinding u1/admin", flaky(api_error(status, "denied")))
    assert slept == []
    assert isinstance(info.value, errors.RunnerError)
    assert info.value.exit_code == code
    assert str(info.value).startswith("create RoleBinding u1/admin: ")


def test_translate_keeps_the_server_message() -> None:
    e = translate(
        api_error(403, 'rolebindings is forbidden: User "x" cannot create'),
        "apply",
        "RoleBinding u1/a",
    )
    assert str(e) == 'apply RoleBinding u1/a: rolebindings is forbidden: User "x" cannot create'


def test_cancelled_call_does_not_run() -> None:
    clock = Clock()
    k, _ = kube(clock)
    k.cancel.cancel("other step failed")
    with pytest.raises(errors.Cancelled):
        k._call("get", "X", flaky())


@pytest.mark.parametrize(
    ("desired", "live", "expected"),
    [
        ({"a": 1}, {"a": 1, "b": 2}, True),
        ({"a": {"x": [1, 2]}}, {"a": {"x": [1, 2], "y": 0}}, True),
        ({"a": [{"n": 1}]}, {"a": [{"n": 1, "extra": True}]}, True),
        ({"a": [1]}, {"a": [1, 2]}, False),
        ({"a": 1}, {"a": "1"}, False),
        ({"a": 1}, {}, False),
        ({"metadata": {"labels": {"k": "v"}}}, {"metadata": {"labels": {"k": "w"}}}, False),
    ],
)
def test_is_subset(desired: Any, live: Any, expected: bool) -> None:
    assert is_subset(desired, live) is expected


def _live(labels: dict[str, str], owned: dict[str, Any], manager: str = FIELD_MANAGER) -> Any:
    entry = {"manager": manager, "operation": "Apply", "fieldsV1": owned}
    return {"metadata": {"name": "x", "labels": labels, "managedFields": [entry]}}


A_AND_B: dict[str, Any] = {"f:metadata": {"f:labels": {"f:a": {}, "f:b": {}}}}


@pytest.mark.parametrize(
    ("desired_labels", "live", "expected"),
    [
        ({"a": "1", "b": "2"}, _live({"a": "1", "b": "2"}, A_AND_B), True),
        # b was applied by us and is no longer wanted: the apply must go out to prune it
        ({"a": "1"}, _live({"a": "1", "b": "2"}, A_AND_B), False),
        # b belongs to another manager: nothing of ours to prune
        ({"a": "1"}, _live({"a": "1", "b": "2"}, A_AND_B, manager="kubectl"), True),
        ({"a": "1"}, _live({"a": "1", "b": "2"}, {"f:metadata": {"f:labels": {"f:a": {}}}}), True),
        # list items are leaves of a field set, as desired's lists are
        (
            {"a": "1"},
            _live({"a": "1"}, {"f:metadata": {"f:labels": {"f:a": {}}, "k:{x}": {"f:y": {}}}}),
            True,
        ),
    ],
)
def test_in_sync_knows_what_an_apply_would_prune(
    desired_labels: dict[str, str], live: Any, expected: bool
) -> None:
    desired = {"metadata": {"name": "x", "labels": desired_labels}}
    assert in_sync(desired, live) is expected


@pytest.mark.parametrize(
    ("live", "wanted", "patch"),
    [
        ({"spec": {"a": 1, "b": 2}}, {"spec": {"a": 1, "b": 3}}, {"spec": {"b": 3}}),
        ({"spec": {"m": [1]}}, {"spec": {"m": [1, 2]}}, {"spec": {"m": [1, 2]}}),
        ({"spec": {"a": 1, "gone": 2}}, {"spec": {"a": 1}}, {"spec": {"gone": None}}),
        ({"spec": {"a": 1}}, {"spec": {"a": 1}, "new": {"x": 1}}, {"new": {"x": 1}}),
        ({"spec": {"a": 1}}, {"spec": {"a": 1}}, {}),
    ],
)
def test_merge_patch_between(live: Any, wanted: Any, patch: Any) -> None:
    assert merge_patch_between(live, wanted) == patch


class FakeFetch:
    """The cluster's GET for discovery: the answer per path, the paths asked recorded."""

    def __init__(self, answers: dict[str, dict[str, Any]]) -> None:
        self.answers = answers
        self.paths: list[str] = []

    def __call__(self, path: str, accept: str) -> dict[str, Any]:
        self.paths.append(path)
        return self.answers[path]


AGG_API = {
    "kind": "APIGroupDiscoveryList",
    "items": [
        {
            "metadata": {"name": ""},
            "versions": [
                {
                    "version": "v1",
                    "resources": [
                        {
                            "resource": "namespaces",
                            "responseKind": {"kind": "Namespace"},
                            "scope": "Cluster",
                        },
                        {
                            "resource": "limitranges",
                            "responseKind": {"kind": "LimitRange"},
                            "scope": "Namespaced",
                        },
                    ],
                }
            ],
        }
    ],
}
AGG_APIS = {
    "kind": "APIGroupDiscoveryList",
    "items": [
        {
            "metadata": {"name": "operators.coreos.com"},
            "versions": [
                {
                    "version": "v1alpha1",
                    "resources": [
                        {
                            "resource": "catalogsources",
                            "responseKind": {
                                "group": "operators.coreos.com",
                                "version": "v1alpha1",
                                "kind": "CatalogSource",
                            },
                            "scope": "Namespaced",
                            "subresources": [{"subresource": "status"}],
                        }
                    ],
                }
            ],
        }
    ],
}


def test_aggregated_discovery_two_requests() -> None:
    dyn = FakeFetch({"/api": AGG_API, "/apis": AGG_APIS})
    disco = AggregatedDiscoverer(dyn)
    ns = disco.get(api_version="v1", kind="Namespace")
    assert ns is not None
    assert ns.path(name="u1") == "/api/v1/namespaces/u1"
    assert ns.path(name="u1", namespace="ignored") == "/api/v1/namespaces/u1"  # cluster-scoped
    cs = disco.get(api_version="operators.coreos.com/v1alpha1", kind="CatalogSource")
    assert cs is not None
    assert (
        cs.path(name="c", namespace="u1")
        == "/apis/operators.coreos.com/v1alpha1/namespaces/u1/catalogsources/c"
    )
    assert (
        cs.path(namespace="u1")
        == "/apis/operators.coreos.com/v1alpha1/namespaces/u1/catalogsources"
    )
    assert cs.path() == "/apis/operators.coreos.com/v1alpha1/catalogsources"  # every namespace
    disco.get(api_version="v1", kind="LimitRange")
    disco.get(api_version="operators.coreos.com/v1alpha1", kind="CatalogSource")
    assert dyn.paths == ["/api", "/apis"]
    assert disco.requests == 2


def test_legacy_discovery_fallback() -> None:
    dyn = FakeFetch(
        {
            "/apis": {
                "kind": "APIGroupList",
                "groups": [{"name": "rbac.authorization.k8s.io", "versions": [{"version": "v1"}]}],
            },
            "/apis/rbac.authorization.k8s.io/v1": {
                "resources": [
                    {"name": "rolebindings", "kind": "RoleBinding", "namespaced": True},
                    {"name": "rolebindings/status", "kind": "RoleBinding", "namespaced": True},
                ]
            },
        }
    )
    disco = AggregatedDiscoverer(dyn)
    rb = disco.get(api_version="rbac.authorization.k8s.io/v1", kind="RoleBinding")
    assert rb is not None
    assert rb.namespaced
    assert rb.name == "rolebindings"


def test_missing_api_is_not_found() -> None:
    dyn = FakeFetch({"/apis": AGG_APIS})
    disco = AggregatedDiscoverer(dyn)
    assert disco.get(api_version="maistra.io/v2", kind="ServiceMeshControlPlane") is None
    # No refresh storm: fetched moments ago, so the miss is answered from memory.
    assert dyn.paths == ["/apis"]


def test_forbidden_right_after_a_connection_failure_is_retried() -> None:
    """A restarted apiserver says 403 until its RBAC caches fill (kubernetes#121635)."""
    clock = Clock()
    k, slept = kube(clock)
    reset = urllib3.exceptions.ProtocolError("Connection aborted.")
    calls = flaky(reset, api_error(403, 'clusterrole "workshop-runner" not found'))
    assert k._call("watch", "ServiceMeshControlPlane u1-istio/workshop-install", calls) == "ok"
    assert len(slept) == 2


def test_forbidden_outside_the_settling_window_is_final() -> None:
    clock = Clock()
    k, _ = kube(clock, seconds=120)
    reset = urllib3.exceptions.ProtocolError("Connection aborted.")
    assert k._call("get", "Namespace u1", flaky(reset)) == "ok"
    clock.now += SETTLE_SECONDS + 1
    with pytest.raises(errors.Forbidden):
        k._call("get", "Namespace u1", flaky(api_error(403)))


def test_forbidden_without_a_connection_failure_is_final() -> None:
    k, slept = kube(Clock())
    with pytest.raises(errors.Forbidden):
        k._call("create", "Namespace u1", flaky(api_error(403)))
    assert slept == []


def forbidden_then_ok(refusals: int, message: str = "denied: access namespace(s)") -> Any:
    left = [refusals]

    def call() -> str:
        if left[0]:
            left[0] -= 1
            raise errors.Forbidden(message)
        return "ok"

    return call


def test_retry_forbidden_waits_for_a_permission_granted_moments_ago() -> None:
    clock = Clock()
    k, slept = kube(clock)
    wanted = lambda e: "access namespace" in str(e)  # noqa: E731
    assert k.retry_forbidden(forbidden_then_ok(3), wanted, seconds=20) == "ok"
    assert len(slept) == 3
    assert slept == sorted(slept)  # growing backoff


@pytest.mark.parametrize(
    ("refusals", "message", "seconds"),
    [
        (1, "another refusal", 20.0),  # not the one asked about: final at once
        (1, "denied: access namespace(s)", 0.0),  # no window
        (100, "denied: access namespace(s)", 3.0),  # still refused when the window closes
    ],
)
def test_retry_forbidden_gives_up(refusals: int, message: str, seconds: float) -> None:
    clock = Clock()
    k, _ = kube(clock)
    wanted = lambda e: "access namespace" in str(e)  # noqa: E731
    with pytest.raises(errors.Forbidden, match=message.replace("(", r"\(").replace(")", r"\)")):
        k.retry_forbidden(forbidden_then_ok(refusals, message), wanted, seconds=seconds)
    assert clock.now <= seconds


def test_an_apply_of_a_field_outside_the_schema_is_a_template_error_not_retried() -> None:
    message = (
        "failed to create typed patch object (maistra.io/v2, Kind=ServiceMeshControlPlane): "
        ".spec.tracing.samplng: field not declared in schema"
    )
    error = translate(api_error(500, message), "apply", "ServiceMeshControlPlane a/b")
    assert isinstance(error, errors.TemplateError)
    assert error.exit_code == 3
    assert ".spec.tracing.samplng: field not declared in schema" in str(error)
    assert isinstance(translate(api_error(500, "etcd timeout"), "get", "x"), errors.TransientError)


@pytest.mark.parametrize(
    "error",
    [
        OSError(9, "Bad file descriptor"),
        RuntimeError("Cannot shutdown as connection has already been released to the pool"),
        ValueError("Cannot shutdown socket as self._sock_shutdown is not set"),
    ],
)
def test_cancelling_a_watch_whose_stream_just_closed_is_quiet(error: Exception) -> None:
    """stop() cancels from the main thread while a watch thread may be releasing its stream."""

    class Released:
        shut = 0

        def shutdown(self) -> None:
            self.shut += 1
            raise error

    resp = Released()
    cancel = CancelToken()
    cancel.on_cancel(lambda: shutdown_stream(resp))
    cancel.cancel("stopped")  # raised before: the launcher's follow() crashed in its finally
    assert resp.shut == 1


@pytest.mark.parametrize("allowed", [True, False])
def test_a_dry_run_never_sends_a_project_request_and_asks_whether_it_may(allowed: bool) -> None:
    # openshift-apiserver's ProjectRequest storage ignores dryRun: sent, it would make the project
    k, _ = kube(Clock())
    k.dry_run = True
    res = type("Res", (), {"group": "project.openshift.io", "name": "projectrequests"})()
    res.namespaced = False
    asked: list[tuple[str, str, str | None, str]] = []
    k.resource = lambda api_version, kind: res  # type: ignore[method-assign]

    def may(verb: str, resource: str, namespace: str | None, group: str = "") -> bool:
        asked.append((verb, resource, namespace, group))
        return allowed

    k.may = may  # type: ignore[method-assign]

    def never(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a dry-run ProjectRequest was sent")

    k._json = never  # type: ignore[method-assign]
    body = {
        "apiVersion": "project.openshift.io/v1",
        "kind": "ProjectRequest",
        "metadata": {"name": "user1"},
    }
    if allowed:
        assert k.create(body) == body
    else:
        with pytest.raises(errors.Forbidden, match="may not create projectrequests"):
            k.create(body)
    assert asked == [("create", "projectrequests", None, "project.openshift.io")]


class RecordingRest:
    """The kubernetes client's REST layer as Cluster.request calls it: records the call and
    answers with a fixed status and body."""

    def __init__(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.status, self.body, self.headers = status, body, headers or {}
        self.calls: list[dict[str, Any]] = []

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        self.calls.append({"method": method, "url": url, **kwargs})
        answer = type("Answer", (), {})()
        answer.status, answer.reason, answer.data = self.status, "Reason", None
        answer.headers = self.headers
        answer.response = "the urllib3 response"

        def read() -> bytes:
            answer.data = self.body
            return self.body

        answer.read = read
        return answer


def cluster_with(rest: RecordingRest, token: str = "abc.def") -> Cluster:
    from kubernetes.client.configuration import Configuration

    cfg = Configuration(host="https://api.example:6443")
    cfg.api_key = {"authorization": token}
    cfg.api_key_prefix = {"authorization": "Bearer"}
    cluster = Cluster(cfg)
    cluster._rest = rest  # type: ignore[assignment]
    return cluster


def test_a_request_carries_the_token_its_query_and_its_content_type() -> None:
    rest = RecordingRest(200, b"{}")
    cluster = cluster_with(rest)
    cluster.default_headers["Impersonate-User"] = "someone"
    answer = cluster.request(
        "PATCH",
        "/api/v1/namespaces/u1",
        body={"a": 1},
        query={"fieldManager": "workshop-runner", "force": False, "dryRun": None, "n": 5},
        content_type="application/apply-patch+yaml",
    )
    assert answer == cast(Any, "the urllib3 response")  # unread: a watch streams it
    (call,) = rest.calls
    assert call["method"] == "PATCH"
    # Booleans as the API spells them; an absent value is not sent at all.
    assert call["url"] == (
        "https://api.example:6443/api/v1/namespaces/u1?fieldManager=workshop-runner&force=false&n=5"
    )
    assert call["body"] == {"a": 1}
    assert call["headers"] == {
        "User-Agent": "workshop-runner",
        "Impersonate-User": "someone",
        "Accept": "application/json",
        "Content-Type": "application/apply-patch+yaml",
        "Authorization": "Bearer abc.def",
    }


def test_a_request_without_query_has_no_question_mark_and_no_token_without_credentials() -> None:
    rest = RecordingRest(200, b"{}")
    cluster = cluster_with(rest)
    cluster.configuration.api_key = {}
    cluster.request("GET", "/api", query={"dryRun": None})
    (call,) = rest.calls
    assert call["url"] == "https://api.example:6443/api"
    assert "Authorization" not in call["headers"]


def test_an_answer_other_than_2xx_is_an_api_exception_with_status_body_and_headers() -> None:
    body = json.dumps({"kind": "Status", "message": "slow down", "reason": "TooManyRequests"})
    rest = RecordingRest(429, body.encode(), {"Retry-After": "2"})
    cluster = cluster_with(rest)
    with pytest.raises(ApiException) as caught:
        cluster.request("GET", "/api/v1/namespaces")
    assert (caught.value.status, caught.value.body) == (429, body)
    error = translate(caught.value, "list", "Namespace")
    assert isinstance(error, errors.TransientError)
    assert error.retry_after == 2.0


def test_watch_lines_are_whole_whatever_the_chunks() -> None:
    from runner.kube import _lines

    class Streamed:
        def stream(self, amt: Any, decode_content: bool) -> Any:
            yield from [b'{"a":', b'1}\n{"b"', b":2}\n", b"", b'{"c":3}']

    assert [json.loads(line) for line in _lines(Streamed())] == [{"a": 1}, {"b": 2}, {"c": 3}]
