"""`make bench`: workshop-runner against its peers on devcluster, then bench/REPORT.md and the
plot. `python -m bench --help` for the knobs; `--report-only` re-renders from results.json.

Phases, each on fresh control planes with the simulated operators (see stage.py):
  zero       one user per contender, no operator delay: overhead; process start to first
             API connection (strace)
  realistic  one user per contender with the realistic delay profile: per-user wall time,
             reaction latency, API requests per user
  fleet      N users at once (workshop-runner through the launcher, bash --parallel) for each
             N; the sequential peers (Ansible, bash) measured at N = 2 and extrapolated
  capacity   the same fleets under the `capacity` profile (upstream's operator work queues):
             fleet wall time against the bottleneck controller's limit, busy fractions,
             reconciles per user (`--capacity` runs only this phase and rewrites only the
             report's capacity section)
"""

from __future__ import annotations

import argparse
import compileall
import dataclasses
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import capacity, env, report
from bench import contenders as c
from bench.observe import RssSampler, first_connection, read_machine_cpu, start_cpu_seconds
from bench.profiles import CAPACITY, PROFILES, REALISTIC, ZERO, Profile
from bench.stage import Stage, stage

HERE = Path(__file__).resolve().parent
FLEET_SIZES = [1, 10, 50, 100]
RUNNER_NS = "workshop-runner"
RSS_PATTERNS = {
    "runner": r"workshop-runner run",
    "kubectl": r"/kubectl ",
    "ansible": r"ansible-playbook|AnsiballZ",
    # for CPU time only: where the rest of the machine's CPU goes during a fleet run
    "launcher": r"workshop-runner launch",
    "kube-apiserver": r"/kube-apiserver ",
    "etcd": r"/etcd ",
    "kube-controller-manager": r"/kube-controller-manager ",
    "simulators and kubelet": r"-m devcluster\.sim",
}
METHOD = [
    "The one-user phases (zero, realistic) run the contenders one after another, each with "
    "its own user names, on one fresh control plane and simulator process per phase; every "
    "fleet run gets a fresh control plane and simulator of its own. The simulators run as "
    "the admin, every contender as its own ServiceAccount (cluster-admin); runner pods run "
    "as the launcher's ServiceAccount.",
    "Wall time: from spawning the contender's command to its exit (monotonic clock). For the "
    "launcher, from `workshop-runner launch` to its exit after every Job finished.",
    "Reaction latency: when an object reached the state a step waits for (CatalogSource "
    "READY, the pinned InstallPlan's first phase - Complete for workshop-runner, whose "
    "step approves and then waits for Complete -, the pinned CSV Succeeded, SMCP ready, SMMR "
    "Configured with the member, Kiali's first successful reconciliation after the change) "
    "is the earlier of the simulator's own log line for that transition (written after its "
    "status write returned) and a cluster-wide watch in the bench; the contender's step-end "
    "time (runner: its JSON 'step finished' line; Ansible: a callback plugin at task end; "
    "bash: a line it writes) minus that. Both reference times come slightly after the real "
    "change, so the method resolves a few milliseconds; values around 0 (or just below) "
    "mean the step ended as soon as the change was visible.",
    "API requests: the apiserver's apiserver_flowcontrol_dispatched_requests_total, per "
    "FlowSchema: the bench routes the contender's identity (and the runner pods' namespace) "
    "to FlowSchemas of its own on the workload-low priority level, so counts exclude the "
    "simulators, the controller-manager and the process kubelet. Discovery requests = "
    "requests to /api, /api/*, /apis, /apis/* that are not resource requests (a FlowSchema "
    "matching only those non-resource URLs). Watches count once, when opened.",
    "Peak RSS: GNU time's %M for every command the bench starts (the largest process of its "
    "tree: for Ansible the controller or a module process, for bash usually kubectl; the "
    "bench's own wait4 would report the bench's RSS, which a child inherits as its "
    "high-water mark); for runner pods started by the process kubelet, VmHWM polled from "
    "/proc every 50 ms.",
    "Process start to first API connection: the bench spawns the command and polls "
    "/proc/net/tcp every 2 ms for a new connection to the API port owned by the command's "
    "process tree (median of 5 for workshop-runner and bash, 3 for Ansible); the command is "
    "stopped there. For bash that is its first kubectl; for Ansible its first module "
    "process. (strace -f was tried first: it slowed Ansible's fork-heavy start several-fold.)",
    "Sequential peers (Ansible, bash one user after the other) provision users strictly one "
    "after another, so their fleet wall time is linear in N: measured at N = 1 and 2, "
    "extrapolated for larger N from the N = 2 per-user time (marked as such).",
    "The peers poll every 5 s, as the public workshop role (`retries`/`delay: 5`, "
    "kubernetes.core's default `wait_sleep: 5`) and the seed's `sleep 5` loop do.",
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=HERE / "out", help="work and results directory")
    p.add_argument("--report", type=Path, default=HERE / "REPORT.md")
    p.add_argument("--plot", type=Path, default=HERE / "fleet.png")
    p.add_argument(
        "--fleet", default=",".join(map(str, FLEET_SIZES)), help="fleet sizes (1,10,50,100)"
    )
    p.add_argument("--quick", action="store_true", help="one repetition, fleet 1,10 (smoke)")
    p.add_argument(
        "--skip", default="", help="comma-separated: ansible,bash,fleet,capacity,startup"
    )
    p.add_argument("--report-only", action="store_true", help="re-render from results.json")
    p.add_argument(
        "--capacity",
        action="store_true",
        help="only the capacity phase; rewrites the report's capacity section and its plot",
    )
    p.add_argument("--capacity-plot", type=Path, default=HERE / "capacity.png")
    return p.parse_args(argv)


