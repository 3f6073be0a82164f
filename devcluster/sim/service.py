"""Wiring: informers, controllers, the engine, webhooks, knobs, and what the process reports.

Everything the process tells the outside world goes through the API, in namespace
devcluster-system:
- ConfigMap devcluster-sim-status: `ready` (instance id once serving), `webhook-port`,
  `controllers`, `knobs.<key>` (a digest of each knobs ConfigMap key it has applied, or
  `error: ...`), `webhook.<key>` (`refusing` / `open` for refusal windows set by that key),
  `stats.json` (reaction latency percentiles, transitions performed per kind, and `queues`:
  per work-queued kind its workers, reconciles, busy seconds and fraction, depth over time).
- ConfigMap devcluster-kubelet-status: `ready`, `node`, `stats.json` (bind/start/running).
- Lease devcluster-sim: renewed every 5 s while the simulators run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from devcluster.sim import knobs as knobs_mod
from devcluster.sim.catalog import CatalogSourceController, CopiedCsvController
from devcluster.sim.engine import Controller, Engine
from devcluster.sim.informer import Informer, Store
from devcluster.sim.kiali import KialiController
from devcluster.sim.kube import (
    CATALOGSOURCES,
    CONFIGMAPS,
    CSVS,
    INSTALLPLANS,
    KIALIS,
    LEASES,
    NAMESPACES,
    NETWORKPOLICIES,
    OPERATORGROUPS,
    PROJECTREQUESTS,
    PROJECTS,
    SMCPS,
    SMMRS,
    SMMS,
    SUBSCRIPTIONS,
    Kube,
    KubeError,
    Obj,
    Resource,
)
from devcluster.sim.maistra import SmcpController
from devcluster.sim.memberroll import SmmController, SmmrController
from devcluster.sim.objects import now_micro
from devcluster.sim.olm import OlmController
from devcluster.sim.openshift import ProjectRequestController
from devcluster.sim.webhook import Admission, WebhookServer, kube_access_review

log = logging.getLogger(__name__)

SYSTEM_NS = "devcluster-system"
KNOBS_CM = "devcluster-sim-knobs"
SIM_STATUS_CM = "devcluster-sim-status"
KUBELET_STATUS_CM = "devcluster-kubelet-status"
SIM_LEASE = "devcluster-sim"
STARTUP = "startup"


DEFAULT_NODE = "devcluster-kubelet"


def kubelet_status_name(node: str) -> str:
    """devcluster-kubelet-status for the default node, ...-<node> for any other."""
    return KUBELET_STATUS_CM if node == DEFAULT_NODE else f"{KUBELET_STATUS_CM}-{node}"


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def ensure_namespace(kube: Kube, name: str) -> None:
    try:
        kube.create(NAMESPACES, None, {"metadata": {"name": name}})
    except KubeError as exc:
        if not exc.conflict:
            raise


class StatusBoard:
    """One ConfigMap whose data keys this process owns."""

    def __init__(self, kube: Kube, name: str, namespace: str = SYSTEM_NS) -> None:
        self.kube, self.name, self.namespace = kube, name, namespace
        self._lock = threading.Lock()

    def set(self, **data: str | None) -> None:
        self.update(data)

    def update(self, data: dict[str, str | None]) -> None:
        with self._lock:
            try:
                self.kube.patch(CONFIGMAPS, self.namespace, self.name, {"data": data})
            except KubeError as exc:
                if not exc.not_found:
                    raise
                body = {
                    "metadata": {"name": self.name},
                    "data": {k: v for k, v in data.items() if v is not None},
                }
                self.kube.create(CONFIGMAPS, self.namespace, body)


class KnobsSource:
    """Profile + file (re-read on mtime change) + ConfigMap keys -> the current Knobs."""

    def __init__(self, file: Path | None, profile: str) -> None:
        self.file = file
        self.profile = profile
        self.started_at = time.monotonic()
        self.window_starts: dict[str, float] = {}
        self.file_doc: Any = None
        self.file_mtime: int | None = None
        self.cm_docs: dict[str, Any] = {}
        self.errors: dict[str, str] = {}
        self._lock = threading.Lock()
        self.load_file()
        self._knobs = self._build()

    def current(self) -> knobs_mod.Knobs:
        return self._knobs

    def load_file(self) -> bool:
        if self.file is None:
            return False
        try:
            mtime: int | None = self.file.stat().st_mtime_ns
        except FileNotFoundError:
            mtime = None
        if mtime == self.file_mtime:
            return False
        self.file_mtime = mtime
        try:
            doc = yaml.safe_load(self.file.read_text()) if mtime else None
            knobs_mod.build([("file", doc)], profile=self.profile)
        except (yaml.YAMLError, knobs_mod.KnobError, TypeError, ValueError) as exc:
            self.errors["file"] = str(exc)
            log.error("knobs file %s: %s (keeping the previous knobs)", self.file, exc)
            return False
        self.errors.pop("file", None)
        self.file_doc = doc
        return True

    def set_configmap(self, data: dict[str, str]) -> dict[str, str]:
        """Apply the ConfigMap's keys; returns key -> digest or `error: ...`."""
        acks: dict[str, str] = {}
        docs: dict[str, Any] = {}
        for key, text in sorted(data.items()):
            try:
                doc = yaml.safe_load(text)
                knobs_mod.build([(key, doc)], profile=self.profile)
            except (yaml.YAMLError, knobs_mod.KnobError, TypeError, ValueError) as exc:
                acks[key] = f"error: {exc}"
                continue
            docs[key] = doc
            acks[key] = digest(text)
        for gone in set(self.cm_docs) - set(docs):
            for wid in [w for w in self.window_starts if w.startswith(f"configmap:{gone}#")]:
                del self.window_starts[wid]
        self.cm_docs = docs
        return acks

    def rebuild(self) -> None:
        with self._lock:
            self._knobs = self._build()

    def _build(self) -> knobs_mod.Knobs:
        docs = [("file", self.file_doc)] + [
            (f"configmap:{k}", self.cm_docs[k]) for k in sorted(self.cm_docs)
        ]
        built = knobs_mod.build(
            docs, profile=self.profile, started_at=self.started_at, window_starts=self.window_starts
        )
        now = time.monotonic()
        for rule in built.rules:
            if rule.refuse_for is not None:
                self.window_starts.setdefault(rule.window_id, now)
        return built

    def window_ends(self, key: str) -> float | None:
        """When the last refusal window set by ConfigMap key `key` closes (monotonic);
        key `startup` is the window after the simulators started."""
        if key == STARTUP:
            return self.started_at + self._knobs.refuse_seconds
        ends = [
            self.window_starts[r.window_id] + (r.refuse_for or 0)
            for r in self._knobs.rules
            if r.source.startswith(f"configmap:{key}#") and r.refuse_for is not None
        ]
        return max(ends) if ends else None


