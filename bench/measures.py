"""Figures from run records: pure functions over the JSON the harness saves (results.json),
so the report can be re-rendered from a saved run (`python -m bench --report-only`)."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

from bench.observe import PLAN_COMPLETE, WATCHED
from bench.stage import FS_CONTENDER, FS_DISCOVERY, FS_LAUNCHER

Run = dict[str, Any]
WAITED_STEPS = tuple(w.step for w in WATCHED if w.step != PLAN_COMPLETE)


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def median(values: Iterable[float]) -> float | None:
    vals = list(values)
    return statistics.median(vals) if vals else None


def select(runs: list[Run], *, contender: str, kind: str, n: int | None = None) -> list[Run]:
    return [
        r
        for r in runs
        if r["contender"] == contender and r["kind"] == kind and (n is None or len(r["users"]) == n)
    ]


def reaction_samples(run: Run) -> list[float]:
    """Seconds from an object reaching the state a step waits for (seen by the bench's watch)
    to the contender finishing that step."""
    ready = {(u, s): t for u, s, t in run["ready_at"]}
    awaits = run.get("awaits") or {}
    out = []
    for user, step, finished in run["marks"]:
        key = (user, awaits.get(step, step))
        if step in WAITED_STEPS and key in ready:
            out.append(finished - ready[key])
    return out


def requests(run: Run) -> dict[str, float]:
    flows = run["flows"]
    discovery = flows.get(FS_DISCOVERY, 0)
    total = flows.get(FS_CONTENDER, 0) + discovery
    n = max(1, len(run["users"]))
    procs = max(1, run.get("processes") or 1)
    return {
        "total": total,
        "per_user": total / n,
        "discovery": discovery,
        "discovery_per_process": discovery / procs,
        "launcher": flows.get(FS_LAUNCHER, 0),
    }


def per_user_wall(runs: list[Run], contender: str, kind: str) -> float | None:
    return median(r["wall_s"] for r in select(runs, contender=contender, kind=kind, n=1))


def fleet(runs: list[Run], contender: str) -> dict[int, dict[str, Any]]:
    """N -> wall time, failures, whether measured; sequential peers are extrapolated."""
    out: dict[int, dict[str, Any]] = {}
    for r in runs:
        if r["contender"] == contender and r["kind"] in ("fleet", "realistic"):
            n = len(r["users"])
            prev = out.get(n)
            if prev is None or r["kind"] == "fleet":
                out[n] = {"wall_s": r["wall_s"], "failures": r["failures"], "measured": True}
    return dict(sorted(out.items()))


def extrapolate_sequential(measured: dict[int, dict[str, Any]], ns: list[int]) -> None:
    """A sequential peer provisions one user after another: wall(N) = N x (per-user time),
    with the per-user time taken from its largest measured N."""
    if not measured:
        return
    base_n = max(measured)
    per_user = measured[base_n]["wall_s"] / base_n
    for n in ns:
        if n not in measured:
            measured[n] = {"wall_s": per_user * n, "failures": None, "measured": False}


def rss(runs: list[Run], contender: str) -> list[float]:
    return [m for r in runs if r["contender"] == contender for m in r["rss_mib"]]


def ratio(peer: float | None, ours: float | None, floor: float = 0.0) -> str:
    """peer / ours; when ours is below what the method resolves (`floor`), a lower bound."""
    if peer is None or ours is None or peer <= 0:
        return "-"
    if ours < max(floor, 1e-9):
        return f"> {peer / floor:.0f}x" if floor else "-"
    value = peer / ours
    return f"{value:.0f}x" if value >= 100 else f"{value:.1f}x"


def fmt_s(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f} s"


def fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f} ms"
