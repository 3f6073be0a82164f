"""The benchmark's capacity figures (bench/capacity.py) from synthetic results."""

from __future__ import annotations

from typing import Any

from bench import capacity

OURS = "workshop-runner (launcher)"


def run(n: int, wall: float, smcp_busy: float, kiali_busy: float, **extra: Any) -> dict[str, Any]:
    queues = {
        "ServiceMeshControlPlane": {"workers": 1, "busy_seconds": smcp_busy, "reconciles": 3 * n},
        "Kiali": {"workers": 4, "busy_seconds": kiali_busy, "reconciles": 2 * n},
    }
    return {
        "contender": OURS,
        "kind": "capacity",
        "users": [f"user{i}" for i in range(n)],
        "wall_s": wall,
        "failures": 0,
        "reported": {"sim": {"queues": queues}, "summary_exit_codes": [0] * n, **extra},
    }


def results(*runs: dict[str, Any]) -> dict[str, Any]:
    return {"meta": {"started": "now"}, "runs": list(runs)}


def test_the_limit_is_the_bottleneck_controllers_work_over_its_workers() -> None:
    # SMCP: 300 s on 1 worker; Kiali: 400 s on 4 workers = 100 s.
    assert capacity.limit(run(100, 330.0, 300.0, 400.0)) == (300.0, "ServiceMeshControlPlane")
    assert capacity.limit(run(100, 330.0, 40.0, 400.0)) == (100.0, "Kiali")


def test_busy_fraction_and_reconciles_per_user() -> None:
    r = run(10, 50.0, 25.0, 40.0)
    assert capacity.busy_fractions(r) == {"ServiceMeshControlPlane": 0.5, "Kiali": 0.2}
    assert capacity.reconciles_per_user(r) == {"ServiceMeshControlPlane": 3.0, "Kiali": 2.0}


def test_goal_rows_write_the_ratio_as_a_number_and_x_and_count_timeouts() -> None:
    r = run(100, 321.0, 300.0, 400.0)
    r["reported"]["summary_exit_codes"] = [0] * 98 + [5, 5]
    (ratio, failures, reconciles, cpu) = capacity.goal_rows(results(r), OURS)
    assert ratio[1].startswith("1.07x")
    assert ratio[2] is True
    assert failures[1] == "0 failed, 2 timeouts"
    assert failures[2] is False
    assert reconciles[2] is True  # Kiali 2 per user, where up to 3 are needed
    r["reported"]["sim"]["queues"]["Kiali"]["reconciles"] = 390
    assert capacity.goal_rows(results(r), OURS)[2][2] is False  # 3.9 per user: too many
    assert cpu[1:] == ("-", None)  # the runner pods' CPU was not sampled
    r["cpu"] = {"seconds": {"runner": 28.0}}
    assert capacity.goal_rows(results(r), OURS)[3][1:] == ("0.28 CPU-s", True)
    r["cpu"] = {"seconds": {"runner": 47.0}}
    assert capacity.goal_rows(results(r), OURS)[3][1:] == ("0.47 CPU-s", False)


def test_without_an_n100_fleet_the_goal_is_not_measured() -> None:
    rows = capacity.goal_rows(results(run(10, 40.0, 30.0, 10.0)), OURS)
    assert rows == [(rows[0][0], "-", None)]


def test_splice_replaces_the_section_and_keeps_the_rest() -> None:
    text = "# Report\n\n## Fleet\n\ntable\n\n## Machine\n\n- cores: 2\n"
    once = capacity.splice(text, results(run(10, 40.0, 30.0, 10.0)), "capacity.png", OURS)
    assert once.index("## Fleets against operator capacity") < once.index("## Machine")
    twice = capacity.splice(once, results(run(10, 44.0, 30.0, 10.0)), "capacity.png", OURS)
    assert twice.count(capacity.START) == 1
    assert "44.0 s" in twice
    assert "40.0 s" not in twice
    assert twice.endswith("- cores: 2\n")


def test_points_extrapolate_a_sequential_peer_and_draw_the_limit() -> None:
    peer = run(2, 60.0, 6.0, 6.0)
    peer["contender"] = "bash"
    pts = capacity.points(results(run(10, 40.0, 30.0, 10.0), peer))
    assert pts["bash"] == [[2, 60.0, True], [10, 300.0, False]]
    (limit_label,) = [k for k in pts if k.startswith("limit")]
    assert pts[limit_label] == [[10, 30.0, True]]


def test_cpu_line_gives_the_share_before_the_first_step() -> None:
    r = run(100, 330.0, 300.0, 400.0)
    r["cpu"] = {"seconds": {"runner": 50.0}}
    res = results(r) | {"start_cpu": {"interpreter": 0.02, "imports": 0.23}}
    line = capacity.cpu_line(res, OURS)
    assert "0.50 CPU-s" in line
    assert "about 0.25 s (50%)" in line
    assert capacity.cpu_line(results(r), OURS) == ""  # start-up not measured


def test_the_capacity_goal_rows_replace_their_row_in_the_reports_goals_table() -> None:
    report = (
        "# Benchmark\n\n## Goals\n\n| goal | measured | met? |\n|---|---|---|\n"
        "| overhead per user ≤ 1 s | 0.74 s | yes |\n"
        "| N = 100, capacity profile: old row | 9.99x | **no** |\n\nWhere a goal is missed:\n"
    )
    out = capacity.splice(report, results(run(100, 321.0, 300.0, 400.0)), "c.png", OURS)
    goals = out.split("## Goals", 1)[1].split("\n\n")[1].splitlines()
    assert goals[2] == "| overhead per user ≤ 1 s | 0.74 s | yes |"
    assert goals[3].startswith("| N = 100, capacity profile: fleet wall time ≤ 1.15x")
    assert "| 1.07x (321.0 s against 300.0 s) | yes |" in goals[3]
    assert len(goals) == 7  # four capacity rows, the old one gone
    assert "Where a goal is missed:" in out
    assert capacity.START in out  # and the section itself, at the end