def say(msg: str) -> None:
    print(f"bench: {msg}", flush=True)


class Bench:
    def __init__(self, args: argparse.Namespace, run_dir: Path) -> None:
        self.args = args
        self.run_dir = run_dir
        self.skip = set(filter(None, args.skip.split(",")))
        self.reps = 1 if args.quick else 3
        self.fleet_sizes = [int(x) for x in args.fleet.split(",")]
        if args.quick:
            self.fleet_sizes = [n for n in self.fleet_sizes if n <= 10]
        self.runs: list[dict[str, Any]] = []
        self.startup: dict[str, float] = {}
        self.start_cpu: dict[str, float] = {}
        self.caveats: list[str] = []
        self.machine = env.machine()

    def record(self, rec: c.RunRecord, kind: str) -> None:
        data = rec.to_json()
        data["kind"] = kind
        self.runs.append(data)
        failed = f", {rec.failures} users unfinished" if rec.failures else ""
        say(
            f"  {rec.contender:<28} {kind:<9} N={len(rec.users):<3} "
            f"{rec.wall_s:7.2f} s exit {rec.exit_code}{failed}"
        )

    def launcher_available(self) -> bool:
        helps = [
            [str(env.RUNNER), "launch", "--help"],
            [sys.executable, "-m", "devcluster.sim", "--help"],
        ]
        outs = [subprocess.run(h, capture_output=True, text=True).stdout for h in helps]
        return "--mode" in outs[0] and "--kubelet" in outs[1]

    # -- phases ---------------------------------------------------------------------------
    def everything(self) -> None:
        compile_like_the_image()
        say("zero operator delay, one user per contender")
        self.per_user(ZERO, self.reps)
        say(f"realistic delays ({REALISTIC.describe()}), one user per contender")
        self.per_user(REALISTIC, 1 if self.args.quick else 2)
        if "fleet" not in self.skip:
            say(f"fleets of {self.fleet_sizes} users, realistic delays")
            self.fleet()
        if "capacity" not in self.skip:
            self.capacity()

    def per_user(self, profile: Profile, reps: int) -> None:
        kind = profile.name
        with stage(kind, self.run_dir, profile) as st:
            for i in range(reps):
                self.record(c.run_runner_local(st, [f"r{i}"], f"r{i}", profile=kind), kind)
            rec = c.run_runner_local(st, ["s0"], "s0", serial=True, profile=kind)
            self.record(rec, kind)
            if "ansible" not in self.skip:
                for i in range(max(1, reps - 1)):
                    self.record(c.run_ansible(st, [f"a{i}"], f"a{i}", profile=kind), kind)
            if "bash" not in self.skip:
                # Zero delay: repeat (a missed poll costs a whole sleep); realistic: once.
                for i in range(reps if kind == "zero" else 1):
                    rec = c.run_bash(st, [f"b{i}"], f"b{i}", parallel=False, profile=kind)
                    self.record(rec, kind)
            if kind == "zero" and "startup" not in self.skip:
                self.measure_startup(st)

    def measure_startup(self, st: Stage) -> None:
        def median_of(n: int, make: Callable[[int], float | None]) -> float | None:
            vals = sorted(v for v in (make(i) for i in range(n)) if v is not None)
            return vals[len(vals) // 2] if vals else None

        def runner(i: int) -> float | None:
            work = st.dir / f"startup-runner-{i}"
            argv = c.runner_argv(f"t{i}", st.contender_kubeconfig, work, serial=False)
            return first_connection(argv, dict(os.environ), st.cluster.port)

        def bash(i: int) -> float | None:
            work = st.dir / f"startup-bash-{i}"
            work.mkdir(parents=True, exist_ok=True)
            argv = ["bash", str(c.BASH_PEER), f"tb{i}"]
            env_vars = {**os.environ, **c.bash_env(st, work, work / "m")}
            return first_connection(argv, env_vars, st.cluster.port)

        def ansible(i: int) -> float | None:
            work = st.dir / f"startup-ansible-{i}"
            argv = [str(env.bench_bin("ansible-playbook")), "provision.yml", "-e"]
            argv.append(json.dumps({"users": [f"ta{i}"]}))
            env_vars = {**os.environ, **c.ansible_env(st, work, work / "m")}
            return first_connection(argv, env_vars, st.cluster.port, cwd=c.ANSIBLE_DIR)

        found = {report.OURS: median_of(5, runner)}
        if "bash" not in self.skip:
            found[report.BASH] = median_of(5, bash)
        if "ansible" not in self.skip:
            found[report.ANSIBLE] = median_of(3, ansible)
        self.startup = {k: v for k, v in found.items() if v is not None}
        say("  process start to first API connection: " + ", ".join(
            f"{k} {v * 1000:.0f} ms" for k, v in self.startup.items()))  # fmt: skip

    def fleet(self) -> None:
        via_launcher = self.launcher_available()
        if not via_launcher:
            self.caveats.append(
                "The launcher or the process kubelet was not available: workshop-runner's "
                "fleet ran as N local processes started by the bench, not through Jobs."
            )
        for n in self.fleet_sizes:
            self.fleet_run(n, "ours", via_launcher)
            if "bash" not in self.skip:
                self.fleet_run(n, "bash")
        self.chains(min(10, max(self.fleet_sizes)))
        if not self.args.quick:
            with stage("sequential-2", self.run_dir, REALISTIC) as st:
                # Own user names per contender: a second contender on the same objects would
                # find them done (and wait for a Kiali reconciliation its no-op never causes).
                if "ansible" not in self.skip:
                    rec = c.run_ansible(st, ["qa1", "qa2"], "ansible-2", profile="realistic")
                    self.record(rec, "fleet")
                if "bash" not in self.skip:
                    users = ["qb1", "qb2"]
                    rec = c.run_bash(st, users, "bash-2", parallel=False, profile="realistic")
                    self.record(rec, "fleet")

    def chains(self, n: int) -> None:
        """N local runner processes, concurrent chains (default) vs --serial."""
        users = [f"user{i}" for i in range(1, n + 1)]
        for serial in (False, True):
            name = f"chains-{'serial' if serial else 'concurrent'}-{n}"
            with stage(name, self.run_dir, REALISTIC) as st:
                rec = c.run_runner_local(st, users, name, serial=serial, profile="realistic")
                self.record(rec, "chains")

    def capacity(self) -> None:
        """Fleets under upstream's work queues; sequential peers at N = 2, extrapolated."""
        say(f"capacity profile ({CAPACITY.describe()}), fleets of {self.fleet_sizes}")
        compile_like_the_image()
        self.start_cpu = measure_start_cpu()
        via_launcher = self.launcher_available()
        for n in self.fleet_sizes:
            self.fleet_run(n, "ours", via_launcher, CAPACITY)
            if "bash" not in self.skip:
                self.fleet_run(n, "bash", profile=CAPACITY)
        if self.args.quick:
            return
        for who in ("ansible", "bash"):
            if who in self.skip:
                continue
            name = f"capacity-sequential-{who}-2"
            with stage(name, self.run_dir, CAPACITY) as st:
                users = [f"q{who[0]}1", f"q{who[0]}2"]
                if who == "ansible":
                    rec = c.run_ansible(st, users, "ansible-2", profile="capacity")
                else:
                    rec = c.run_bash(st, users, "bash-2", parallel=False, profile="capacity")
                rec.reported["sim"] = _queues_only(st.sim_stats())
                self.record(rec, "capacity")

    def fleet_run(
        self, n: int, who: str, via_launcher: bool = False, profile: Profile = REALISTIC
    ) -> None:
        kind = "fleet" if profile is REALISTIC else profile.name
        name = f"{kind}-{who}-{n}"
        kubelet = who == "ours" and via_launcher
        ns = [RUNNER_NS]
        with stage(name, self.run_dir, profile, runner_namespaces=ns, kubelet=kubelet) as st:
            sampler = RssSampler(stage_patterns(RSS_PATTERNS, st.dir))
            sampler.start()
            cpu_before = read_machine_cpu()
            try:
                users = [f"user{i}" for i in range(1, n + 1)]
                if who == "bash":
                    rec = c.run_bash(st, users, name, parallel=True, profile=profile.name)
                elif kubelet:
                    rec = c.run_runner_launcher(st, n, name, profile=profile.name)
                else:
                    rec = c.run_runner_local(st, users, name, profile=profile.name)
                    rec = dataclasses.replace(rec, contender=report.LOCAL_OURS)
            finally:
                sampler.stop()
            if profile is CAPACITY:
                rec.reported["sim"] = _queues_only(st.sim_stats())
            busy, total = (a - b for a, b in zip(read_machine_cpu(), cpu_before, strict=True))
            rec.cpu = {"machine_busy": round(busy / total, 3) if total else None}
            rec.cpu |= {"seconds": sampler.cpu_seconds(), "cores": os.cpu_count()}
            if kubelet:
                rec.rss_mib = sampler.peaks_mib("runner")
            self.record(rec, kind)

    # -- results ----------------------------------------------------------------------------
    def results(self, started: dt.datetime, seconds: float) -> dict[str, Any]:
        machine = {**self.machine, "loadavg_at_end": env.loadavg()}
        return {
            "meta": {
                "started": started.strftime("%Y-%m-%d %H:%M UTC"),
                "duration_min": seconds / 60,
                "machine": machine,
                "versions": env.versions(),
                "profiles": {p.name: p.describe() for p in PROFILES.values()},
                "fleet_sizes": self.fleet_sizes,
                "method": METHOD,
                "caveats": self.caveats,
            },
            "runs": self.runs,
            "startup": self.startup,
            "start_cpu": self.start_cpu,
        }


def compile_like_the_image() -> None:
    """Byte-compile runner/ and steps/ before any runner starts, as pip does when it installs
    the wheel into the image: otherwise a runner started with PYTHONDONTWRITEBYTECODE (or
    unable to write __pycache__) compiles every module it imports, and its CPU time measures
    the compiler instead of the runner."""
    root = Path(__file__).resolve().parent.parent
    for package in ("runner", "steps"):
        compileall.compile_dir(root / package, quiet=1)


def measure_start_cpu() -> dict[str, float]:
    """CPU seconds a runner spends before its first step: the interpreter, and the imports."""
    bare = start_cpu_seconds(sys.executable, "pass")
    imports = start_cpu_seconds(sys.executable, "import runner.cli")
    return {"interpreter": bare, "imports": round(max(0.0, imports - bare), 3)}


def stage_patterns(patterns: dict[str, str], stage_dir: Path) -> dict[str, str]:
    """The runner pods of this stage only: their command lines name files under its kubelet
    root, so runners that other work on the machine starts are not counted."""
    own = re.escape(str(stage_dir))
    return {**patterns, "runner": rf"{patterns['runner']} .*{own}"}


def _queues_only(stats: dict[str, Any]) -> dict[str, Any]:
    """What the capacity report needs from the simulators' stats.json."""
    return {"transitions": stats.get("transitions", {}), "queues": stats.get("queues", {})}


def _plot(points: dict[str, Any], out: Path, dst: Path, *flags: str) -> None:
    data = out / f"{dst.stem}-plot.json"
    data.write_text(json.dumps(points))
    plot = [str(env.bench_bin("python")), str(HERE / "plot.py"), str(data), str(dst), *flags]
    if subprocess.run(plot).returncode != 0:
        say(f"plot {dst.name} failed (see above); the report links a missing image")


def write_capacity(results: dict[str, Any], args: argparse.Namespace, out: Path) -> None:
    """Only the capacity section of the report (and its plot), from `results`' capacity runs."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "capacity.json").write_text(json.dumps(results, indent=1))
    _plot(capacity.points(results), out, args.capacity_plot, "--capacity")
    text = args.report.read_text() if args.report.exists() else ""
    ours = report.fleet_ours(capacity.runs(results))
    args.report.write_text(capacity.splice(text, results, args.capacity_plot.name, ours))
    say(f"wrote the capacity section of {args.report} and {args.capacity_plot}")


def write_outputs(results: dict[str, Any], args: argparse.Namespace, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    fleet_points = {
        report.LABELS.get(name, name): [[n, p["wall_s"], p["measured"]] for n, p in pts.items()]
        for name, pts in report.fleets(results).items()
    }
    _plot(fleet_points, out, args.plot)
    args.report.write_text(report.render(results, args.plot.name))
    if capacity.runs(results):
        write_capacity(results, args, out)
    say(f"wrote {args.report} and {args.plot}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report_only:
        if args.capacity:
            write_capacity(json.loads((args.out / "capacity.json").read_text()), args, args.out)
            return 0
        results = json.loads((args.out / "results.json").read_text())
        write_outputs(results, args, args.out)
        return 0
    env.ensure_bench_venv(say)
    started, t0 = dt.datetime.now(dt.UTC), time.monotonic()
    run_dir = args.out / started.strftime("run-%Y%m%d-%H%M%S")
    shutil.rmtree(run_dir, ignore_errors=True)
    bench = Bench(args, run_dir)
    say(f"logs and objects under {run_dir}")
    if args.capacity:
        phases, partial, write = [bench.capacity], "capacity.partial.json", write_capacity
    else:
        phases, partial, write = [bench.everything], "results.partial.json", write_outputs
    try:
        for phase in phases:
            phase()
    except BaseException:
        # Keep what was measured, but never turn a broken run into the committed report.
        results = bench.results(started, time.monotonic() - t0)
        (run_dir / partial).write_text(json.dumps(results, indent=1))
        say(f"interrupted; partial results in {run_dir / partial}")
        raise
    write(bench.results(started, time.monotonic() - t0), args, args.out)
    say(f"done in {(time.monotonic() - t0) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
