"""Behaviour knobs: per kind and per user, a delay (seeded jitter) and an injected failure.

Sources, later ones winning: the profile (`fast` default, `realistic`, `instant`), the YAML file
(--knobs or $DEVCLUSTER_SIM_KNOBS, re-read when its mtime changes), then every key of the
ConfigMap devcluster-system/devcluster-sim-knobs in key order (each value one YAML document of
the same shape; tests write one key per user). Document shape:

    profile: fast                 # fast | realistic | capacity | instant
    seed: 1                       # jitter is a pure function of seed, kind, object and step
    jitter: 0.5                   # +/- fraction of each delay
    delay: 0.2                    # default seconds before each simulated transition
    delays: {ServiceMeshControlPlane: 0.5}
    workers: {ServiceMeshControlPlane: 1}   # a work queue with this many workers (default: none)
    service: {ServiceMeshControlPlane: 2}   # seconds a worker spends per reconcile (jittered)
    webhook: {refuse_seconds: 2, mode: deny}     # SMCP admission refused after sim start
    mesh_operator: "2.4"          # the OSSM operator release: which SMCP versions it accepts
    rules:                        # later matching rules override earlier ones, per field
      - {user: user7, kind: CSV, fail: "InstallComponentFailed: deployment not ready"}
      - {user: user3, kind: SMCP, delay: 30}
      - {user: user5, kind: webhook, refuse_for: 5}   # window opens when the rule is loaded

A delay applies to *each* transition of that kind (an SMCP goes through three), so "SMCP takes
30 s for user3" is `delay: 10`. Kinds: CatalogSource, Subscription, InstallPlan,
ClusterServiceVersion (CSV), OperatorGroup, CopiedCSV, ServiceMeshControlPlane (SMCP),
ServiceMeshMemberRoll (SMMR), ServiceMeshMember (SMM), Kiali, ProjectRequest, webhook.

`delay` is time the object waits without occupying the operator (components becoming ready, a
requeue); `service` is the operator's own work per reconcile and occupies one of the kind's
`workers` (devcluster/sim/engine.py). Profile `capacity` sets upstream's worker counts and
scaled reconcile lengths (sources: docs/fidelity.md, "Controller capacity").
"""

from __future__ import annotations

import fnmatch
import random
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from devcluster.sim.objects import user_of

# The OpenShift Service Mesh operator releases the simulator can be (devcluster/sim/maistra.py
# has what each supports).
MESH_OPERATOR_RELEASES = ("2.4", "2.5")

KIND_ALIASES = {
    "csv": "ClusterServiceVersion",
    "clusterserviceversion": "ClusterServiceVersion",
    "catalogsource": "CatalogSource",
    "subscription": "Subscription",
    "installplan": "InstallPlan",
    "operatorgroup": "OperatorGroup",
    "copiedcsv": "CopiedCSV",
    "smcp": "ServiceMeshControlPlane",
    "servicemeshcontrolplane": "ServiceMeshControlPlane",
    "smmr": "ServiceMeshMemberRoll",
    "servicemeshmemberroll": "ServiceMeshMemberRoll",
    "smm": "ServiceMeshMember",
    "servicemeshmember": "ServiceMeshMember",
    "kiali": "Kiali",
    "projectrequest": "ProjectRequest",
    "webhook": "webhook",
    "*": "*",
}

DEFAULT_FAILURE = {
    "CatalogSource": ("TRANSIENT_FAILURE", "simulated: catalog source unreachable"),
    "Subscription": ("ConstraintsNotSatisfiable", "simulated: no operators found in channel"),
    "InstallPlan": ("InstallComponentFailed", "simulated: install step failed"),
    "ClusterServiceVersion": (
        "InstallComponentFailed",
        "install strategy failed: simulated: deployment did not become available",
    ),
    "ServiceMeshControlPlane": ("ReconcileError", "simulated: istiod chart failed to render"),
    "ServiceMeshMemberRoll": ("ReconcileError", "simulated: could not configure member"),
    "ServiceMeshMember": ("ReconcileError", "simulated: could not add member"),
    "Kiali": ("Failed", "simulated: kiali deployment failed"),
}

