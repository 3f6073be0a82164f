"""The cluster layer: one connection pool and one discovery per process, and a small facade.

`Cluster` is shared by every step of a run (thread-safe: urllib3's pool and the discovery
lock). It speaks HTTP through the kubernetes client's REST layer only (TLS, client
certificates, proxies): the generated API classes and models, and the dynamic client, are
never imported - they were most of the runner's start-up time (docs/design.md, "Start-up").
`Kube` is a step's view of it: the step's logger, deadline and cancellation, and the dry-run
switch. Every call is retried on connection errors, 429 (honouring Retry-After) and
5xx with capped exponential backoff and jitter inside the deadline, and every failure is
translated into runner.errors naming the action and the object.
"""

# The kubernetes client is untyped; its calls stay inside this module.
# mypy: disallow-untyped-calls=False

from __future__ import annotations

import contextlib
import copy
import json
import random
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urlencode

import urllib3
from kubernetes.client.configuration import Configuration
from kubernetes.client.exceptions import ApiException
from kubernetes.client.rest import RESTClientObject
from kubernetes.config.config_exception import ConfigException

from runner.apierrors import classify, translate
from runner.config import service_account_dir
from runner.discovery import AggregatedDiscoverer, Resource
from runner.errors import (
    ApiMissing,
    Conflict,
    FieldConflict,
    Forbidden,
    InvalidInput,
    NotFound,
    TemporaryCondition,
    TransientError,
    WaitTimeout,
)
from runner.logs import Logger, add_secret, one_line
from runner.result import did
from runner.waits import (
    MAX_WATCH_SECONDS,
    CancelToken,
    Deadline,
    Obj,
    Target,
    WatchEvent,
    WatchSource,
    describe,
    follow,
    resource_version_of,
)

__all__ = [  # translate is re-exported: runner.launcher imports it from here
    "FIELD_MANAGER",
    "REQUEST_TIMEOUT",
    "Applied",
    "Cluster",
    "Kube",
    "Mutate",
    "StepKube",
    "Updated",
    "describe",
    "in_sync",
    "is_subset",
    "load_configuration",
    "read_modify_write",
    "translate",
]
FIELD_MANAGER = "workshop-runner"
BACKOFF_BASE, BACKOFF_CAP = 0.2, 5.0
# A restarted kube-apiserver answers 403 for a moment while its RBAC informers fill
# (kubernetes/kubernetes#121635): within this many seconds of a connection failure, a 403 is
# retried like a transient error instead of ending the run with exit 4. 30 s, not 10: on a loaded
# 2-core machine the caches of a crashed and restarted apiserver took longer than 10 s to fill
# (the crash-and-outage restart fault test saw exit 4 in 2 of 3 runs at load 17). A real 403 after
# a connection failure is reported at most 30 s later.
SETTLE_SECONDS = 30.0
REQUEST_TIMEOUT = (10.0, 60.0)
JSON = "application/json"
USER_AGENT = "workshop-runner"  # in the API server's audit log
HTTP_CREATED = 201
# client-go's retry.DefaultRetry, as RetryOnConflict uses it: 5 attempts, 10 ms apart, 10 % jitter.
CONFLICT_ATTEMPTS, CONFLICT_PAUSE, CONFLICT_JITTER = 5, 0.01, 0.1
# Create-only APIs whose storage ignores dryRun: openshift-apiserver's ProjectRequest REST
# (openshift/openshift-apiserver pkg/project/apiserver/registry/projectrequest/delegated/
# delegated.go: Create never reads its options) would make the project. A dry run asks a
# SelfSubjectAccessReview whether it may create one instead of sending it.
IGNORES_DRY_RUN = frozenset({("project.openshift.io", "ProjectRequest")})
# An Authorization value as it may be sent: a scheme and one token of visible ASCII.
AUTH_VALUE = re.compile(r"([A-Za-z]+) ([\x21-\x7e]+)")
T = TypeVar("T")


