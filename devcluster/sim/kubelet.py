"""A process kubelet: a Node whose "containers" are local processes.

It registers Node `devcluster-kubelet` (Ready, heartbeats through a Lease in kube-node-lease),
binds unscheduled Pods of its namespaces to itself through pods/binding (there is no
kube-scheduler), and runs each container's command/args as a local process with the env, paths
and identity described in podspec.py. Pod status goes Pending -> Running (podIP 127.0.0.1,
containerStatuses running, Ready) -> Succeeded/Failed with each container's exit code and
termination message, so the real job controller completes, retries or fails the Job.

Lifecycle details, as the real kubelet:
- restartPolicy Never/OnFailure (OnFailure restarts with backoff); init containers in order.
- Pod deleted (deletionTimestamp): SIGTERM to the process group, SIGKILL after the grace period
  (capped at 10 s), terminal status, then delete with grace 0.
- Kubelet shutdown: every running pod fails with condition DisruptionTarget
  (TerminationByKubelet), which a Job's podFailurePolicy can `Ignore`.
- Pods it finds Running from an earlier kubelet process are failed as ContainerStatusUnknown.
Volumes: configMap, secret, emptyDir, projected (serviceAccountToken via TokenRequest bound to
the pod, configMap, secret, downwardAPI), downwardAPI and hostPath are materialised in the pod's
directory (group 0, setgid). Anything else fails the pod with a clear message. Logs:
<root>/pods/<uid>/logs/<container>.log (there is no `kubectl logs`).
When started as root, containers run as runAsUser or OpenShift's arbitrary UID 1000770000 with
group 0 - unless that UID cannot execute the program (e.g. the venv's interpreter lives under a
0700 /root): then it runs as root, gid 0, and the kubelet log says so.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from devcluster.sim import podspec
from devcluster.sim.engine import Stats
from devcluster.sim.informer import Informer, Store
from devcluster.sim.kube import (
    CONFIGMAPS,
    LEASES,
    NODES,
    PODS,
    SECRETS,
    SERVICEACCOUNTS,
    STRATEGIC,
    Kube,
    KubeError,
    Obj,
    Resource,
)
from devcluster.sim.objects import deleting, now_iso, now_micro
from devcluster.sim.podrun import KILL_GRACE_CAP, PodRun, end_conditions
from devcluster.sim.volumes import mkdir_group

log = logging.getLogger(__name__)

DEFAULT_UID = 1000770000
NODE_LEASE_NS = "kube-node-lease"


class Kubelet:
    def __init__(
        self,
        kube: Kube,
        *,
        node_name: str = "devcluster-kubelet",
        namespaces: list[str] | None = None,
        root: Path | None = None,
        images: podspec.ImageMap | None = None,
        max_pods: int = 110,
        default_uid: int = DEFAULT_UID,
        kubelet_version: str = "v0.0.0",
        instance: str | None = None,
    ) -> None:
        self.kube = kube
        self.node = node_name
        self.namespaces = namespaces or []
        self.own_root = root is None
        self.root = root or Path(tempfile.mkdtemp(prefix="devcluster-kubelet-"))
        self.images = images or podspec.ImageMap.default(Path(sys.executable).parent)
        self.max_pods = max_pods
        self.default_uid = default_uid
        self.version = kubelet_version
        self.instance = instance or uuid.uuid4().hex[:12]
        self.store = Store()
        self.runs: dict[str, PodRun] = {}
        self.binding: set[str] = set()
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="kubelet")
        self.slots = threading.BoundedSemaphore(max_pods)
        self.prep = threading.Semaphore(8)
        self.stats = Stats()
        self.root_fallbacks = 0
        self.stopped = threading.Event()
        self.informers: list[Informer] = []
        self._seen_at: dict[str, float] = {}
        # Pods this process has run to the end: a late watch event (e.g. our own Running
        # write, delivered after the exit) must not start them again.
        self.done: set[str] = set()

    # -- node ----------------------------------------------------------------------------
    def node_status(self, ready: bool = True) -> Obj:
        now = now_iso()
        cpu = str(os.cpu_count() or 2)
        mem_kib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 1024
        res = {
            "cpu": cpu,
            "memory": f"{mem_kib}Ki",
            "pods": str(self.max_pods),
            "ephemeral-storage": "100Gi",
        }
        ready_cond = {
            "type": "Ready",
            "status": "True" if ready else "False",
            "reason": "KubeletReady" if ready else "KubeletNotReady",
            "message": "kubelet is posting ready status" if ready else "devcluster kubelet stopped",
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }
        pressure = [
            ("MemoryPressure", "KubeletHasSufficientMemory"),
            ("DiskPressure", "KubeletHasNoDiskPressure"),
            ("PIDPressure", "KubeletHasSufficientPID"),
        ]
        conds = [
            {
                "type": t,
                "status": "False",
                "reason": r,
                "message": r,
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }
            for t, r in pressure
        ]
        return {
            "capacity": res,
            "allocatable": res,
            "conditions": [*conds, ready_cond],
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": self.node},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
            "nodeInfo": {
                "architecture": "amd64",
                "bootID": self.instance,
                "containerRuntimeVersion": "devcluster-process://0.1",
                "kernelVersion": platform.release(),
                "kubeProxyVersion": "",
                "kubeletVersion": self.version,
                "machineID": self.instance,
                "operatingSystem": "linux",
                "osImage": "devcluster process kubelet",
                "systemUUID": self.instance,
            },
        }

    def register(self) -> None:
        body = {
            "metadata": {
                "name": self.node,
                "labels": {
                    "kubernetes.io/hostname": self.node,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "node.kubernetes.io/instance-type": "devcluster-process",
                },
            },
            "spec": {},
        }
        try:
            self.kube.create(NODES, None, body)
        except KubeError as exc:
            if not exc.conflict:
                raise
        self.kube.patch_status(NODES, None, self.node, self.node_status(), content_type=STRATEGIC)
        self.renew_lease()

    def renew_lease(self) -> None:
        spec = {"holderIdentity": self.node, "leaseDurationSeconds": 40, "renewTime": now_micro()}
        try:
            self.kube.patch(LEASES, NODE_LEASE_NS, self.node, {"spec": spec})
        except KubeError as exc:
            if not exc.not_found:
                raise
            body = {"metadata": {"name": self.node, "namespace": NODE_LEASE_NS}, "spec": spec}
            self.kube.create(LEASES, NODE_LEASE_NS, body)

    def _heartbeat(self) -> None:
        beats = 0
        while not self.stopped.wait(10.0):
            beats += 1
            try:
                self.renew_lease()
                if beats % 4 == 0:
                    self.kube.patch_status(
                        NODES, None, self.node, self.node_status(), content_type=STRATEGIC
                    )
            except Exception as exc:
                log.warning("node heartbeat: %s", exc)

    # -- lifecycle -----------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> None:
        mkdir_group(self.root, 0o750)
        mkdir_group(self.root / "pods", 0o750)
        self.register()
        threading.Thread(target=self._heartbeat, name="node-heartbeat", daemon=True).start()
        scopes: list[str | None] = list(self.namespaces) or [None]
        for ns in scopes:
            informer = Informer(self.kube, self.store, PODS, ns)
            informer.handlers.append(self.on_pod)
            self.informers.append(informer)
            informer.start()
        for informer in self.informers:
            if not informer.synced.wait(timeout):
                raise RuntimeError(
                    f"pod watch in {informer.namespace or 'all namespaces'} did not sync"
                )

    def stop(self, timeout: float = 7.0) -> None:
        """Node shutdown: fail running pods with DisruptionTarget, mark the node NotReady.
        Kept under the 10 s `devcluster down` allows before SIGKILL."""
        self.stopped.set()
        for informer in self.informers:
            informer.stop()
        with self.lock:
            runs = list(self.runs.values())
        for run in runs:
            run.terminate("shutdown", grace=3.0)
        deadline = time.monotonic() + timeout
        for run in runs:
            run.thread.join(max(0.1, deadline - time.monotonic()))
        with contextlib.suppress(Exception):
            self.kube.patch_status(
                NODES, None, self.node, self.node_status(ready=False), content_type=STRATEGIC
            )
        self.pool.shutdown(wait=False, cancel_futures=True)
        if self.own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def summary(self) -> dict[str, Any]:
        out = self.stats.summary()
        out["instance"] = self.instance
        out["running_pods"] = len(self.runs)
        out["root_fallbacks"] = self.root_fallbacks
        return out

    # -- events --------------------------------------------------------------------------
    def on_pod(self, res: Resource, event: str, pod: Obj, at: float) -> None:
        if self.stopped.is_set():
            return
        meta = pod.get("metadata") or {}
        uid = meta.get("uid", "")
        if event == "DELETED":
            self.binding.discard(uid)
            self.done.discard(uid)
            run = self.runs.get(uid)
            if run is not None:
                run.gone = True
                run.terminate("deleted", grace=0.0)
            else:
                shutil.rmtree(self.root / "pods" / uid, ignore_errors=True)
            return
        spec = pod.get("spec") or {}
        node = spec.get("nodeName")
        if not node:
            scheduler = spec.get("schedulerName") or "default-scheduler"
            if scheduler == "default-scheduler" and not deleting(pod) and uid not in self.binding:
                self.binding.add(uid)
                self.pool.submit(self._bind, pod, at)
            return
        if node != self.node:
            return
        if uid in self.done:
            if deleting(pod):
                self.pool.submit(self._finish_deleted, pod)
            return
        run = self.runs.get(uid)
        if run is not None:
            run.pod = pod
            if deleting(pod):
                grace = float(meta.get("deletionGracePeriodSeconds") or 0)
                run.terminate("deleted", grace=min(grace, KILL_GRACE_CAP))
            return
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed") or deleting(pod):
            if deleting(pod):
                self.pool.submit(self._finish_deleted, pod)
            return
        if self._lost(pod):
            self.pool.submit(self._mark_lost, pod)
            return
        with self.lock:
            if uid in self.runs or uid in self.done:
                return
            run = PodRun(self, pod, self._seen_at.pop(uid, at), at)
            self.runs[uid] = run
        run.thread.start()

    def _bind(self, pod: Obj, seen: float) -> None:
        meta = pod["metadata"]
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node},
        }
        try:
            self.kube.request("POST", PODS.path(meta["namespace"], meta["name"], "binding"), body)
            self._seen_at[meta["uid"]] = seen
            self.stats.add("bind", time.monotonic() - seen)
        except KubeError as exc:
            if exc.status not in (404, 409):
                log.warning("bind %s/%s: %s", meta["namespace"], meta["name"], exc)
                self.binding.discard(meta["uid"])

    def _lost(self, pod: Obj) -> bool:
        """Running according to the API, but started by another kubelet process."""
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            cid = str(cs.get("containerID") or "")
            if "running" in (cs.get("state") or {}) and not cid.startswith(
                f"devcluster://{self.instance}-"
            ):
                return True
        return False

    def _mark_lost(self, pod: Obj) -> None:
        now = now_iso()
        statuses = []
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            term = {
                "exitCode": 137,
                "reason": "ContainerStatusUnknown",
                "message": "The container could not be located when the pod was terminated",
                "startedAt": ((cs.get("state") or {}).get("running") or {}).get("startedAt", now),
                "finishedAt": now,
            }
            statuses.append({**cs, "ready": False, "started": False, "state": {"terminated": term}})
        status = {
            "phase": "Failed",
            "containerStatuses": statuses,
            "conditions": end_conditions(False, None, now),
        }
        self._patch_status(pod, status)

    def _finish_deleted(self, pod: Obj) -> None:
        meta = pod["metadata"]
        with contextlib.suppress(KubeError):
            self.kube.delete(PODS, meta["namespace"], meta["name"], grace=0, uid=meta["uid"])

    def _patch_status(self, pod: Obj, status: Obj) -> None:
        meta = pod["metadata"]
        if pod.get("metadata", {}).get("generation"):
            status.setdefault("observedGeneration", meta["generation"])
        try:
            self.kube.patch_status(
                PODS, meta["namespace"], meta["name"], status, content_type=STRATEGIC
            )
        except KubeError as exc:
            if exc.status not in (404, 409):
                raise

    def finished(self, run: PodRun) -> None:
        with self.lock:
            self.runs.pop(run.uid, None)
            if not run.gone:
                self.done.add(run.uid)

    # -- reads for pods ------------------------------------------------------------------
    def configmap(self, namespace: str, name: str) -> dict[str, str] | None:
        obj = self.kube.get_or_none(CONFIGMAPS, namespace, name)
        if obj is None:
            return None
        data = dict(obj.get("data") or {})
        for key, value in (obj.get("binaryData") or {}).items():
            data[key] = base64.b64decode(value).decode(errors="replace")
        return data

    def secret(self, namespace: str, name: str) -> dict[str, str] | None:
        obj = self.kube.get_or_none(SECRETS, namespace, name)
        if obj is None:
            return None
        return {
            k: base64.b64decode(v).decode(errors="replace")
            for k, v in (obj.get("data") or {}).items()
        }

    def token(self, pod: Obj, audience: str | None, seconds: int) -> str:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        sa = spec.get("serviceAccountName") or "default"
        body: Obj = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "expirationSeconds": max(600, seconds),
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": meta["name"],
                    "uid": meta["uid"],
                },
            },
        }
        if audience:
            body["spec"]["audiences"] = [audience]
        resp = self.kube.request("POST", SERVICEACCOUNTS.path(meta["namespace"], sa, "token"), body)
        return str(resp["status"]["token"])
