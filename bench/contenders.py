"""The contenders: how each is started, and how its step-finish times are read back.

Every contender reports when each per-user step ended, in epoch seconds:
- workshop-runner: its own JSON log lines ("step finished", with an ISO timestamp);
- the Ansible peer: the bench_marks callback plugin (task end times, one line per step);
- the bash peer: `mark <user> <step> <epoch>` lines it appends to $MARKS.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import env
from bench.observe import PLAN_COMPLETE, sim_ready_times
from bench.stage import Stage

HERE = Path(__file__).resolve().parent
ANSIBLE_DIR = HERE / "peers" / "ansible"
BASH_PEER = HERE / "peers" / "bash" / "provision.sh"
FINAL_STEP = "kiali"
POLL_SECONDS = 5

Marks = dict[tuple[str, str], float]
# The runner's install-plan step approves and then waits for the plan to be Complete; the
# peers' end after the approval (and wait for the CSV next).
RUNNER_AWAITS = {"install-plan": PLAN_COMPLETE}


# ru_maxrss from our own wait4 would be wrong: a child's high-water mark starts from the
# parent's RSS at fork (the kernel carries the old mm's peak over exec), and the bench is a
# big Python process. GNU time forks the command from a small process, so its %M is the
# command's own peak (the largest process of its tree).
TIME = Path("/usr/bin/time")


@dataclass
class Proc:
    exit_code: int
    wall_s: float
    maxrss_kib: int  # peak RSS of the largest process in the command's tree (0: unknown)
    started: float


@dataclass
class RunRecord:
    contender: str
    profile: str
    users: list[str]
    wall_s: float
    exit_code: int
    marks: Marks = field(default_factory=dict)
    flows: dict[str, int] = field(default_factory=dict)
    rss_mib: list[float] = field(default_factory=list)
    processes: int = 0
    reported: dict[str, Any] = field(default_factory=dict)
    ready_at: Marks = field(default_factory=dict)
    started: float = 0.0
    # step -> the reference state it waits for last, where not the step's own name
    awaits: dict[str, str] = field(default_factory=dict)
    # fleet runs: the machine's busy fraction, CPU seconds per process label, cores
    cpu: dict[str, Any] = field(default_factory=dict)

    @property
    def failures(self) -> int:
        return sum(1 for u in self.users if (u, FINAL_STEP) not in self.marks)

    def to_json(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["marks"] = [[u, s, t] for (u, s), t in sorted(self.marks.items())]
        out["ready_at"] = [[u, s, t] for (u, s), t in sorted(self.ready_at.items())]
        out["failures"] = self.failures
        return out


def spawn(
    argv: Sequence[str], *, env_vars: dict[str, str], log: Path, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    argv = list(argv)
    if TIME.exists():
        argv = [str(TIME), "-f", "%M", "-o", str(rss_file(log)), *argv]
    with log.open("ab") as out:
        return subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env={**os.environ, **env_vars},
            start_new_session=True,
        )


def rss_file(log: Path) -> Path:
    return log.with_suffix(".maxrss")


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Every contender runs in its own session: end its whole process group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def reap(proc: subprocess.Popen[bytes], started: float, timeout: float, log: Path) -> Proc:
    try:
        proc.wait(max(0.0, started + timeout - time.monotonic()))
    except subprocess.TimeoutExpired:
        kill_group(proc)
    except BaseException:  # interrupted: leave no contender running behind us
        kill_group(proc)
        raise
    wall = time.monotonic() - started
    return Proc(proc.returncode, wall, read_maxrss(log), started)


def read_maxrss(log: Path) -> int:
    # GNU time may put "Command exited with non-zero status N" first; %M is the last word.
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int(rss_file(log).read_text().split()[-1])
    return 0


def reap_all(
    procs: dict[str, tuple[subprocess.Popen[bytes], float, Path]], timeout: float
) -> dict[str, Proc]:
    """Wait for every process, noting each one's own end (not the order they are reaped in)."""
    try:
        return _reap_all(procs, timeout)
    except BaseException:
        for proc, _, _ in procs.values():
            kill_group(proc)
        raise