def load_configuration(
    kubeconfig: Path | None, context: str | None, env: Mapping[str, str]
) -> tuple[Configuration, str]:
    """Explicit kubeconfig or $KUBECONFIG, else in-cluster, else a clear error."""
    cfg = _Configuration()
    path = str(kubeconfig) if kubeconfig else env.get("KUBECONFIG")
    if path:
        # Imported here: a runner in a pod never loads a kubeconfig (runner/_lazy.py).
        from kubernetes.config.kube_config import load_kube_config  # noqa: PLC0415 - start-up cost

        try:
            load_kube_config(
                config_file=path, context=context, client_configuration=cfg, persist_config=False
            )
        except (ConfigException, OSError, ValueError) as e:
            raise InvalidInput(f"kubeconfig {path}: {one_line(e)}") from None
        source = f"kubeconfig {path}"
    elif env.get("KUBERNETES_SERVICE_HOST") and env.get("KUBERNETES_SERVICE_PORT"):
        from kubernetes.config.incluster_config import InClusterConfigLoader  # noqa: PLC0415 - start-up cost

        sa_dir = service_account_dir(env)
        try:
            InClusterConfigLoader(
                token_filename=str(sa_dir / "token"),
                cert_filename=str(sa_dir / "ca.crt"),
                environ=env,
            ).load_and_set(cfg)
        except (ConfigException, OSError) as e:
            raise InvalidInput(f"in-cluster config from {sa_dir}: {e}") from None
        source = f"in-cluster service account ({sa_dir})"
    else:
        raise InvalidInput(
            "no cluster configuration: pass --kubeconfig, set KUBECONFIG, or run in a pod "
            "(KUBERNETES_SERVICE_HOST/PORT and a service account token)"
        )
    cfg.source = source
    cfg.auth_settings()  # a malformed token fails here, before any request
    cfg.retries = False  # our own retry loop decides, within the step's deadline
    cfg.connection_pool_maxsize = 16
    return cfg, source


class _Configuration(Configuration):
    """The client's Configuration, with the Authorization value checked on every read: the
    whitespace around the token stripped (a token file or a kubeconfig written with a trailing
    newline, which client-go also trims) and a malformed one refused, naming the source but
    never the value - the HTTP library would otherwise fail with the whole header in its
    message. Every read: the loaders' refresh hooks set the raw token again (the in-cluster
    one re-reads the rotated file)."""

    source = ""

    def get_api_key_with_prefix(self, identifier: str, alias: str | None = None) -> str | None:
        value = super().get_api_key_with_prefix(identifier, alias)
        if value is None:
            return None
        scheme, _, token = str(value).strip().partition(" ")
        cleaned = f"{scheme} {token.strip()}"
        if not AUTH_VALUE.fullmatch(cleaned):
            raise InvalidInput(
                f"{self.source}: the token is malformed (it must be one line of printable ASCII)"
            )
        add_secret(token.strip())
        return cleaned


class Cluster:
    """Process-wide: the connection pool, discovery, request counters."""

    def __init__(self, configuration: Configuration) -> None:
        self.configuration = configuration
        self.default_headers: dict[str, str] = {"User-Agent": USER_AGENT}
        self._rest = RESTClientObject(configuration)
        self.discovery = AggregatedDiscoverer(self._discover)
        self.discovery.on_request = lambda _path: self.count()
        self._lock = threading.Lock()
        self.requests = 0
        self.unsettled_until = float("-inf")
        self._fresh: set[str] = set()
        self.username: str | None = None  # this identity, once asked (SelfSubjectReview)

    def mark_fresh(self, namespace: str) -> None:
        """This process created the namespace: nothing of ours can be in it yet."""
        with self._lock:
            self._fresh.add(namespace)

    def is_fresh(self, namespace: str | None) -> bool:
        with self._lock:
            return namespace in self._fresh

    def count(self) -> None:
        with self._lock:
            self.requests += 1

    def note_transient(self, now: float) -> None:
        """A connection failed or a stream broke: the server may be (re)starting."""
        self.unsettled_until = max(self.unsettled_until, now + SETTLE_SECONDS)

    def settling(self, now: float) -> bool:
        return now < self.unsettled_until

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: Mapping[str, str | int | bool | None] | None = None,
        content_type: str = JSON,
        accept: str = JSON,
        timeout: float | tuple[float, float] = REQUEST_TIMEOUT,
    ) -> urllib3.BaseHTTPResponse:
        """One request, with the configuration's credentials; the answer unread (a watch
        streams it). An answer other than 2xx raises ApiException with its status, body
        and headers."""
        headers = {**self.default_headers, "Accept": accept, "Content-Type": content_type}
        auth = self.configuration.auth_settings().get("BearerToken")
        if auth and auth["value"]:
            headers["Authorization"] = auth["value"]
        url = self.configuration.host + path
        sent = {
            k: str(v).lower() if isinstance(v, bool) else v
            for k, v in (query or {}).items()
            if v is not None
        }
        if sent:
            url += "?" + urlencode(sent)
        answer = self._rest.request(
            method, url, headers=headers, body=body, _request_timeout=timeout
        )
        if not 200 <= answer.status <= 299:
            answer.read()
            raise ApiException(http_resp=answer)
        response: urllib3.BaseHTTPResponse = answer.response
        return response

    def _discover(self, path: str, accept: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.request("GET", path, accept=accept, timeout=30).data)
        return data

    def close(self) -> None:
        self._rest.close()