# Upstream's workers per controller (docs/fidelity.md, "Controller capacity"): Maistra's
# controlPlaneReconcilers 1, memberRollReconcilers 1, memberReconcilers 10; Kiali's
# ansible-operator max-concurrent-reconciles = the node's CPUs (4 here); OLM's queue informers
# 2 workers per queue.
CAPACITY_WORKERS: dict[str, int] = {
    "ServiceMeshControlPlane": 1,
    "ServiceMeshMemberRoll": 1,
    "ServiceMeshMember": 10,
    "Kiali": 4,
    "ClusterServiceVersion": 2,
    "InstallPlan": 2,
    "Subscription": 2,
    "CatalogSource": 2,
}
# A real cluster's seconds of operator work per reconcile (one pass; Kiali: one playbook run).
CAPACITY_SERVICE: dict[str, float] = {
    "ServiceMeshControlPlane": 10.0,
    "ServiceMeshMemberRoll": 2.0,
    "ServiceMeshMember": 1.0,
    "Kiali": 30.0,
    "ClusterServiceVersion": 1.0,
    "InstallPlan": 1.0,
    "Subscription": 1.0,
    "CatalogSource": 1.0,
}
# A real cluster's seconds an object waits between passes without occupying its operator.
# 0: the kind's follow-up writes are done by the same reconcile (the member roll configures the
# namespace, updates Kiali and writes its status in one pass upstream).
CAPACITY_PAUSES: dict[str, float] = {
    "ServiceMeshControlPlane": 20.0,
    "ServiceMeshMemberRoll": 0.0,
    "ServiceMeshMember": 0.0,
    "Kiali": 0.0,
    "ClusterServiceVersion": 10.0,
    "CatalogSource": 10.0,
    "InstallPlan": 2.0,
    "Subscription": 2.0,
}
CAPACITY_SCALE = 10.0

PROFILES: dict[str, dict[str, Any]] = {
    # Tests: every transition 0.1-0.3 s, webhook refuses for the first 2 s.
    "fast": {
        "delay": 0.2,
        "jitter": 0.5,
        "delays": {"ServiceMeshControlPlane": 0.3, "CopiedCSV": 0.05},
        "webhook": {"refuse_seconds": 2.0, "mode": "deny"},
    },
    # Demo and bench: roughly what a real cluster takes.
    "realistic": {
        "delay": 2.0,
        "jitter": 0.3,
        "delays": {
            "CatalogSource": 8.0,
            "Subscription": 3.0,
            "InstallPlan": 2.0,
            "ClusterServiceVersion": 6.0,
            "OperatorGroup": 1.0,
            "CopiedCSV": 1.0,
            "ServiceMeshControlPlane": 15.0,
            "ServiceMeshMemberRoll": 2.0,
            "ServiceMeshMember": 2.0,
            "Kiali": 10.0,
            "ProjectRequest": 0.5,
        },
        "webhook": {"refuse_seconds": 30.0, "mode": "deny"},
    },
    # Fleets against operator capacity: upstream's worker counts and reconcile lengths, every
    # duration a real cluster's divided by CAPACITY_SCALE (docs/fidelity.md, "Controller
    # capacity", gives each figure's source and what it means at this scale).
    "capacity": {
        "delay": 0.1,
        "jitter": 0.2,
        "delays": {k: v / CAPACITY_SCALE for k, v in CAPACITY_PAUSES.items()},
        "service": {k: v / CAPACITY_SCALE for k, v in CAPACITY_SERVICE.items()},
        "workers": dict(CAPACITY_WORKERS),
        "webhook": {"refuse_seconds": 0.0, "mode": "deny"},
    },
    # Latency measurements: react as fast as the machinery allows.
    "instant": {"delay": 0.0, "jitter": 0.0, "webhook": {"refuse_seconds": 0.0}},
}

_REASON = re.compile(r"^([A-Z][A-Za-z]+|[A-Z_]+):\s*(.*)$", re.DOTALL)


class KnobError(ValueError):
    """A knobs document does not have the documented shape."""


def canonical_kind(kind: str) -> str:
    try:
        return KIND_ALIASES[kind.lower()]
    except KeyError:
        known = sorted(set(KIND_ALIASES.values()))
        raise KnobError(f"unknown kind {kind!r} (one of {known})") from None


@dataclass(frozen=True)
class Failure:
    reason: str
    message: str


