"""One pod on the process kubelet: its directory, volumes, processes and status writes."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devcluster.sim import podspec
from devcluster.sim.objects import now_iso
from devcluster.sim.volumes import Volumes, mkdir_group, write_file

if TYPE_CHECKING:
    from devcluster.sim.kubelet import Kubelet

log = logging.getLogger(__name__)

Obj = dict[str, Any]
KILL_GRACE_CAP = 10.0
LOCALHOST = "127.0.0.1"
SHUTDOWN_DISRUPTION = {
    "type": "DisruptionTarget",
    "status": "True",
    "reason": "TerminationByKubelet",
    "message": "Pod was terminated in response to imminent node shutdown.",
}


def _cond(
    ctype: str, ok: bool, now: str, reason: str | None = None, message: str | None = None
) -> Obj:
    # reason/message explicitly null so a strategic merge does not keep stale ones.
    return {
        "type": ctype,
        "status": "True" if ok else "False",
        "reason": reason,
        "message": message,
        "lastTransitionTime": now,
    }


def end_conditions(succeeded: bool, disruption: Obj | None, now: str) -> list[Obj]:
    reason = "PodCompleted" if succeeded else "PodFailed"
    conds = [
        _cond("PodReadyToStartContainers", False, now),
        _cond("Initialized", True, now),
        _cond("ContainersReady", False, now, reason),
        _cond("Ready", False, now, reason),
    ]
    if disruption:
        conds.append({**disruption, "lastTransitionTime": now})
    return conds


def _state(**one: Obj) -> Obj:
    # Null the other states: a strategic merge would otherwise keep e.g. `running`.
    state: Obj = {"waiting": None, "running": None, "terminated": None}
    state.update(one)
    return state


@dataclass
class Result:
    exit_code: int
    reason: str
    message: str
    started: str
    finished: str


@dataclass
class Plan:
    """A container, ready to start."""

    container: Obj
    argv: list[str]
    env: dict[str, str]
    cwd: str
    uid: int
    gid: int
    groups: list[int]
    log: Path
    termination: Path

    @property
    def name(self) -> str:
        return str(self.container["name"])


class PodRun:
    def __init__(self, kubelet: Kubelet, pod: Obj, seen_unbound: float, seen_bound: float) -> None:
        self.k = kubelet
        self.pod = pod
        meta = pod["metadata"]
        self.uid, self.ns, self.name = meta["uid"], meta["namespace"], meta["name"]
        self.dir = kubelet.root / "pods" / self.uid
        self.seen_unbound, self.seen_bound = seen_unbound, seen_bound
        self.stopping = threading.Event()
        self.stop_reason = ""
        self.gone = False
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.plock = threading.Lock()
        self.statuses: dict[str, Obj] = {}
        self.init_statuses: dict[str, Obj] = {}
        self.start_time = now_iso()
        self.thread = threading.Thread(target=self._main, name=f"pod-{self.name}", daemon=True)

    # -- stopping ------------------------------------------------------------------------
    def terminate(self, reason: str, grace: float) -> None:
        if not self.stop_reason:
            self.stop_reason = reason
        self.stopping.set()
        for proc in self._live():
            self._signal(proc, signal.SIGTERM)
        timer = threading.Timer(max(0.0, grace), self._kill_all)
        timer.daemon = True
        timer.start()

    def _live(self) -> list[subprocess.Popen[bytes]]:
        with self.plock:
            return [p for p in self.procs.values() if p.poll() is None]

    @staticmethod
    def _signal(proc: subprocess.Popen[bytes], sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)

    def _kill_all(self) -> None:
        for proc in self._live():
            self._signal(proc, signal.SIGKILL)

    # -- main ----------------------------------------------------------------------------
    def _main(self) -> None:
        acquired = False
        try:
            acquired = self._acquire_slot()
            if acquired:
                self._run()
        except Exception as exc:
            log.exception("pod %s/%s", self.ns, self.name)
            with contextlib.suppress(Exception):
                self._fail("StartError", f"devcluster kubelet: {exc}")
        finally:
            if acquired:
                self.k.slots.release()
            self.k.finished(self)
            if self.stop_reason == "deleted" and not self.gone:
                self.k._finish_deleted(self.pod)
            if self.gone:
                shutil.rmtree(self.dir, ignore_errors=True)

    def _acquire_slot(self) -> bool:
        if self.k.slots.acquire(blocking=False):
            return True
        self._write_waiting(
            "ContainerCreating", "waiting for a free pod slot on the devcluster kubelet"
        )
        while not self.stopping.is_set():
            if self.k.slots.acquire(timeout=0.5):
                return True
        return False

    def _run(self) -> None:
        spec = self.pod.get("spec") or {}
        with self.k.prep:
            mkdir_group(self.dir)
            try:
                volumes = Volumes(self).build()
                if volumes is None:
                    return
                inits = [self._plan(c, volumes) for c in spec.get("initContainers") or []]
                plans = [self._plan(c, volumes) for c in spec.get("containers") or []]
            except podspec.PodSpecError as exc:
                if exc.reason == "StartError":
                    self._fail("StartError", str(exc))
                else:
                    self._write_waiting(exc.reason, str(exc))
                    self.stopping.wait()
                return
        for plan in inits:
            result = self._loop(plan, None, init=True)
            if self.stopping.is_set() or result.exit_code != 0:
                self._finish(False)
                return
        if self.stopping.is_set():
            return
        spawned = {p.name: threading.Event() for p in plans}
        threads = [
            threading.Thread(
                target=self._loop,
                args=(p, spawned[p.name]),
                daemon=True,
                name=f"c-{self.name}-{p.name}",
            )
            for p in plans
        ]
        for t in threads:
            t.start()
        for ev in spawned.values():
            ev.wait()
        if any(
            "running" in (s.get("state") or {}) and s["state"]["running"]
            for s in self.statuses.values()
        ):
            self._write_running()
        for t in threads:
            t.join()
        ok = all(
            ((s.get("state") or {}).get("terminated") or {}).get("exitCode") == 0
            for s in self.statuses.values()
        )
        self._finish(ok)

    # -- containers ----------------------------------------------------------------------
    def _loop(self, plan: Plan, spawned: threading.Event | None, init: bool = False) -> Result:
        restarts, last = 0, None
        policy = (self.pod.get("spec") or {}).get("restartPolicy") or "Always"
        statuses = self.init_statuses if init else self.statuses
        while True:
            started = now_iso()
            try:
                proc = self._spawn(plan)
            except OSError as exc:
                result = Result(
                    128,
                    "StartError",
                    f"failed to start {plan.argv[0]!r}: {exc}",
                    started,
                    now_iso(),
                )
                cid = ""
            else:
                cid = f"devcluster://{self.k.instance}-{proc.pid}"
                with self.plock:
                    self.procs[plan.name] = proc
                statuses[plan.name] = self._cstatus(
                    plan, cid, _state(running={"startedAt": started}), restarts, last
                )
                if restarts == 0 and not init:
                    self.k.stats.add("start", time.monotonic() - self.seen_bound)
                if spawned is not None:
                    spawned.set()
                elif init or restarts:
                    self._write_running(init_only=init)
                code = proc.wait()
                exit_code = code if code >= 0 else 128 - code
                result = Result(
                    exit_code,
                    "Completed" if exit_code == 0 else "Error",
                    self._message(plan, exit_code),
                    started,
                    now_iso(),
                )
            term = {
                "exitCode": result.exit_code,
                "reason": result.reason,
                "startedAt": result.started,
                "finishedAt": result.finished,
            }
            if result.message:
                term["message"] = result.message
            if cid:
                term["containerID"] = cid
            retry = policy in ("OnFailure", "Always") and result.exit_code != 0
            if retry and not self.stopping.is_set():
                restarts += 1
                last = _state(terminated=term)
                waiting = {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off restarting failed container {plan.name}",
                }
                statuses[plan.name] = self._cstatus(
                    plan, cid, _state(waiting=waiting), restarts, last
                )
                self._write(
                    {
                        "containerStatuses" if not init else "initContainerStatuses": [
                            statuses[plan.name]
                        ]
                    }
                )
                if not self.stopping.wait(min(10.0, 0.5 * 2**restarts)):
                    continue
            statuses[plan.name] = self._cstatus(plan, cid, _state(terminated=term), restarts, last)
            if spawned is not None:
                spawned.set()
            return result

    def _spawn(self, plan: Plan) -> subprocess.Popen[bytes]:
        plan.log.parent.mkdir(parents=True, exist_ok=True)
        identity: dict[str, Any] = {}
        if os.geteuid() == 0:
            identity = {"user": plan.uid, "group": plan.gid, "extra_groups": plan.groups}
        with open(plan.log, "ab") as out:
            return subprocess.Popen(
                plan.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=plan.env,
                cwd=plan.cwd,
                start_new_session=True,
                umask=0o002,
                **identity,
            )

    def _message(self, plan: Plan, exit_code: int) -> str:
        policy = str(plan.container.get("terminationMessagePolicy") or "File")
        try:
            text = plan.termination.read_text(errors="replace")
            plan.termination.write_bytes(b"")
        except OSError:
            text = ""
        logs = ""
        if not text.strip() and policy == "FallbackToLogsOnError" and exit_code != 0:
            try:
                with open(plan.log, "rb") as fh:
                    fh.seek(max(0, os.path.getsize(plan.log) - 64 * 1024))
                    logs = fh.read().decode(errors="replace")
            except OSError:
                logs = ""
        return podspec.termination_message(text, logs, policy, exit_code)

    def _cstatus(self, plan: Plan, cid: str, state: Obj, restarts: int, last: Obj | None) -> Obj:
        image = str(plan.container.get("image", ""))
        digest = hashlib.sha256(image.encode()).hexdigest()
        status: Obj = {
            "name": plan.name,
            "image": image,
            "imageID": f"{image.split(':', maxsplit=1)[0]}@sha256:{digest}",
            "ready": bool(state.get("running")),
            "started": bool(state.get("running")),
            "restartCount": restarts,
            "state": state,
            "lastState": last or {"waiting": None, "running": None, "terminated": None},
        }
        if cid:
            status["containerID"] = cid
        return status

    # -- plans -------------------------------------------------------------------------
    def _plan(self, c: Obj, volumes: dict[str, str]) -> Plan:
        mounts: dict[str, str] = {}
        for vm in c.get("volumeMounts") or []:
            if vm["name"] not in volumes:
                raise podspec.PodSpecError(
                    f"volumeMount {vm['name']} has no volume", reason="StartError"
                )
            local = volumes[vm["name"]]
            mounts[vm["mountPath"]] = (
                os.path.join(local, vm["subPath"]) if vm.get("subPath") else local
            )
        termination = self.dir / "termination" / c["name"]
        mkdir_group(termination.parent)
        write_file(termination, b"", 0o660)
        mounts[c.get("terminationMessagePath") or podspec.DEFAULT_TERMINATION_PATH] = str(
            termination
        )
        paths = podspec.PathMap(mounts)
        image = str(c.get("image", ""))
        base = podspec.kubelet_env(self.pod, self.k.kube.server_host, self.k.kube.server_port)
        base["PATH"] = ":".join([*self.k.images.bin_dirs(image), podspec.DEFAULT_PATH])
        base.update(self.k.images.env(image))  # the image's ENV
        base["HOME"] = str(mkdir_group(self.dir / "home"))
        base["TMPDIR"] = paths.local("/tmp") or str(mkdir_group(self.dir / "tmp"))
        base["WORKSHOP_RUNNER_TERMINATION_LOG"] = str(termination)
        base["DEVCLUSTER_POD_DIR"] = str(self.dir)
        sa_dir = paths.local(podspec.SA_MOUNT)
        if sa_dir:
            base["WORKSHOP_RUNNER_SERVICEACCOUNT_DIR"] = sa_dir
        lookups = podspec.Lookups(
            configmap=lambda n: self.k.configmap(self.ns, n),
            secret=lambda n: self.k.secret(self.ns, n),
        )
        env = podspec.build_env(self.pod, c, base, lookups, rewrite=paths.rewrite)
        argv = podspec.build_argv(c, self.k.images, env, paths)
        if os.geteuid() == 0:
            uid, gid, groups = podspec.run_identity(self.pod, c, self.k.default_uid)
        else:
            uid, gid, groups = os.geteuid(), os.getegid(), []
        exe = podspec.resolve(argv[0], env)
        if exe and not podspec.can_execute(exe, uid, [gid, *groups]):
            log.warning(
                "pod %s/%s container %s: uid %d cannot execute %s; running it as root (gid %d)",
                self.ns,
                self.name,
                c["name"],
                uid,
                exe,
                gid,
            )
            self.k.root_fallbacks += 1
            uid = 0
        work = c.get("workingDir")
        cwd = (paths.local(work) or work) if work else base["HOME"]
        if not os.path.isdir(cwd):
            cwd = base["HOME"]
        log_path = self.dir / "logs" / f"{c['name']}.log"
        return Plan(c, argv, env, cwd, uid, gid, groups, log_path, termination)

    # -- status --------------------------------------------------------------------------
    def _write(self, status: Obj) -> None:
        self.k._patch_status(self.pod, status)

    def _common(self) -> Obj:
        return {
            "hostIP": LOCALHOST,
            "hostIPs": [{"ip": LOCALHOST}],
            "podIP": LOCALHOST,
            "podIPs": [{"ip": LOCALHOST}],
            "startTime": self.start_time,
        }

    def _write_waiting(self, reason: str, message: str) -> None:
        now = now_iso()
        statuses = [
            {
                "name": c["name"],
                "image": c.get("image", ""),
                "imageID": "",
                "ready": False,
                "started": False,
                "restartCount": 0,
                "state": _state(waiting={"reason": reason, "message": message}),
            }
            for c in (self.pod.get("spec") or {}).get("containers") or []
        ]
        conds = [
            _cond("PodReadyToStartContainers", False, now),
            _cond("Ready", False, now, "ContainersNotReady"),
        ]
        self._write(
            {
                "phase": "Pending",
                **self._common(),
                "conditions": conds,
                "containerStatuses": statuses,
            }
        )

    def _write_running(self, init_only: bool = False) -> None:
        now = now_iso()
        body: Obj = {"phase": "Pending" if init_only else "Running", **self._common()}
        if self.init_statuses:
            body["initContainerStatuses"] = list(self.init_statuses.values())
        if not init_only:
            body["containerStatuses"] = list(self.statuses.values())
            body["conditions"] = [
                _cond("PodReadyToStartContainers", True, now),
                _cond("Initialized", True, now),
                _cond("ContainersReady", True, now),
                _cond("Ready", True, now),
            ]
        self._write(body)
        if not init_only:
            self.k.stats.add("running", time.monotonic() - self.seen_unbound)

    def _finish(self, succeeded: bool) -> None:
        disruption = SHUTDOWN_DISRUPTION if self.stop_reason == "shutdown" else None
        if disruption:
            succeeded = False
        body: Obj = {
            "phase": "Succeeded" if succeeded else "Failed",
            **self._common(),
            "conditions": end_conditions(succeeded, disruption, now_iso()),
            "containerStatuses": list(self.statuses.values()) or self._never_started(),
        }
        if self.init_statuses:
            body["initContainerStatuses"] = list(self.init_statuses.values())
        if not self.gone:
            self._write(body)

    def _never_started(self) -> list[Obj]:
        now = now_iso()
        reason = {
            "reason": "ContainerStatusUnknown",
            "exitCode": 137,
            "startedAt": now,
            "finishedAt": now,
        }
        return [
            {
                "name": c["name"],
                "image": c.get("image", ""),
                "imageID": "",
                "ready": False,
                "started": False,
                "restartCount": 0,
                "state": _state(terminated=reason),
            }
            for c in (self.pod.get("spec") or {}).get("containers") or []
        ]

    def _fail(self, reason: str, message: str) -> None:
        now = now_iso()
        term = {
            "exitCode": 128,
            "reason": reason,
            "message": message,
            "startedAt": now,
            "finishedAt": now,
        }
        for c in (self.pod.get("spec") or {}).get("containers") or []:
            image = c.get("image", "")
            self.statuses[c["name"]] = {
                "name": c["name"],
                "image": image,
                "imageID": "",
                "ready": False,
                "started": False,
                "restartCount": 0,
                "state": _state(terminated=term),
            }
        self._finish(False)
