"""The capacity section of bench/REPORT.md: fleets against the simulated operators' work queues.

The limit of a fleet is its bottleneck controller's total work divided by that controller's
workers: the simulators report, per work-queued kind, the seconds its workers spent in service
(`busy_seconds`, devcluster/sim/engine.py); no schedule can finish that work sooner than
busy_seconds / workers. A fleet's wall time ÷ its limit says how close to the operators'
capacity the contender drives them (1.00x: the bottleneck never idled).
"""

from __future__ import annotations

from typing import Any

from bench import measures as m
from devcluster.sim.knobs import CAPACITY_SCALE
from steps import smcp

START = "<!-- capacity section: written by `python -m bench --capacity` -->"
END = "<!-- end of capacity section -->"
KIND = "capacity"
GOAL_RATIO = 1.15
GOAL_CPU_PER_USER = 0.3  # CPU-s of one runner in a pod (issue 15's start-up goal)
SHORT = {
    "ServiceMeshControlPlane": "SMCP",
    "ServiceMeshMemberRoll": "SMMR",
    "ServiceMeshMember": "SMM",
    "Kiali": "Kiali",
    "ClusterServiceVersion": "CSV",
    "InstallPlan": "InstallPlan",
    "Subscription": "Subscription",
    "CatalogSource": "CatalogSource",
}
# Reconciles per user the real operators need for one user's objects on the steps' path
# (docs/fidelity.md, "Reconciles the runner causes"): SMCP 4 (Maistra's finalizer added, then
# the install's 3 passes: begin, installed, ready); member roll 3 (the finalizer added, then
# members created and Kiali told, then Configured once the member controller reported); Kiali
# 3 - one run for the CR the SMCP creates, one for the member roll's update, one for the
# runner's excluded_workloads unless it finds a run still queued.
NEEDED = {"ServiceMeshControlPlane": 4, "ServiceMeshMemberRoll": 3, "Kiali": 3}


def limit(run: m.Run) -> tuple[float, str] | None:
    """(seconds, kind) of the bottleneck controller in one run, or None without queue data."""
    queues = (run.get("reported", {}).get("sim") or {}).get("queues") or {}
    best: tuple[float, str] | None = None
    for kind, q in queues.items():
        if q.get("workers"):
            seconds = q["busy_seconds"] / q["workers"]
            if best is None or seconds > best[0]:
                best = (seconds, kind)
    return best


def busy_fractions(run: m.Run) -> dict[str, float]:
    """Per queued kind: busy seconds / (workers x the run's wall time)."""
    queues = (run.get("reported", {}).get("sim") or {}).get("queues") or {}
    wall = run["wall_s"]
    return {
        kind: q["busy_seconds"] / (q["workers"] * wall)
        for kind, q in queues.items()
        if q.get("workers") and wall > 0
    }


def reconciles_per_user(run: m.Run) -> dict[str, float]:
    queues = (run.get("reported", {}).get("sim") or {}).get("queues") or {}
    n = max(1, len(run["users"]))
    return {kind: q["reconciles"] / n for kind, q in queues.items() if q.get("reconciles")}


def timeouts(run: m.Run) -> int | None:
    """Users whose runner ended with exit 5 (a wait's deadline), from the launch summary."""
    codes = run.get("reported", {}).get("summary_exit_codes")
    if codes is None:
        return None
    return sum(1 for c in codes if c == 5)


def runs(results: dict[str, Any]) -> list[m.Run]:
    return [r for r in results["runs"] if r["kind"] == KIND]


def fleet_runs(results: dict[str, Any], contender: str) -> dict[int, m.Run]:
    return {len(r["users"]): r for r in runs(results) if r["contender"] == contender}


def contenders(results: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys(r["contender"] for r in runs(results)))


def ratio_text(wall: float, lim: float | None) -> str:
    return "-" if not lim else f"{wall / lim:.2f}x"


def runner_cpu_per_user(run: m.Run) -> float | None:
    seconds = (run.get("cpu") or {}).get("seconds") or {}
    return seconds["runner"] / len(run["users"]) if seconds.get("runner") else None