def _reap_all(
    procs: dict[str, tuple[subprocess.Popen[bytes], float, Path]], timeout: float
) -> dict[str, Proc]:
    done: dict[str, Proc] = {}
    deadline = time.monotonic() + timeout
    while len(done) < len(procs):
        for key, (proc, started, log) in procs.items():
            if key not in done and proc.poll() is not None:
                wall = time.monotonic() - started
                done[key] = Proc(proc.returncode, wall, read_maxrss(log), started)
        if time.monotonic() > deadline:
            for key, (proc, started, log) in procs.items():
                if key not in done:
                    kill_group(proc)
                    done[key] = Proc(proc.returncode, timeout, read_maxrss(log), started)
        time.sleep(0.005)
    return done


def run(
    argv: Sequence[str],
    *,
    env_vars: dict[str, str],
    log: Path,
    cwd: Path | None = None,
    timeout: float = 1800,
) -> Proc:
    started = time.monotonic()
    return reap(spawn(argv, env_vars=env_vars, log=log, cwd=cwd), started, timeout, log)


# -- reading marks -------------------------------------------------------------------------
def read_mark_lines(path: Path) -> Marks:
    marks: Marks = {}
    if not path.exists():
        return marks
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] == "mark":
            marks[(parts[1], parts[2])] = float(parts[3])
    return marks


def iso_epoch(stamp: str) -> float:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def read_runner_log(path: Path, user: str) -> tuple[Marks, dict[str, Any]]:
    """Step-finish marks and the "run finished" line's self-reported counters."""
    marks: Marks = {}
    finished: dict[str, Any] = {}
    for line in path.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "step finished" and event.get("step"):
            marks[(event.get("user") or user, event["step"])] = iso_epoch(event["timestamp"])
        elif event.get("event") == "run finished":
            finished = event
    return marks, finished


# -- the contenders ------------------------------------------------------------------------
def runner_argv(user: str, kubeconfig: Path, work: Path, serial: bool) -> list[str]:
    argv = [str(env.RUNNER), "run", "--user", user, "--kubeconfig", str(kubeconfig)]
    argv += ["--log-format", "json", "--termination-log", str(work / f"{user}.result.json")]
    return argv + (["--serial"] if serial else [])


def run_runner_local(
    st: Stage, users: list[str], tag: str, *, serial: bool = False, profile: str
) -> RunRecord:
    """workshop-runner processes started directly (one per user, all at once)."""
    work = st.dir / tag
    work.mkdir(parents=True, exist_ok=True)
    before = st.flows()
    t0, wall0 = time.time(), time.monotonic()
    procs = {}
    for u in users:
        log = work / f"{u}.log"
        argv = runner_argv(u, st.contender_kubeconfig, work, serial)
        started = time.monotonic()
        procs[u] = (spawn(argv, env_vars={}, log=log), started, log)
    results = reap_all(procs, 1800)
    wall = time.monotonic() - wall0
    record = RunRecord(
        awaits=RUNNER_AWAITS,
        contender="workshop-runner --serial" if serial else "workshop-runner",
        profile=profile,
        users=users,
        wall_s=wall,
        exit_code=max(r.exit_code for r in results.values()),
        flows=_delta(st, before),
        rss_mib=[r.maxrss_kib / 1024 for r in results.values() if r.maxrss_kib],
        processes=len(users),
        started=t0,
    )
    reported: dict[str, list[Any]] = {
        "api_requests": [],
        "discovery_requests": [],
        "seconds": [],
        "wall": [],
    }
    for u in users:
        marks, finished = read_runner_log(work / f"{u}.log", u)
        record.marks.update(marks)
        for key in ("api_requests", "discovery_requests", "seconds"):
            if key in finished:
                reported[key].append(finished[key])
        reported["wall"].append(results[u].wall_s)
    record.reported = reported
    return _finish(st, record)


def ansible_env(st: Stage, work: Path, marks: Path) -> dict[str, str]:
    return {
        "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
        "ANSIBLE_HOME": str(work / "ansible-home"),
        "ANSIBLE_LOCAL_TEMP": str(work / "ansible-tmp"),
        "K8S_AUTH_KUBECONFIG": str(st.contender_kubeconfig),
        "MARKS": str(marks),
        "HOME": str(work / "home"),
    }