@dataclass(frozen=True)
class Applied:
    obj: Obj
    changed: bool
    detail: str


@dataclass(frozen=True)
class Updated:
    """What a read-modify-write found and left: `obj` is the object as written (the server's
    dry-run answer in dry-run), or as read when there was nothing to do."""

    before: Obj | None
    obj: Obj | None
    changed: bool


Mutate = Callable[[Obj | None], Obj | None]


class Kube:
    """A step's view of the cluster."""

    def __init__(
        self,
        cluster: Cluster,
        *,
        log: Logger,
        deadline: Deadline,
        cancel: CancelToken,
        dry_run: bool = False,
        sleep: Callable[[float], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.cluster = cluster
        self.log = log
        self.deadline = deadline
        self.cancel = cancel
        self.dry_run = dry_run
        self._sleep = sleep or cancel.sleep
        self._rng = rng or random.Random()

    # -- resolution ------------------------------------------------------------------------
    def resource(self, api_version: str, kind: str) -> Resource:
        found = self._call(
            "discover",
            f"{kind}.{api_version}",
            lambda: self.cluster.discovery.get(api_version=api_version, kind=kind),
            count=False,  # the discoverer counts the requests it really makes
        )
        if found is None:
            raise ApiMissing(
                f"required API {kind} ({api_version}) is not served by the cluster "
                "(is its CRD installed?)"
            )
        return found

    def has_api(self, api_version: str, kind: str) -> bool:
        try:
            self.resource(api_version, kind)
        except ApiMissing:
            return False
        return True

    def fresh(self, namespace: str | None) -> bool:
        """Whether this process created `namespace` (so nothing of ours is in it yet)."""
        return not self.dry_run and self.cluster.is_fresh(namespace)

    # -- reads -----------------------------------------------------------------------------
    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> Obj | None:
        res = self.resource(api_version, kind)
        what = describe(kind, name, namespace)
        try:
            return self._json("get", what, "GET", res.path(name=name, namespace=namespace))
        except NotFound:
            return None

    def list_items(
        self, api_version: str, kind: str, namespace: str | None = None, **selectors: str
    ) -> tuple[list[Obj], str]:
        res = self.resource(api_version, kind)
        data = self._json(
            "list",
            describe(kind, None, namespace),
            "GET",
            res.path(namespace=namespace),
            query=_selector_query(selectors),
        )
        return list(data.get("items") or []), str(data["metadata"].get("resourceVersion", ""))

    # -- this identity ---------------------------------------------------------------------
    def may(self, verb: str, resource: str, namespace: str | None, group: str = "") -> bool:
        """Whether this identity may `verb` `resource` in `namespace` (None: in every one), as
        the API server's authorizer answers a SelfSubjectAccessReview."""
        attributes = {"verb": verb, "group": group, "resource": resource}
        if namespace:
            attributes["namespace"] = namespace
        body = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attributes},
        }
        where = f"in {namespace}" if namespace else "cluster-wide"
        answer = self._json(
            "review",
            f"access to {verb} {resource} {where}",
            "POST",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            body=body,
        )
        status = answer.get("status") or {}
        return bool(status.get("allowed")) and not status.get("denied")

    def username(self) -> str:
        """This identity's user name as the API server authenticates it (SelfSubjectReview;
        asked once per process)."""
        if self.cluster.username is None:
            body = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
            answer = self._json(
                "review",
                "own identity",
                "POST",
                "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                body=body,
            )
            name = str(((answer.get("status") or {}).get("userInfo") or {}).get("username") or "")
            if not name:
                raise InvalidInput("the API server did not say who this identity is")
            self.cluster.username = name
        return self.cluster.username

    def retry_forbidden(
        self, fn: Callable[[], T], when: Callable[[Forbidden], bool], seconds: float
    ) -> T:
        """fn(); a Forbidden that `when` accepts is retried with backoff for up to `seconds`
        (and the deadline): a permission this process granted itself a moment ago may not
        have reached every authorizer's cache yet."""
        give_up = self.deadline.clock() + seconds
        attempt = 0
        while True:
            try:
                return fn()
            except Forbidden as error:
                top = min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt)
                delay = self._rng.uniform(top / 2, top)
                now = self.deadline.clock()
                if not when(error) or now + delay > give_up or self.deadline.remaining() < delay:
                    raise
                self.log.warning("retrying: permission granted moments ago", error=str(error))
                self._sleep(delay)
                attempt += 1

    # -- writes ----------------------------------------------------------------------------
    def apply(self, desired: Obj, *, force: bool = False) -> Applied:
        """Observe, then server-side apply only when the live object differs from `desired`
        or still holds a field this manager applied before and `desired` no longer has (the
        apply prunes it).

        The read is what makes "changed" exact: the answer to a no-op apply and to one that
        wrote differ only in the resourceVersion (whose previous value only the read knows)
        and in this manager's managedFields time, which has one-second resolution. In a
        namespace this process created moments ago there is nothing to observe: the apply
        goes straight out (a re-run finds the namespace and observes again).

        Without `force`, a field of `desired` that another manager set to another value is a
        FieldConflict (exit 3) naming the field(s) and the manager(s). `force` takes such
        fields over: only where the caller documents why (docs/design.md, "Apply")."""
        kind, name, ns = (
            desired["kind"],
            desired["metadata"]["name"],
            desired["metadata"].get("namespace"),
        )
        what = describe(kind, name, ns)
        res = self.resource(desired["apiVersion"], kind)
        blind = res.namespaced and self.fresh(ns)
        before = (
            None
            if blind
            else self.get(desired["apiVersion"], kind, name, ns if res.namespaced else None)
        )
        if before is not None and in_sync(desired, before):
            return Applied(before, False, f"{what} exists and matches")
        query = {"fieldManager": FIELD_MANAGER, "force": force, "dryRun": self._dry_run}
        try:
            after, status = self._json_status(
                "apply",
                what,
                "PATCH",
                res.path(name=name, namespace=ns),
                body=desired,
                content_type="application/apply-patch+yaml",
                query=query,
            )
        except Conflict as e:
            raise FieldConflict.of(e, what) from None
        except NotFound as e:
            if self._namespace_to_come(e):
                return Applied(
                    desired,
                    True,
                    did(
                        "create",
                        f"{what} (its namespace is created by an earlier step)",
                        dry_run=True,
                    ),
                )
            raise
        verb = "create" if before is None else "update"
        if self.dry_run:
            return Applied(after, True, did(verb, what, dry_run=True))
        if before is not None and resource_version_of(after) == resource_version_of(before):
            return Applied(after, False, f"{what} already as desired")
        if blind and status != HTTP_CREATED:
            verb = "update"  # someone else made it first; the apply has made it ours
        if kind == "Namespace" and status == HTTP_CREATED:
            self.cluster.mark_fresh(name)
        self.log.info(did(verb, "", dry_run=False).strip(), object=what)
        return Applied(after, True, did(verb, what, dry_run=False))

    def update(self, target: Target, mutate: Mutate, *, known: Obj | None = None) -> Updated:
        """read_modify_write on this view; in a namespace this process created there is
        nothing to read on the first pass."""
        return read_modify_write(
            self,
            target,
            mutate,
            known=known,
            absent=known is None and self.fresh(target.namespace),
            pause=lambda: self._sleep(CONFLICT_PAUSE * self._rng.uniform(1, 1 + CONFLICT_JITTER)),
        )

    def create(self, body: Obj) -> Obj | None:
        """Create-only objects (e.g. ProjectRequest): AlreadyExists means done (None)."""
        kind, name, ns = body["kind"], body["metadata"]["name"], body["metadata"].get("namespace")
        res = self.resource(body["apiVersion"], kind)
        what = describe(kind, name, ns)
        if self.dry_run and (res.group, kind) in IGNORES_DRY_RUN:
            if not self.may("create", res.name, ns if res.namespaced else None, res.group):
                raise Forbidden(
                    f"create {what}: this identity may not create {res.name} "
                    "(a SelfSubjectAccessReview; a dry run does not send it, as "
                    f"{res.group} would act on it)"
                )
            self.log.info(did("create", "", dry_run=True).strip(), object=what)
            return body
        try:
            created = self._json(
                "create",
                what,
                "POST",
                res.path(namespace=ns),
                body=body,
                query={"dryRun": self._dry_run},
            )
        except Conflict:
            return None
        except NotFound as e:
            if not self._namespace_to_come(e):
                raise
            created = body
        self.log.info(did("create", "", dry_run=self.dry_run).strip(), object=what)
        return created

    def _namespace_to_come(self, e: NotFound) -> bool:
        """In a dry run, a namespace an earlier step would create is not there."""
        return self.dry_run and e.details.get("kind") == "namespaces"

    def review(self, body: Obj) -> Obj:
        """POST a review (SubjectAccessReview and kin: unnamed, answered, never stored)."""
        res = self.resource(body["apiVersion"], body["kind"])
        return self._json("review", body["kind"], "POST", res.path(), body=body)

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None) -> bool:
        """Delete; NotFound means it is already gone (False)."""
        res = self.resource(api_version, kind)
        what = describe(kind, name, namespace)
        try:
            self._json(
                "delete",
                what,
                "DELETE",
                res.path(name=name, namespace=namespace),
                query={"dryRun": self._dry_run},
            )
        except NotFound:
            return False
        self.log.info(did("delete", "", dry_run=self.dry_run).strip(), object=what)
        return True

    def merge_patch(
        self, api_version: str, kind: str, name: str, namespace: str | None, patch: Obj
    ) -> Obj:
        res = self.resource(api_version, kind)
        return self._json(
            "patch",
            describe(kind, name, namespace),
            "PATCH",
            res.path(name=name, namespace=namespace),
            body=patch,
            content_type="application/merge-patch+json",
            query={"fieldManager": FIELD_MANAGER, "dryRun": self._dry_run},
        )

    # -- watching: runner.waits.follow over this view ----------------------------------------
    def watch(
        self,
        target: Target,
        *,
        cancel: CancelToken | None = None,
        deadline: Deadline | None = None,
        watch_seconds: int = MAX_WATCH_SECONDS,
    ) -> Iterator[WatchEvent]:
        """The events of `target` (list, then watch; see runner.waits.follow) until `deadline`
        (forever without one). `cancel` (default: this view's) also closes an open watch."""
        view = self if cancel is None else self.with_cancel(cancel)
        return follow(
            view, target, cancel=view.cancel, deadline=deadline, watch_seconds=watch_seconds
        )

    def with_cancel(self, cancel: CancelToken) -> Kube:
        """This view with another cancellation (e.g. one that stops a watch thread)."""
        return Kube(
            self.cluster,
            log=self.log,
            deadline=self.deadline,
            cancel=cancel,
            dry_run=self.dry_run,
            sleep=cancel.sleep,
            rng=self._rng,
        )

    def list_objects(self, target: Target) -> tuple[list[Obj], str]:
        return self.list_items(
            target.api_version, target.kind, target.namespace, **_selectors(target)
        )

    def watch_objects(
        self, target: Target, resource_version: str, timeout_seconds: int
    ) -> Iterator[Obj]:
        res = self.resource(target.api_version, target.kind)
        query = {
            "watch": True,
            "resourceVersion": resource_version,
            "allowWatchBookmarks": True,
            "timeoutSeconds": timeout_seconds,
            **_selector_query(_selectors(target)),
        }
        what = target.describe()
        resp = self._call(
            "watch",
            what,
            lambda: self.cluster.request(
                "GET",
                res.path(namespace=target.namespace),
                query=query,
                timeout=(REQUEST_TIMEOUT[0], timeout_seconds + 15.0),
            ),
        )
        yield from watch_events(
            resp, self.cancel, what, lambda: self.cluster.note_transient(self.deadline.clock())
        )

    # -- plumbing --------------------------------------------------------------------------
    @property
    def _dry_run(self) -> str | None:
        """The dryRun query value of a write: All in a dry run, else none."""
        return "All" if self.dry_run else None

    def _json(self, action: str, what: str, method: str, path: str, **request: Any) -> Obj:
        return self._json_status(action, what, method, path, **request)[0]

    def _json_status(
        self, action: str, what: str, method: str, path: str, **request: Any
    ) -> tuple[Obj, int]:
        """Cluster.request (its keywords: body, query, content_type), the answer parsed."""
        resp = self._call(action, what, lambda: self.cluster.request(method, path, **request))
        data: Obj = json.loads(resp.data or b"{}")
        return data, int(resp.status)

    def _call(self, action: str, what: str, fn: Callable[[], T], *, count: bool = True) -> T:
        attempt = 0
        while True:
            self.cancel.check()
            if count:
                self.cluster.count()
            try:
                return fn()
            except (ApiException, urllib3.exceptions.HTTPError, OSError) as e:
                error = classify(e, action, what)
            now = self.deadline.clock()
            if isinstance(error, TransientError):
                self.cluster.note_transient(now)
            elif isinstance(error, Forbidden) and self.cluster.settling(now):
                error = TransientError(f"{error} (the API server reconnected moments ago)")
            if not isinstance(error, TransientError):
                raise error
            delay = error.retry_after
            if delay is None:
                top = min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt)
                delay = self._rng.uniform(top / 2, top)
            if self.deadline.remaining() < delay:
                raise WaitTimeout(
                    f"{error}; gave up at the deadline after {attempt + 1} attempt(s)"
                )
            self.log.warning("retrying", object=what, error=str(error), delay=round(delay, 3))
            self._sleep(delay)
            attempt += 1


