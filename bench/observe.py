"""What the bench watches while a contender runs, without touching the contender.

- `StatusWatch`: watches the operator-driven kinds cluster-wide (as the admin, not counted
  against any contender) and records when each object *first* reached the state a step waits
  for. A contender's step-finish time minus that moment is its reaction latency.
- `RssSampler`: polls /proc for processes whose command line matches, keeping each one's peak
  resident set size (VmHWM, which the kernel keeps as a high-water mark).
- `flow_counts`: per-FlowSchema dispatched request counters from the apiserver's /metrics; the
  stage routes each contender's identity to its own FlowSchemas, so deltas are attributable.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import resource
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Obj = dict[str, Any]
# The watch sees an event a little after the write; a completion stamped by the simulator
# just before we saw the change still counts as after it.
CLOCK_SLACK = 0.05
PINNED_CSV = "rhsso-operator.7.5.2-opr-001"  # the runner's default and the peers'
PLAN_COMPLETE = "install-plan:Complete"  # a reference state, not a step name


def _conditions(obj: Obj) -> dict[str, Obj]:
    return {c.get("type", ""): c for c in (obj.get("status") or {}).get("conditions") or []}


def _true(obj: Obj, ctype: str) -> bool:
    return _conditions(obj).get(ctype, {}).get("status") == "True"


def _generation_observed(obj: Obj) -> bool:
    observed = (obj.get("status") or {}).get("observedGeneration")
    return observed is None or observed == (obj.get("metadata") or {}).get("generation")


def catalog_ready(obj: Obj) -> bool:
    state = ((obj.get("status") or {}).get("connectionState") or {}).get("lastObservedState")
    return bool(state == "READY")


def plan_decided(obj: Obj) -> bool:
    # The install-plan step ends once the plan listing the pinned CSV has a phase (then it
    # approves the plan if it asks).
    names = (obj.get("spec") or {}).get("clusterServiceVersionNames") or []
    return PINNED_CSV in names and bool((obj.get("status") or {}).get("phase"))


def plan_complete(obj: Obj) -> bool:
    # workshop-runner's install-plan step approves, then waits for Complete.
    names = (obj.get("spec") or {}).get("clusterServiceVersionNames") or []
    return PINNED_CSV in names and (obj.get("status") or {}).get("phase") == "Complete"


def csv_succeeded(obj: Obj) -> bool:
    # By name: copied CSVs of the cluster-wide mesh operators appear in the namespace too.
    name = (obj.get("metadata") or {}).get("name")
    return name == PINNED_CSV and (obj.get("status") or {}).get("phase") == "Succeeded"


def smcp_ready(obj: Obj) -> bool:
    return _true(obj, "Ready") and _generation_observed(obj)


def smmr_ready(obj: Obj) -> bool:
    ns = (obj.get("metadata") or {}).get("namespace", "")
    member = ns.removesuffix("-istio")
    configured = (obj.get("status") or {}).get("configuredMembers") or []
    return _true(obj, "Ready") and member in configured


def kiali_changed(obj: Obj) -> bool:
    """The contender's change is in: DeploymentConfig no longer excluded."""
    excluded = ((obj.get("spec") or {}).get("kubernetes_config") or {}).get("excluded_workloads")
    return excluded is not None and "DeploymentConfig" not in excluded


def kiali_completion(obj: Obj) -> float | None:
    """When the last successful reconciliation ended (ansible-operator's Running condition,
    reason Successful, carries ansibleResult.completion); the Kiali operator writes no
    observedGeneration."""
    conds = _conditions(obj)
    if conds.get("Failure", {}).get("status") == "True":
        return None
    running = conds.get("Running", {})
    completion = (running.get("ansibleResult") or {}).get("completion")
    if running.get("reason") != "Successful" or not completion:
        return None
    try:
        return dt.datetime.fromisoformat(completion.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True)
class Watched:
    step: str
    group: str
    version: str
    plural: str
    ready: Callable[[Obj], bool] | None  # None: special-cased (Kiali)


WATCHED = (
    Watched("catalog-source", "operators.coreos.com", "v1alpha1", "catalogsources", catalog_ready),
    Watched("install-plan", "operators.coreos.com", "v1alpha1", "installplans", plan_decided),
    Watched(PLAN_COMPLETE, "operators.coreos.com", "v1alpha1", "installplans", plan_complete),
    Watched("csv", "operators.coreos.com", "v1alpha1", "clusterserviceversions", csv_succeeded),
    Watched("smcp", "maistra.io", "v2", "servicemeshcontrolplanes", smcp_ready),
    Watched("member-roll", "maistra.io", "v1", "servicemeshmemberrolls", smmr_ready),
    Watched("kiali", "kiali.io", "v1alpha1", "kialis", None),
)


