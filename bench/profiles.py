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

    def describe(self) -> str:
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
PROFILES = {p.name: p for p in (ZERO, REALISTIC)}