def shutdown_stream(resp: Any) -> None:
    """Wake a thread blocked reading `resp` (cancellation runs this from another thread). The
    reading thread may have finished and released or closed the connection a moment before:
    urllib3 then raises (RuntimeError released, ValueError no socket, OSError EBADF on a
    closed one) - nothing is left to wake, so that is not an error. (An e2e launch ended with
    'unexpected OSError: [Errno 9] Bad file descriptor' from its watch threads' stop.)"""
    with contextlib.suppress(OSError, ValueError, RuntimeError):
        resp.shutdown()


def watch_events(
    resp: Any, cancel: CancelToken, what: str, on_break: Callable[[], None] | None = None
) -> Iterator[Obj]:
    """The events of an open watch response; a broken stream is a TransientError (the caller
    resumes from its last resourceVersion), cancellation closes the stream at once."""
    unregister = cancel.on_cancel(lambda: shutdown_stream(resp))
    try:
        for line in _lines(resp):
            if line:
                event: Obj = json.loads(line)
                yield event
    except (urllib3.exceptions.HTTPError, OSError, ValueError) as e:
        cancel.check()
        if on_break:
            on_break()
        raise TransientError(f"watch {what}: stream broke: {type(e).__name__}") from None
    finally:
        unregister()
        resp.release_conn()