def user_of(namespace: str) -> str:
    return namespace.removesuffix("-istio")


class StatusWatch:
    """First wall-clock time each (step, user) became ready, as seen by a cluster-wide watch.

    Times are `time.time()` when the watch event arrived: a few milliseconds after the
    operator's write, so reaction latencies computed from them are slight *under*-estimates.
    """

    def __init__(self, api_client: Any) -> None:
        self.api_client = api_client
        self.ready_at: dict[tuple[str, str], float] = {}
        self.changed_at: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(w,), name=f"watch-{w.step}", daemon=True)
            for w in WATCHED
        ]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()

    def _record(self, w: Watched, obj: Obj, now: float) -> None:
        meta = obj.get("metadata") or {}
        key = (w.step, user_of(meta.get("namespace", "")))
        with self._lock:
            if key in self.ready_at:
                return
            if w.ready is not None:
                if w.ready(obj):
                    self.ready_at[key] = now
                return
            # Kiali: the first successful reconciliation that ended after the change was seen.
            if kiali_changed(obj):
                changed = self.changed_at.setdefault(key, now)
                completion = kiali_completion(obj)
                if completion is not None and completion >= changed - CLOCK_SLACK:
                    self.ready_at[key] = now

    def _run(self, w: Watched) -> None:
        from kubernetes import client, watch

        api = client.CustomObjectsApi(self.api_client)
        while not self._stop.is_set():
            try:
                listed: Any = api.list_cluster_custom_object(w.group, w.version, w.plural)
                now = time.time()
                for obj in listed.get("items", []):
                    self._record(w, obj, now)
                rv = listed["metadata"]["resourceVersion"]
                stream = watch.Watch().stream(
                    api.list_cluster_custom_object,
                    w.group,
                    w.version,
                    w.plural,
                    resource_version=rv,
                    timeout_seconds=30,
                    _request_timeout=40,
                )
                for event in stream:
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._record(w, event["object"], time.time())
                    if self._stop.is_set():
                        break
            except Exception:  # the bench must outlive API hiccups; re-list and go on
                if self._stop.wait(0.5):
                    return


PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class ProcPeak:
    pid: int
    label: str
    cmd: str
    first_seen: float
    last_seen: float
    hwm_kib: int = 0
    cpu_s: float = 0.0  # user + system CPU time, as last sampled


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(stat_line: str) -> float:
    """utime + stime from a /proc/<pid>/stat line (fields 14 and 15, after the `(comm)`)."""
    fields = stat_line.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_cpu_ticks(proc_stat: str) -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs from /proc/stat's first line; idle and iowait
    are not busy."""
    values = [int(v) for v in proc_stat.splitlines()[0].split()[1:]]
    total = sum(values[:8])  # user nice system idle iowait irq softirq steal (guest in user)
    return total - values[3] - values[4], total


def read_machine_cpu() -> tuple[int, int]:
    return machine_cpu_ticks(Path("/proc/stat").read_text())


class RssSampler:
    """Peak RSS and CPU time of every process whose command line matches one of `patterns`
    (label -> regex); a process's last CPU sample before it exits (every `interval`) counts."""

    def __init__(self, patterns: dict[str, str], interval: float = 0.05) -> None:
        self.patterns = {label: re.compile(rx) for label, rx in patterns.items()}
        self.interval = interval
        self.procs: dict[int, ProcPeak] = {}
        self._ignored: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _classify(self, pid: int) -> ProcPeak | None:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            return None
        if not cmd:
            return None  # a zombie or a kernel thread: look again next time
        for label, rx in self.patterns.items():
            if rx.search(cmd):
                now = time.time()
                return ProcPeak(pid, label, cmd.strip()[:200], now, now)
        self._ignored.add(pid)
        return None

    def sample(self) -> None:
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            if pid in self._ignored:
                continue
            peak = self.procs.get(pid) or self._classify(pid)
            if peak is None:
                continue
            self.procs[pid] = peak
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = Path(f"/proc/{pid}/stat").read_text()
                peak.cpu_s = max(peak.cpu_s, process_cpu_seconds(stat))
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak.hwm_kib = max(peak.hwm_kib, int(line.split()[1]))
                        peak.last_seen = time.time()
                        break

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError):
                self.sample()
            self._stop.wait(self.interval)

    def peaks_mib(self, label: str) -> list[float]:
        return [p.hwm_kib / 1024 for p in self.procs.values() if p.label == label and p.hwm_kib]

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds per label, summed over that label's processes."""
        out: dict[str, float] = {}
        for p in self.procs.values():
            out[p.label] = out.get(p.label, 0.0) + p.cpu_s
        return {label: round(v, 2) for label, v in sorted(out.items())}


