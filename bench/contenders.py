"""The contenders: how each is started, and how its step-finish times are read back.

Every contender reports when each per-user step ended, in epoch seconds:
- workshop-runner: its own JSON log lines ("step finished", with an ISO timestamp);
- the Ansible peer: the bench_marks callback plugin (task end times, one line per step);
- the bash peer: `mark <user> <step> <epoch>` lines it appends to $MARKS.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import env
from bench.stage import Stage

HERE = Path(__file__).resolve().parent
ANSIBLE_DIR = HERE / "peers" / "ansible"
BASH_PEER = HERE / "peers" / "bash" / "provision.sh"
FINAL_STEP = "kiali"
POLL_SECONDS = 5

Marks = dict[tuple[str, str], float]


@dataclass
class Proc:
    exit_code: int
    wall_s: float
    maxrss_kib: int  # ru_maxrss of the child and its waited-for descendants (the largest one)
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
    note: str = ""

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
    with log.open("ab") as out:
        return subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env={**os.environ, **env_vars},
            start_new_session=True,
        )


def reap(proc: subprocess.Popen[bytes], started: float, timeout: float) -> Proc:
    """Wait with wait4 (not Popen.wait) to get the child's resource usage."""
    deadline = started + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            break
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.01)
    wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Proc(proc.returncode, wall, usage.ru_maxrss, started)


def run(
    argv: Sequence[str],
    *,
    env_vars: dict[str, str],
    log: Path,
    cwd: Path | None = None,
    timeout: float = 1800,
) -> Proc:
    started = time.monotonic()
    return reap(spawn(argv, env_vars=env_vars, log=log, cwd=cwd), started, timeout)


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
    procs = {
        u: (
            spawn(
                runner_argv(u, st.contender_kubeconfig, work, serial),
                env_vars={},
                log=work / f"{u}.log",
            ),
            time.monotonic(),
        )
        for u in users
    }
    results = {u: reap(p, started, 1800) for u, (p, started) in procs.items()}
    wall = time.monotonic() - wall0
    record = RunRecord(
        contender="workshop-runner --serial" if serial else "workshop-runner",
        profile=profile,
        users=users,
        wall_s=wall,
        exit_code=max(r.exit_code for r in results.values()),
        flows=_delta(st, before),
        rss_mib=[r.maxrss_kib / 1024 for r in results.values()],
        processes=len(users),
        started=t0,
    )
    reported: dict[str, list[Any]] = {"api_requests": [], "discovery_requests": [], "wall": []}
    for u in users:
        marks, finished = read_runner_log(work / f"{u}.log", u)
        record.marks.update(marks)
        for key in ("api_requests", "discovery_requests"):
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
        rss_mib=[proc.maxrss_kib / 1024],
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
        rss_mib=[proc.maxrss_kib / 1024],
        processes=len(users) if parallel else 1,
        started=t0,
    )
    return _finish(st, record)


def _delta(st: Stage, before: dict[str, int]) -> dict[str, int]:
    after = st.flows()
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


def _finish(st: Stage, record: RunRecord) -> RunRecord:
    if st.watch is not None:
        users = set(record.users)
        record.ready_at = {
            (u, step): t for (step, u), t in list(st.watch.ready_at.items()) if u in users
        }
    return record


# -- process start to first API connection (strace) -----------------------------------------
_TRACE = re.compile(r"^(\d+)\s+(\d+\.\d+)\s+(execve|connect)\((.*)$")


def first_connect(trace: Path, port: int) -> float | None:
    """Seconds from the first execve to the first connect() to the API server's port."""
    start: float | None = None
    needle = f"sin_port=htons({port})"
    for line in trace.read_text(errors="replace").splitlines():
        m = _TRACE.match(line)
        if not m:
            continue
        t = float(m.group(2))
        if m.group(3) == "execve" and start is None:
            start = t
        elif m.group(3) == "connect" and needle in m.group(4) and start is not None:
            return t - start
    return None


def time_to_first_request(
    st: Stage, argv: list[str], env_vars: dict[str, str], work: Path, cwd: Path | None = None
) -> float | None:
    """Run argv under strace until its first connection to the API server, then stop it."""
    if not shutil.which("strace"):
        return None
    work.mkdir(parents=True, exist_ok=True)
    trace = work / "strace.txt"
    traced = ["strace", "-f", "-qq", "--seccomp-bpf", "-ttt", "-e", "trace=execve,connect"]
    traced += ["-o", str(trace), *argv]
    proc = spawn(traced, env_vars=env_vars, log=work / "traced.log", cwd=cwd)
    deadline = time.monotonic() + 120
    found: float | None = None
    while time.monotonic() < deadline and proc.poll() is None:
        if trace.exists() and (found := first_connect(trace, st.cluster.port)) is not None:
            break
        time.sleep(0.2)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return found if found is not None else first_connect(trace, st.cluster.port)


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
    return _finish(st, record)