def _lines(resp: Any) -> Iterator[bytes]:
    """The lines of a streamed answer as they arrive (a watch: one JSON event per line)."""
    pending = b""
    for chunk in resp.stream(amt=None, decode_content=False):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        yield from lines
    if pending:
        yield pending


def _selector_query(selectors: Mapping[str, str]) -> dict[str, str | None]:
    return {
        "fieldSelector": selectors.get("field_selector") or None,
        "labelSelector": selectors.get("label_selector") or None,
    }


def _selectors(target: Target) -> dict[str, str]:
    selectors = {
        "field_selector": f"metadata.name={target.name}" if target.name else "",
        "label_selector": target.selector,
    }
    return {key: value for key, value in selectors.items() if value}


class Writes(Protocol):
    """What a read-modify-write needs of the cluster (Kube; the step fakes in tests)."""

    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> Obj | None: ...

    def create(self, body: Obj) -> Obj | None: ...

    def merge_patch(
        self, api_version: str, kind: str, name: str, namespace: str | None, patch: Obj
    ) -> Obj: ...


class StepKube(WatchSource, Writes, Protocol):
    """The cluster as a step sees it (StepContext.kube): Kube, or a test's in-memory fake."""

    def has_api(self, api_version: str, kind: str) -> bool: ...

    def list_items(
        self, api_version: str, kind: str, namespace: str | None = None
    ) -> tuple[list[Obj], str]: ...

    def may(self, verb: str, resource: str, namespace: str | None, group: str = "") -> bool: ...

    def username(self) -> str: ...

    def retry_forbidden(
        self, fn: Callable[[], T], when: Callable[[Forbidden], bool], seconds: float
    ) -> T: ...

    def apply(self, desired: Obj, *, force: bool = False) -> Applied: ...

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None) -> bool: ...

    def update(self, target: Target, mutate: Mutate, *, known: Obj | None = None) -> Updated: ...