@dataclass(frozen=True)
class Rule:
    kind: str = "*"
    user: str = "*"
    namespace: str = "*"
    name: str = "*"
    delay: float | None = None
    jitter: float | None = None
    fail: Failure | None = None
    refuse_for: float | None = None
    source: str = ""

    def matches(self, kind: str, user: str, namespace: str, name: str) -> bool:
        return (
            self.kind in ("*", kind)
            and fnmatch.fnmatchcase(user, self.user)
            and fnmatch.fnmatchcase(namespace, self.namespace)
            and fnmatch.fnmatchcase(name, self.name)
        )

    @property
    def window_id(self) -> str:
        return f"{self.source}|{self.user}|{self.namespace}|{self.refuse_for}"


def parse_failure(kind: str, value: Any) -> Failure | None:
    if value in (None, False):
        return None
    default_reason, default_message = DEFAULT_FAILURE.get(kind, ("Failed", "simulated failure"))
    if value is True:
        return Failure(default_reason, default_message)
    if isinstance(value, Mapping):
        return Failure(
            str(value.get("reason", default_reason)), str(value.get("message", default_message))
        )
    text = str(value)
    match = _REASON.match(text)
    if match:
        return Failure(match.group(1), match.group(2) or default_message)
    return Failure(default_reason, text)


def parse_rule(raw: Any, source: str) -> Rule:
    if not isinstance(raw, Mapping):
        raise KnobError(f"{source}: a rule must be a mapping, got {raw!r}")
    unknown = set(raw) - {
        "kind",
        "user",
        "namespace",
        "name",
        "delay",
        "jitter",
        "fail",
        "refuse_for",
    }
    if unknown:
        raise KnobError(f"{source}: unknown rule fields {sorted(unknown)}")
    kind = canonical_kind(str(raw.get("kind", "*")))
    return Rule(
        kind=kind,
        user=str(raw.get("user", "*")),
        namespace=str(raw.get("namespace", "*")),
        name=str(raw.get("name", "*")),
        delay=_float(raw.get("delay"), source),
        jitter=_float(raw.get("jitter"), source),
        fail=parse_failure(kind, raw.get("fail")),
        refuse_for=_float(raw.get("refuse_for"), source),
        source=source,
    )


def _float(value: Any, source: str) -> float | None:
    if value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise KnobError(f"{source}: {value!r} is not a number of seconds") from None
    if out < 0:
        raise KnobError(f"{source}: {value!r} is negative")
    return out


@dataclass
class Knobs:
    """An immutable-by-convention snapshot; `window_starts` is shared across reloads."""

    seed: int = 1
    jitter: float = 0.5
    delay: float = 0.2
    delays: dict[str, float] = field(default_factory=dict)
    workers: dict[str, int] = field(default_factory=dict)
    service: dict[str, float] = field(default_factory=dict)
    rules: list[Rule] = field(default_factory=list)
    refuse_seconds: float = 2.0
    webhook_mode: str = "deny"
    user_suffixes: tuple[str, ...] = ("-istio",)
    kiali_observed_generation: bool = False
    mesh_operator: str = "2.4"
    started_at: float = field(default_factory=time.monotonic)
    window_starts: dict[str, float] = field(default_factory=dict)

    def user(self, namespace: str) -> str:
        return user_of(namespace, self.user_suffixes)

    def _rules(self, kind: str, namespace: str, name: str) -> Iterable[Rule]:
        user = self.user(namespace or name)
        return (r for r in self.rules if r.matches(kind, user, namespace, name))

    def delay_for(self, kind: str, namespace: str, name: str, step: str) -> float:
        base = self.delays.get(kind, self.delay)
        jitter = self.jitter
        for rule in self._rules(kind, namespace, name):
            if rule.delay is not None:
                base = rule.delay
            if rule.jitter is not None:
                jitter = rule.jitter
        if base <= 0:
            return 0.0
        u = random.Random(f"{self.seed}|{kind}|{namespace}/{name}|{step}").random()
        return max(0.0, base * (1.0 + jitter * (2.0 * u - 1.0)))

    def workers_for(self, kind: str) -> int:
        """The kind's work-queue workers; 0: no queue, every object served in parallel."""
        return self.workers.get(kind, 0)

    def service_for(self, kind: str, namespace: str, name: str, step: str) -> float:
        """Seconds one of the kind's workers spends on this transition (jittered like delays)."""
        base = self.service.get(kind, 0.0)
        if base <= 0:
            return 0.0
        u = random.Random(f"{self.seed}|service|{kind}|{namespace}/{name}|{step}").random()
        return max(0.0, base * (1.0 + self.jitter * (2.0 * u - 1.0)))

    def failure(self, kind: str, namespace: str, name: str) -> Failure | None:
        found: Failure | None = None
        for rule in self._rules(kind, namespace, name):
            if rule.fail is not None:
                found = rule.fail
        return found

    def refusal_windows(self, namespace: str, now: float | None = None) -> list[float]:
        """End times (monotonic) of the webhook refusal windows covering `namespace` now."""
        now = time.monotonic() if now is None else now
        ends = []
        if now < self.started_at + self.refuse_seconds:
            ends.append(self.started_at + self.refuse_seconds)
        for rule in self._rules("webhook", namespace, ""):
            if rule.refuse_for is None:
                continue
            start = self.window_starts.setdefault(rule.window_id, now)
            if now < start + rule.refuse_for:
                ends.append(start + rule.refuse_for)
        return ends

    def refusing(self, namespace: str, now: float | None = None) -> bool:
        return bool(self.refusal_windows(namespace, now))


