"""The bench's CPU accounting: /proc parsing and the report's sentence (pure functions)."""

from __future__ import annotations

from bench.observe import CLOCK_TICKS, machine_cpu_ticks, process_cpu_seconds
from bench.report import cpu_line


def test_process_cpu_seconds_survives_a_command_name_with_spaces_and_parens() -> None:
    fields = ["S", "1", "2", "3", "0", "-1", "4194304", "10", "0", "0", "0"]
    utime, stime = 3 * CLOCK_TICKS, CLOCK_TICKS // 2
    line = f"1234 (python3 (x) y) {' '.join(fields)} {utime} {stime} 0 0 20 0 1 0"
    assert process_cpu_seconds(line) == 3.5


def test_machine_cpu_ticks_counts_idle_and_iowait_as_not_busy() -> None:
    proc_stat = "cpu  100 5 50 800 40 3 2 0 7 0\ncpu0 50 2 25 400 20 1 1 0 3 0\n"
    busy, total = machine_cpu_ticks(proc_stat)
    assert total == 100 + 5 + 50 + 800 + 40 + 3 + 2 + 0
    assert busy == total - 800 - 40


def test_cpu_line_names_the_biggest_consumer_first_and_the_wall_time_floor() -> None:
    big = {
        "n": 100,
        "cpu": {
            "machine_busy": 0.97,
            "cores": 2,
            "seconds": {"runner": 80.0, "kube-apiserver": 30.0, "etcd": 10.0},
        },
    }
    line = cpu_line(big)
    assert line.startswith("The machine's 2 cores were 97% busy during the run.")
    assert "runner 80.0 s, kube-apiserver 30.0 s, etcd 10.0 s (0.80 s per runner)" in line
    assert "together 120.0 CPU-seconds, which alone need 60.0 s of wall time on 2 cores" in line


def test_cpu_line_is_empty_for_results_without_cpu_figures() -> None:
    assert cpu_line({"n": 10}) == ""