def read_modify_write(
    kube: Writes,
    target: Target,
    mutate: Mutate,
    *,
    known: Obj | None = None,
    absent: bool = False,
    pause: Callable[[], None] = lambda: None,
) -> Updated:
    """client-go's RetryOnConflict around a read-modify-write.

    `mutate` gets a copy of the live object (None when there is none; `known`, or None when
    `absent`, stands in for the first read) and returns what it should be: None when nothing
    is to change, else the whole object, which is created when nothing was live, else written
    as a merge patch carrying the resourceVersion it was computed from. A 409 (a concurrent
    write, or a create that lost a race) pauses, reads again and calls `mutate` again, up to
    CONFLICT_ATTEMPTS times; then TemporaryCondition (exit 5)."""
    if target.name is None:
        raise ValueError("read_modify_write needs a named target")
    name, ns = target.name, target.namespace
    for attempt in range(CONFLICT_ATTEMPTS):
        if attempt:
            pause()
        if attempt == 0 and (known is not None or absent):
            live = known
        else:
            live = kube.get(target.api_version, target.kind, name, ns)
        wanted = mutate(copy.deepcopy(live))
        if wanted is None:
            return Updated(live, live, False)
        if live is None:
            created = kube.create(wanted)
            if created is not None:
                return Updated(None, created, True)
            continue  # someone else created it meanwhile: read theirs and mutate that
        patch = merge_patch_between(live, wanted)
        patch.setdefault("metadata", {})["resourceVersion"] = resource_version_of(live)
        try:
            written = kube.merge_patch(target.api_version, target.kind, name, ns, patch)
        except Conflict:
            continue
        return Updated(live, written, True)
    raise TemporaryCondition(
        f"update {target.describe()}: still conflicting after {CONFLICT_ATTEMPTS} attempts"
    )