def build(
    docs: Iterable[tuple[str, Any]],
    *,
    profile: str = "fast",
    started_at: float | None = None,
    window_starts: dict[str, float] | None = None,
) -> Knobs:
    """Fold (source, document) pairs over a profile into one Knobs snapshot."""
    docs = [(src, doc) for src, doc in docs if doc]
    for src, doc in docs:
        if not isinstance(doc, Mapping):
            raise KnobError(f"{src}: a knobs document must be a mapping")
        profile = str(doc.get("profile", profile))
    if profile not in PROFILES:
        raise KnobError(f"unknown profile {profile!r} (one of {sorted(PROFILES)})")
    knobs = Knobs(started_at=time.monotonic() if started_at is None else started_at)
    if window_starts is not None:
        knobs.window_starts = window_starts
    _apply(knobs, PROFILES[profile], f"profile {profile}")
    for src, doc in docs:
        _apply(knobs, doc, src)
    return knobs


def _apply(knobs: Knobs, doc: Mapping[str, Any], src: str) -> None:
    unknown = set(doc) - {
        "profile",
        "seed",
        "jitter",
        "delay",
        "delays",
        "workers",
        "service",
        "webhook",
        "rules",
        "user_suffixes",
        "kiali_observed_generation",
        "mesh_operator",
    }
    if unknown:
        raise KnobError(f"{src}: unknown fields {sorted(unknown)}")
    if "seed" in doc:
        knobs.seed = int(doc["seed"])
    if (j := _float(doc.get("jitter"), src)) is not None:
        knobs.jitter = j
    if (d := _float(doc.get("delay"), src)) is not None:
        knobs.delay = d
    for field_name, target in (("delays", knobs.delays), ("service", knobs.service)):
        for kind, value in (doc.get(field_name) or {}).items():
            seconds = _float(value, src)
            if seconds is not None:
                target[canonical_kind(kind)] = seconds
    for kind, value in (doc.get("workers") or {}).items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise KnobError(f"{src}: workers {value!r} is not a whole number >= 0")
        knobs.workers[canonical_kind(kind)] = value
    webhook = doc.get("webhook") or {}
    if (r := _float(webhook.get("refuse_seconds"), src)) is not None:
        knobs.refuse_seconds = r
    if "mode" in webhook:
        if webhook["mode"] not in ("deny", "unavailable"):
            raise KnobError(f"{src}: webhook.mode must be deny or unavailable")
        knobs.webhook_mode = webhook["mode"]
    if "user_suffixes" in doc:
        knobs.user_suffixes = tuple(doc["user_suffixes"])
    if "kiali_observed_generation" in doc:
        knobs.kiali_observed_generation = bool(doc["kiali_observed_generation"])
    if "mesh_operator" in doc:
        release = str(doc["mesh_operator"])
        if release not in MESH_OPERATOR_RELEASES:
            raise KnobError(f"{src}: mesh_operator must be one of {list(MESH_OPERATOR_RELEASES)}")
        knobs.mesh_operator = release
    for i, raw in enumerate(doc.get("rules") or []):
        knobs.rules.append(parse_rule(raw, f"{src}#{i}"))