def run_ansible(st: Stage, users: list[str], tag: str, *, profile: str) -> RunRecord:
    work = st.dir / tag
    work.mkdir(parents=True, exist_ok=True)
    marks = work / "marks.txt"
    before = st.flows()
    t0 = time.time()
    proc = run(
        [
            str(env.bench_bin("ansible-playbook")),
            "provision.yml",
            "-e",
            json.dumps({"users": users, "poll": POLL_SECONDS}),
        ],
        env_vars=ansible_env(st, work, marks),
        log=work / "ansible.log",
        cwd=ANSIBLE_DIR,
    )
    record = RunRecord(
        contender="ansible",
        profile=profile,
        users=users,
        wall_s=proc.wall_s,
        exit_code=proc.exit_code,
        marks=read_mark_lines(marks),
        flows=_delta(st, before),
        rss_mib=[proc.maxrss_kib / 1024] if proc.maxrss_kib else [],
        processes=1,
        started=t0,
    )
    return _finish(st, record)


def bash_env(st: Stage, work: Path, marks: Path) -> dict[str, str]:
    return {
        "KUBECTL": str(env.KUBECTL),
        "KUBECONFIG": str(st.contender_kubeconfig),
        "KUBECACHEDIR": str(work / "kube-cache"),
        "MARKS": str(marks),
        "POLL": str(POLL_SECONDS),
        "HOME": str(work / "home"),
    }


def run_bash(st: Stage, users: list[str], tag: str, *, parallel: bool, profile: str) -> RunRecord:
    work = st.dir / tag
    work.mkdir(parents=True, exist_ok=True)
    marks = work / "marks.txt"
    before = st.flows()
    t0 = time.time()
    argv = ["bash", str(BASH_PEER)] + (["--parallel"] if parallel else []) + users
    proc = run(argv, env_vars=bash_env(st, work, marks), log=work / "bash.log")
    record = RunRecord(
        contender="bash --parallel" if parallel else "bash",
        profile=profile,
        users=users,
        wall_s=proc.wall_s,
        exit_code=proc.exit_code,
        marks=read_mark_lines(marks),
        flows=_delta(st, before),
        rss_mib=[proc.maxrss_kib / 1024] if proc.maxrss_kib else [],
        processes=len(users) if parallel else 1,
        started=t0,
    )
    return _finish(st, record)


def _delta(st: Stage, before: dict[str, int]) -> dict[str, int]:
    after = st.flows()
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


def _finish(st: Stage, record: RunRecord) -> RunRecord:
    """Attach when each awaited state was reached: the earlier of the simulator's logged
    write time and the time our watch saw it (both come a little after the real change)."""
    if st.watch is None:
        return record
    users = set(record.users)
    watched = dict(st.watch.ready_at)
    changed = {u: t for (step, u), t in st.watch.changed_at.items() if step == "kiali"}
    logged = sim_ready_times(st.dir / "sim.log", changed, since=record.started)
    for key in set(watched) | set(logged):
        step, user = key
        if user in users:
            record.ready_at[(user, step)] = min(
                t for t in (logged.get(key), watched.get(key)) if t is not None
            )
    return record


# -- workshop-runner through the launcher (Indexed Job, process kubelet) --------------------
def run_runner_launcher(st: Stage, n: int, tag: str, *, profile: str) -> RunRecord:
    work = st.dir / tag
    work.mkdir(parents=True, exist_ok=True)
    summary = work / "summary.json"
    before = st.flows()
    t0 = time.time()
    argv = [str(env.RUNNER), "launch", "--count", str(n), "--mode", "indexed"]
    argv += ["--parallelism", str(n), "--timeout", "1200", "--progress", "json"]
    argv += ["--kubeconfig", str(st.launcher_kubeconfig), "--summary-json", str(summary)]
    proc = run(argv, env_vars={}, log=work / "launch.log", timeout=1500)
    record = RunRecord(
        awaits=RUNNER_AWAITS,
        contender="workshop-runner (launcher)",
        profile=profile,
        users=[f"user{i}" for i in range(1, n + 1)],
        wall_s=proc.wall_s,
        exit_code=proc.exit_code,
        flows=_delta(st, before),
        started=t0,
    )
    logs = sorted((st.dir / "kubelet").glob("pods/*/logs/*.log"))
    for path in logs:
        marks, finished = read_runner_log(path, "")
        record.marks.update(marks)
        for key in ("api_requests", "discovery_requests"):
            if key in finished:
                record.reported.setdefault(key, []).append(finished[key])
    record.processes = len(logs) or n
    if summary.exists():
        data = json.loads(summary.read_text())
        record.reported["summary_counts"] = data.get("counts")
        record.reported["summary_seconds"] = data.get("seconds")
        record.reported["summary_exit_codes"] = [u.get("exit_code") for u in data.get("users", [])]
    return _finish(st, record)