def merge_patch_between(live: Obj, wanted: Obj) -> Obj:
    """The JSON merge patch (RFC 7386) that turns `live` into `wanted`: changed maps recurse,
    other changed values (lists too) are replaced whole, dropped keys are set to null."""
    patch: Obj = {}
    for key, value in wanted.items():
        before = live.get(key)
        if isinstance(before, dict) and isinstance(value, dict):
            inner = merge_patch_between(before, value)
            if inner:
                patch[key] = inner
        elif key not in live or before != value:
            patch[key] = value
    patch.update({key: None for key in live if key not in wanted})
    return patch


def in_sync(desired: Obj, live: Obj) -> bool:
    """Whether applying `desired` would change nothing: every field of it is live, and this
    field manager owns no field (from an earlier apply) that `desired` has dropped."""
    if not is_subset(desired, live):
        return False
    wanted = _field_paths(desired)
    for entry in live.get("metadata", {}).get("managedFields") or []:
        ours = entry.get("manager") == FIELD_MANAGER and entry.get("operation") == "Apply"
        if ours and not _owned_paths(entry.get("fieldsV1") or {}) <= wanted:
            return False
    return True


def _field_paths(obj: Any, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """Every map path in `obj` (lists are leaves, as a manager's field set stops there)."""
    paths = {prefix}
    if isinstance(obj, dict):
        for key, value in obj.items():
            paths |= _field_paths(value, (*prefix, key))
    return paths


def _owned_paths(fields: Obj, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """The map paths of a managedFields fieldsV1 set ("f:name" keys; list items are leaves)."""
    paths = {prefix}
    for key, sub in fields.items():
        if key.startswith("f:"):
            paths |= _owned_paths(sub or {}, (*prefix, key[2:]))
    return paths


def is_subset(desired: Any, live: Any) -> bool:
    """True when every field of `desired` is present with the same value in `live`."""
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(
            k in live and is_subset(v, live[k]) for k, v in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(desired) == len(live)
            and all(is_subset(d, x) for d, x in zip(desired, live, strict=True))
        )
    return bool(desired == live)
