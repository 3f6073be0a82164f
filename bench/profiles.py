"""Operator delay profiles, the same for every contender (devcluster.sim knobs documents).

`zero`: every simulated transition as fast as the simulator can make it, so a contender's
wall time is its own overhead. `realistic`: per-kind operator times scaled down from a real
cluster (where a CatalogSource takes ~10-30 s, an SMCP 1-3 min) but kept proportionate, so
the whole bench fits in ~25 minutes on 2 cores. Jitter is off and the SMCP admission webhook
refuses nothing, so every contender meets exactly the same operator behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from devcluster.sim.knobs import CAPACITY_PAUSES, CAPACITY_SCALE, CAPACITY_SERVICE, CAPACITY_WORKERS

# Seconds from the event that makes a transition due to the operator's status write, per
# kind, as the operator's total time for the object (the simulator may split it over several
# transitions; `TRANSITIONS` says how many it uses, so the per-transition delay is total/n).
REALISTIC_TOTALS: dict[str, float] = {
    "CatalogSource": 2.0,
    "Subscription": 1.0,
    "InstallPlan": 2.0,
    "ClusterServiceVersion": 5.0,
    "ServiceMeshControlPlane": 8.0,
    "ServiceMeshMemberRoll": 1.0,
    "Kiali": 2.0,
}
# Transitions the simulator (devcluster/sim) performs per object on the path the steps take:
# CatalogSource "" -> CONNECTING -> READY; InstallPlan -> RequiresApproval, then after the
# approval -> Installing -> Complete; CSV -> Pending -> InstallReady -> Installing ->
# Succeeded; SMCP begin -> installed -> ready; Kiali running -> successful (per generation).
TRANSITIONS: dict[str, int] = {
    "CatalogSource": 2,
    "InstallPlan": 3,
    "ClusterServiceVersion": 4,
    "ServiceMeshControlPlane": 3,
    "Kiali": 2,
}
OTHER_KINDS_DELAY = 0.2


@dataclass(frozen=True)
class Profile:
    name: str
    knobs: dict[str, Any]
    totals: dict[str, float]
    # The runner pods' WORKSHOP_RUNNER_DEADLINE_SCALE: a profile that runs the operators N times
    # faster than a real cluster gives the steps' deadlines (stall window, cap) 1/N of theirs.
    deadline_scale: float = 1.0

    def describe(self) -> str:
        if self.name == "capacity":
            return capacity_describe()
        if not self.totals:
            return "no deliberate operator delay"
        parts = [f"{kind} {secs:g} s" for kind, secs in self.totals.items()]
        return ", ".join(parts) + f"; other transitions {OTHER_KINDS_DELAY:g} s"


def _knobs(delay: float, delays: dict[str, float]) -> dict[str, Any]:
    return {
        "profile": "instant",
        "seed": 1,
        "jitter": 0.0,
        "delay": delay,
        "delays": delays,
        "webhook": {"refuse_seconds": 0.0},
    }


ZERO = Profile("zero", _knobs(0.0, {}), {})
REALISTIC = Profile(
    "realistic",
    _knobs(
        OTHER_KINDS_DELAY,
        {k: round(v / TRANSITIONS.get(k, 1), 3) for k, v in REALISTIC_TOTALS.items()},
    ),
    REALISTIC_TOTALS,
)

# `capacity`: devcluster's own profile of that name (devcluster/sim/knobs.py): upstream's work
# queues (SMCP 1 worker, SMMR 1, SMM 10, Kiali 4, OLM 2 per kind) and every real duration
# divided by one scale factor; sources in docs/fidelity.md, "Controller capacity". Jitter off.
CAPACITY = Profile(
    "capacity",
    {"profile": "capacity", "seed": 1, "jitter": 0.0, "webhook": {"refuse_seconds": 0.0}},
    {},
    deadline_scale=1.0 / CAPACITY_SCALE,
)
PROFILES = {p.name: p for p in (ZERO, REALISTIC, CAPACITY)}


def capacity_describe() -> str:
    parts = []
    for kind, workers in CAPACITY_WORKERS.items():
        service = CAPACITY_SERVICE.get(kind, 0.0) / CAPACITY_SCALE
        pause = CAPACITY_PAUSES.get(kind)
        pause_text = f", pause {pause / CAPACITY_SCALE:g} s" if pause else ""
        parts.append(f"{kind} {workers} worker(s) x {service:g} s per pass{pause_text}")
    return (
        f"real cluster durations / {CAPACITY_SCALE:g}: " + "; ".join(parts) + "; other kinds 0.1 s"
    )