class Simulators:
    """The simulated operators, their webhooks, and the knobs, in this process."""

    def __init__(self, kube: Kube, source: KnobsSource, state_dir: Path, instance: str) -> None:
        self.kube = kube
        self.source = source
        self.state_dir = state_dir
        self.instance = instance
        self.store = Store()
        self.informers: dict[Resource, Informer] = {}
        self.engine = Engine(kube, self.store, source.current, synced=self._synced)
        self.controllers: list[Controller] = []
        self.board = StatusBoard(kube, SIM_STATUS_CM)
        self.webhook: WebhookServer | None = None
        self.stopped = threading.Event()
        self._timers: list[threading.Timer] = []
        self._last_stats = ""

    def _available(self) -> set[Resource]:
        wanted = (
            CATALOGSOURCES,
            SUBSCRIPTIONS,
            INSTALLPLANS,
            CSVS,
            OPERATORGROUPS,
            SMCPS,
            SMMRS,
            SMMS,
            KIALIS,
            PROJECTREQUESTS,
            PROJECTS,
        )
        found = {r for r in wanted if self.kube.exists(r)}
        for r in sorted(set(wanted) - found, key=lambda r: r.plural):
            log.warning(
                "API %s/%s %s is not served: its simulator is off", r.group, r.version, r.plural
            )
        return found | {NAMESPACES, NETWORKPOLICIES}  # built in: always served

    def start(self, timeout: float = 60.0) -> None:
        ensure_namespace(self.kube, SYSTEM_NS)
        self.board.set(ready=None)
        apis = self._available()
        candidates: list[Controller] = [
            OlmController(),
            CatalogSourceController(),
            CopiedCsvController(),
            SmcpController(),
            SmmrController(),
            SmmController(),
            KialiController(),
            ProjectRequestController(with_projects=PROJECTS in apis),
        ]
        for controller in candidates:
            if set(controller.watches()) <= apis:
                self.controllers.append(controller)
                bind = getattr(controller, "bind", None)
                if bind is not None:
                    bind(self.store)
        for controller in self.controllers:
            for res in controller.watches():
                informer = self.informers.get(res)
                if informer is None:
                    informer = self.informers[res] = Informer(self.kube, self.store, res)
                    informer.on_synced.append(self.engine.release)
                informer.handlers.append(self.engine.handler(controller))
        knobs_informer = Informer(
            self.kube, Store(), CONFIGMAPS, SYSTEM_NS, field_selector=f"metadata.name={KNOBS_CM}"
        )
        knobs_informer.handlers.append(self._on_knobs)
        self.engine.start()
        knobs_informer.start()
        self.informers[CONFIGMAPS] = knobs_informer
        for informer in self.informers.values():
            if informer is not knobs_informer:
                informer.start()
        for informer in self.informers.values():
            if not informer.synced.wait(timeout):
                raise RuntimeError(f"watch of {informer.res.plural} did not sync in {timeout}s")
        for controller in self.controllers:
            if isinstance(controller, CopiedCsvController):
                self.engine.trigger(controller, "")
        self._start_webhooks(apis)
        threading.Thread(target=self._background, name="sim-background", daemon=True).start()
        self.renew_lease()
        self.board.update(self._window_state(STARTUP))
        self.board.set(
            ready=self.instance,
            controllers=",".join(c.name for c in self.controllers),
            **{"webhook-port": str(self.webhook.port) if self.webhook else ""},
        )

    def _synced(self, controller: Controller) -> bool:
        return all(
            res in self.informers and self.informers[res].synced.is_set()
            for res in controller.watches()
        )

    def _start_webhooks(self, apis: set[Resource]) -> None:
        with_smcp, with_projects = SMCPS in apis, PROJECTREQUESTS in apis
        if not (with_smcp or with_projects):
            return
        self.webhook = WebhookServer(
            Admission(
                self.store,
                self.source.current,
                lambda ns: self.kube.list(SMCPS, ns)[0],
                kube_access_review(self.kube),
            ),
            self.state_dir / "webhook",
        )
        self.webhook.start()
        self.webhook.register(self.kube, with_smcp, with_projects)
        if with_smcp:
            self._probe_webhook()

    def _probe_webhook(self) -> None:
        """A dry-run create proves the API server reaches the webhook (allowed or refused)."""
        assert self.webhook is not None
        body = {"metadata": {"name": "webhook-probe"}, "spec": {"version": "v2.4"}}
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            calls = self.webhook.calls
            outcome = "allowed"
            try:
                self.kube.create(SMCPS, SYSTEM_NS, dict(body), dryRun="All")
            except KubeError as exc:
                outcome = exc.message
            if self.webhook.calls > calls:
                log.info("webhook probe answered: %s", outcome)
                return
            time.sleep(0.2)
        log.error("the API server did not call the webhook on 127.0.0.1:%d", self.webhook.port)

    def _on_knobs(self, res: Resource, event: str, obj: Obj, at: float) -> None:
        data = {} if event == "DELETED" else dict(obj.get("data") or {})
        previous = set(self.source.cm_docs)
        acks = self.source.set_configmap(data)
        self.source.rebuild()
        update: dict[str, str | None] = {f"knobs.{k}": v for k, v in acks.items()}
        for gone in previous - set(data):
            update[f"knobs.{gone}"] = None
            update[f"webhook.{gone}"] = None
        for key in [*data, STARTUP]:
            update.update(self._window_state(key))
        for key, ack in acks.items():
            if ack.startswith("error"):
                log.error("knobs key %s: %s", key, ack)
        # Fresh figures with every acknowledgement: a test that sets knobs reads current stats.
        summary = self.summary()
        update["stats.json"] = json.dumps(summary, sort_keys=True)
        self.board.update(update)

    def _window_state(self, key: str) -> dict[str, str | None]:
        """`refusing` (and a timer that will say `open`) or `open`, for one window key."""
        end = self.source.window_ends(key)
        if end is None:
            return {}
        now = time.monotonic()
        if end <= now:
            return {f"webhook.{key}": "open"}
        timer = threading.Timer(end - now + 0.05, self._window_closed, args=(key, end))
        timer.daemon = True
        timer.start()
        self._timers.append(timer)
        return {f"webhook.{key}": "refusing"}

    def _window_closed(self, key: str, end: float) -> None:
        if self.source.window_ends(key) == end and not self.stopped.is_set():
            self.board.set(**{f"webhook.{key}": "open"})

    def renew_lease(self) -> None:
        spec = {
            "holderIdentity": self.instance,
            "leaseDurationSeconds": 15,
            "renewTime": now_micro(),
        }
        try:
            self.kube.patch(LEASES, SYSTEM_NS, SIM_LEASE, {"spec": spec})
        except KubeError as exc:
            if not exc.not_found:
                raise
            body = {
                "metadata": {"name": SIM_LEASE},
                "spec": {**spec, "acquireTime": spec["renewTime"]},
            }
            self.kube.create(LEASES, SYSTEM_NS, body)

    def _background(self) -> None:
        while not self.stopped.wait(1.0):
            try:
                if self.source.load_file():
                    self.source.rebuild()
                    log.info("knobs file reloaded")
                tick = int(time.monotonic())
                if tick % 5 == 0:
                    self.renew_lease()
                    self.publish_stats()
            except Exception as exc:
                log.warning("background: %s", exc)

    def summary(self) -> dict[str, Any]:
        """Reaction latencies, transitions per kind, and the work queues (engine.py)."""
        return {
            **self.engine.stats.summary(),
            "queues": self.engine.queues(),
            "instance": self.instance,
        }

    def publish_stats(self) -> None:
        summary = self.summary()
        text = json.dumps(summary, sort_keys=True)
        if text != self._last_stats:
            self.board.set(**{"stats.json": text})
            self._last_stats = text

    def stop(self) -> None:
        self.stopped.set()
        for timer in self._timers:
            timer.cancel()
        self.engine.stop()
        for informer in self.informers.values():
            informer.stop()
        try:
            self.publish_stats()
            self.board.set(ready=None)
            self.kube.delete(LEASES, SYSTEM_NS, SIM_LEASE)
        except Exception as exc:
            log.warning("stopping: %s", exc)
        if self.webhook is not None:
            self.webhook.unregister(self.kube)
            self.webhook.stop()