def cpu_line(results: dict[str, Any], ours: str) -> str:
    """The runner's CPU per user in the largest fleet, and the share spent before its first
    step (interpreter start and imports, measured apart in fresh interpreters)."""
    start = results.get("start_cpu") or {}
    by_n = fleet_runs(results, ours)
    if not by_n:
        return ""
    n = max(by_n)
    per_user = runner_cpu_per_user(by_n[n])
    if per_user is None or not start:
        return ""
    before = start["interpreter"] + start["imports"]
    return (
        f"Runner CPU per user (N = {n}, in a pod): {per_user:.2f} CPU-s, of which about "
        f"{before:.2f} s ({before / per_user:.0%}) is interpreter start "
        f"({start['interpreter']:.2f} s) and imports ({start['imports']:.2f} s), measured "
        "apart as the median of 7 fresh interpreters on the same machine."
    )


def table(results: dict[str, Any]) -> list[str]:
    head = "| contender | N | wall | limit (bottleneck) | wall ÷ limit | failed | timeouts |"
    head += " busy fraction per controller | reconciles per user | runner CPU-s per user |"
    lines = [head, "|" + "---|" * 10]
    for who in contenders(results):
        for n, run in sorted(fleet_runs(results, who).items()):
            lim = limit(run)
            busy = busy_fractions(run)
            per_user = reconciles_per_user(run)
            t = timeouts(run)
            cells = [
                who,
                str(n),
                m.fmt_s(run["wall_s"], 1),
                f"{m.fmt_s(lim[0], 1)} ({SHORT.get(lim[1], lim[1])})" if lim else "-",
                ratio_text(run["wall_s"], lim[0] if lim else None),
                str(run["failures"]),
                "-" if t is None else str(t),
                ", ".join(f"{SHORT.get(k, k)} {v:.0%}" for k, v in sorted(busy.items())) or "-",
                ", ".join(f"{SHORT.get(k, k)} {v:.1f}" for k, v in sorted(per_user.items())) or "-",
                "-" if (cpu := runner_cpu_per_user(run)) is None else f"{cpu:.2f}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def points(results: dict[str, Any]) -> dict[str, list[list[Any]]]:
    """For plot.py: wall time vs N per contender (sequential peers extrapolated from their
    N = 2 run), and the limit per N (from the largest-N runs of the first contender)."""
    out: dict[str, list[list[Any]]] = {}
    sizes = sorted({len(r["users"]) for r in runs(results)})
    limits: dict[int, float] = {}
    for who in contenders(results):
        by_n = fleet_runs(results, who)
        measured = {n: {"wall_s": r["wall_s"], "measured": True} for n, r in by_n.items()}
        if set(by_n) == {2}:
            m.extrapolate_sequential(measured, sizes)
        out[who] = [[n, p["wall_s"], p["measured"]] for n, p in sorted(measured.items())]
        for n, r in by_n.items():
            lim = limit(r)
            if lim and n not in limits and n > 2:
                limits[n] = lim[0]
    out["limit: bottleneck controller's work ÷ its workers"] = [
        [n, s, True] for n, s in sorted(limits.items())
    ]
    return out


def goal_rows(results: dict[str, Any], ours: str) -> list[tuple[str, str, bool | None]]:
    """(goal, measured, met) for the goals table: the N = 100 fleet against the limit."""
    run = fleet_runs(results, ours).get(100)
    if run is None:
        return [(f"N = 100, capacity profile: wall ≤ {GOAL_RATIO:.2f}x the limit", "-", None)]
    lim = limit(run)
    t = timeouts(run)
    per_user = reconciles_per_user(run)
    extra = {k: v for k, v in per_user.items() if k in NEEDED and v > NEEDED[k] + 1e-9}
    cpu = runner_cpu_per_user(run)
    return [
        (
            f"N = 100, capacity profile: fleet wall time ≤ {GOAL_RATIO:.2f}x the capacity limit",
            f"{ratio_text(run['wall_s'], lim[0] if lim else None)} ({m.fmt_s(run['wall_s'], 1)}"
            f" against {m.fmt_s(lim[0] if lim else None, 1)})",
            None if not lim else run["wall_s"] / lim[0] <= GOAL_RATIO,
        ),
        (
            "N = 100, capacity profile: 0 failures, 0 timeouts (default deadlines)",
            f"{run['failures']} failed, {'-' if t is None else t} timeouts",
            run["failures"] == 0 and t == 0 if t is not None else None,
        ),
        (
            "N = 100, capacity profile: no more reconciles per user than the operators need "
            f"({', '.join(f'{SHORT[k]} {v}' for k, v in NEEDED.items())})",
            ", ".join(f"{SHORT.get(k, k)} {per_user.get(k, 0):.2f}" for k in NEEDED),
            not extra if per_user else None,
        ),
        (
            "N = 100, capacity profile: runner CPU per user in a pod ≤ "
            f"{GOAL_CPU_PER_USER:.2f} CPU-s",
            "-" if cpu is None else f"{cpu:.2f} CPU-s",
            None if cpu is None else cpu <= GOAL_CPU_PER_USER,
        ),
    ]


def section(results: dict[str, Any], plot_name: str, ours: str) -> list[str]:
    started = results.get("meta", {}).get("started", "?")
    out = [
        START,
        "## Fleets against operator capacity (capacity profile)",
        "",
        f"Generated by `python -m bench --capacity` ({started}). The simulated operators serve "
        "their objects through work queues with upstream's worker counts (SMCP 1, SMMR 1, "
        "SMM 10, Kiali 4, OLM 2 per kind) and reconcile lengths scaled by one factor "
        '(docs/fidelity.md, "Controller capacity"). The limit is the bottleneck controller\'s '
        "busy seconds divided by its workers, from the simulators' own accounting; a "
        "sequential peer is measured at N = 2 and extrapolated.",
        "",
        "| goal | measured | met? |",
        "|---|---|---|",
    ]
    out += goal_table_rows(results, ours)
    big = fleet_runs(results, ours)
    if big and (lim := limit(big[max(big)])):
        out += [
            "",
            f"Calibration: every duration of the profile is a real cluster's divided by "
            f"{CAPACITY_SCALE:g}, for every kind alike, so each second here is "
            f"{CAPACITY_SCALE:g} s on a cluster whose operators take those times: the N = "
            f"{max(big)} limit of {lim[0]:.0f} s stands for about "
            f"{lim[0] * CAPACITY_SCALE / 60:.0f} minutes of {SHORT.get(lim[1], lim[1])} work. "
            "The runner pods' operator waits are scaled alike (WORKSHOP_RUNNER_DEADLINE_SCALE "
            f"= 1/{CAPACITY_SCALE:g}: the smcp step's {smcp.TIMEOUT:g} s stall window and "
            f"{smcp.CAP:g} s cap are {smcp.TIMEOUT / CAPACITY_SCALE:g} s and "
            f"{smcp.CAP / CAPACITY_SCALE:g} s here), so a timeout here is one the default "
            "deadlines would have on a real cluster of that size.",
        ]
    out += ["", *table(results), ""]
    if line := cpu_line(results, ours):
        out += [line, ""]
    out += [f"![fleet wall time vs N, capacity profile]({plot_name})", ""]
    out += [END]
    return out


def splice(text: str, results: dict[str, Any], plot_name: str, ours: str) -> str:
    """Replace the capacity section of REPORT.md (or insert it before "## Machine"), and put
    its goal rows into the report's own goals table."""
    new = "\n".join(section(results, plot_name, ours))
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + new + rest.split(END, 1)[1]
    elif "## Machine" in text:
        head, tail = text.split("## Machine", 1)
        text = head + new + "\n\n## Machine" + tail
    else:
        text = text.rstrip("\n") + "\n\n" + new + "\n"
    return splice_goals(text, goal_table_rows(results, ours))


GOALS_HEAD = "## Goals\n\n| goal | measured | met? |\n|---|---|---|\n"
ROW_PREFIX = "| N = 100, capacity profile"


def goal_table_rows(results: dict[str, Any], ours: str) -> list[str]:
    out = []
    for goal, measured, ok in goal_rows(results, ours):
        verdict = "not measured" if ok is None else ("yes" if ok else "**no**")
        out.append(f"| {goal} | {measured} | {verdict} |")
    return out


def splice_goals(text: str, rows: list[str]) -> str:
    """The report's goals table (## Goals) with `rows` in place of its capacity rows."""
    if GOALS_HEAD not in text:
        return text
    head, rest = text.split(GOALS_HEAD, 1)
    table, sep, tail = rest.partition("\n\n")
    kept = [line for line in table.split("\n") if line and not line.startswith(ROW_PREFIX)]
    return head + GOALS_HEAD + "\n".join(kept + rows) + sep + tail