_FLOW = re.compile(
    r'^apiserver_flowcontrol_dispatched_requests_total\{flow_schema="([^"]+)",'
    r'priority_level="[^"]+"\} (\S+)$'
)


def flow_counts(metrics_text: str) -> dict[str, int]:
    """Requests dispatched per FlowSchema so far (a counter: take deltas)."""
    out: dict[str, int] = {}
    for line in metrics_text.splitlines():
        m = _FLOW.match(line)
        if m:
            out[m.group(1)] = out.get(m.group(1), 0) + int(float(m.group(2)))
    return out


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


# The simulators log every transition after its write returned, e.g.
# "2026-11-25 20:19:31,245 INFO sim-w3 devcluster.sim.engine: CatalogSource b0/rhsso-catalog
#  -> READY (delay 1.00s, reaction 6.7ms)": a closer "status changed" time than our watch's.
_SIM_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \S+ \S+ devcluster\.sim\.engine: "
    r"(\w+) ([^/\s]+)/(\S+) -> (\S+)"
)
_SIM_STEPS = {
    ("CatalogSource", "READY"): "catalog-source",
    ("InstallPlan", "RequiresApproval"): "install-plan",
    ("InstallPlan", "Complete"): PLAN_COMPLETE,
    ("ClusterServiceVersion", "Succeeded"): "csv",
    ("ServiceMeshControlPlane", "ready"): "smcp",
    ("ServiceMeshMemberRoll", "Configured"): "member-roll",
}


def sim_ready_times(
    log: Path, kiali_changed_at: dict[str, float], since: float = 0.0
) -> dict[tuple[str, str], float]:
    """(step, user) -> when the simulator's write that completed the awaited state returned.
    Kiali: the first successful reconciliation after the watch saw the contender's change."""
    out: dict[tuple[str, str], float] = {}
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return out
    for line in lines:
        m = _SIM_LINE.match(line)
        if not m:
            continue
        stamp, kind, ns, name, to = m.groups()
        at = dt.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()  # local time
        if at < since:
            continue
        user = user_of(ns)
        state = to.split(":", 1)[0]
        if kind == "ClusterServiceVersion" and name != PINNED_CSV:
            continue
        # Older simulator logs carried the members ("Configured:user1|"); newer ones do not
        # (the member roll of <user>-istio holds just that user).
        configured = to.split(":", 1)[-1].split("|")[0].split(",") if ":" in to else [user]
        if kind == "ServiceMeshMemberRoll" and user not in configured:
            continue
        step = _SIM_STEPS.get((kind, state))
        if kind == "Kiali" and state == "successful":
            changed = kiali_changed_at.get(user)
            step = "kiali" if changed is not None and at >= changed - CLOCK_SLACK else None
        if step:
            out.setdefault((step, user), at)
    return out


# -- process start to first API connection ------------------------------------------------
def _api_sockets(port: int) -> dict[str, str]:
    """inode -> local address of every TCP socket whose peer is the API server's port."""
    out: dict[str, str] = {}
    want = f":{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                f = line.split()
                if len(f) > 9 and f[2].endswith(want):
                    out[f[9]] = f[1]
    return out


def _tree(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = Path(f"/proc/{entry.name}/stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo.extend(children.get(pid, []))
    return found


def _owned(pids: set[int], inodes: set[str]) -> bool:
    targets = {f"socket:[{i}]" for i in inodes}
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.scandir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(fd.path) in targets:
                        return True
    return False


def first_connection(
    argv: list[str], env: dict[str, str], port: int, cwd: Path | None = None, timeout: float = 60
) -> float | None:
    """Seconds from spawning argv to the first TCP connection its process tree opens to the
    API server (seen in /proc/net/tcp at connect time; ~2 ms resolution). The command is
    stopped there. No ptrace: strace -f slowed Ansible's fork-heavy start several-fold."""
    import subprocess

    baseline = set(_api_sockets(port))
    t0 = time.monotonic()
    proc = subprocess.Popen(
        argv,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    found: float | None = None
    try:
        while time.monotonic() - t0 < timeout and proc.poll() is None:
            fresh = set(_api_sockets(port)) - baseline
            if fresh:
                at = time.monotonic() - t0
                if _owned(_tree(proc.pid), fresh):
                    found = at
                    break
                baseline |= fresh  # someone else's connection (simulator, watch)
            time.sleep(0.002)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        proc.wait()
    return found


def start_cpu_seconds(python: str, code: str, runs: int = 7) -> float:
    """Median CPU seconds (user + system) of `python -c code` in a fresh interpreter."""
    samples = []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([python, "-c", code], check=True, capture_output=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        samples.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return round(sorted(samples)[len(samples) // 2], 3)
