"""Start, inspect and stop a real local control plane (etcd, apiserver, controller-manager).

Everything listens on 127.0.0.1 on free ports; certificates and keys are generated at start;
state (pids, ports, kubeconfig, logs, etcd data) lives in one directory that `stop` removes.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from devcluster import build, crds, pki

ADMIN = "admin"
KCM = "kube-controller-manager"
_CLIENTS = {
    ADMIN: ("devcluster-admin", "system:masters"),
    KCM: ("system:kube-controller-manager", None),
}
KCM_CONTROLLERS = (
    "namespace-controller",
    "garbage-collector-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "clusterrole-aggregation-controller",
    "root-ca-certificate-publisher-controller",
    "job-controller",
    "ttl-after-finished-controller",
    "pod-garbage-collector-controller",
)
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
READY_TIMEOUT = 120.0


class ClusterError(RuntimeError):
    """The control plane failed to start or a component crashed; carries the log tail."""


def default_state_dir() -> Path:
    env = os.environ.get("DEVCLUSTER_STATE")
    return Path(env) if env else build.cache_root().parent / "devcluster-run"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def log_tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0): reap it if it is our child, else read its state.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def write_kubeconfig(
    path: Path,
    server: str,
    ca_file: Path,
    *,
    user: str,
    cert: Path | None = None,
    key: Path | None = None,
    token: str | None = None,
    namespace: str | None = None,
) -> Path:
    creds: dict[str, str] = {}
    if cert and key:
        creds = {"client-certificate": str(cert), "client-key": str(key)}
    if token:
        creds = {"token": token}
    context: dict[str, str] = {"cluster": "devcluster", "user": user}
    if namespace:
        context["namespace"] = namespace
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "devcluster",
                "cluster": {"server": server, "certificate-authority": str(ca_file)},
            }
        ],
        "users": [{"name": user, "user": creds}],
        "contexts": [{"name": user, "context": context}],
        "current-context": user,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


@dataclass
class Cluster:
    """A running control plane: `start_cluster` makes one, `Cluster.load` finds one `up` made."""

    state_dir: Path
    port: int
    etcd_port: int
    pids: dict[str, int] = field(default_factory=dict)
    openshift: bool = False
    kube_version: str = build.KUBE_VERSION
    tied: bool = False  # processes die with the process that started them (test sessions)

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def pki(self) -> pki.Pki:
        return pki.Pki(self.state_dir / "pki")

    @property
    def ca_file(self) -> Path:
        return self.pki.ca_crt

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "admin.kubeconfig"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    def log_path(self, component: str) -> Path:
        return self.log_dir / f"{component}.log"

    # -- persistence ---------------------------------------------------------------------
    def save(self) -> None:
        data = asdict(self)
        data["state_dir"] = str(self.state_dir)
        (self.state_dir / "state.json").write_text(json.dumps(data, indent=2))

    @classmethod
    def load(cls, state_dir: Path) -> Cluster | None:
        try:
            data = json.loads((state_dir / "state.json").read_text())
        except FileNotFoundError:
            return None
        data["state_dir"] = Path(data["state_dir"])
        return cls(**data)

    # -- talking to it -------------------------------------------------------------------
    def _ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        ctx.load_cert_chain(str(self.pki.client_crt(ADMIN)), str(self.pki.client_key(ADMIN)))
        return ctx

    def raw(self, path: str, timeout: float = 5.0) -> tuple[int, str]:
        """GET a raw path as the admin: (status, body)."""
        req = urllib.request.Request(self.server + path)
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self._ssl_context()) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    def metrics_text(self) -> str:
        return self.raw("/metrics", timeout=15)[1]

    def api_client(self) -> Any:
        from kubernetes import client, config

        cfg = client.Configuration()
        config.load_kube_config(config_file=str(self.kubeconfig), client_configuration=cfg)
        return client.ApiClient(cfg)

    def processes(self) -> dict[str, bool]:
        return {name: pid_alive(pid) for name, pid in self.pids.items()}

    def crashed(self) -> list[str]:
        return [name for name, alive in self.processes().items() if not alive]

    def is_ready(self) -> bool:
        try:
            status, body = self.raw("/readyz", timeout=2)
            if status != 200 or body.strip() != "ok":
                return False
            return self.raw("/api/v1/namespaces/default", timeout=2)[0] == 200
        except (OSError, ssl.SSLError):
            return False

    # -- identities ----------------------------------------------------------------------
    def service_account_token(
        self,
        namespace: str,
        name: str,
        *,
        expiration: int = 3600,
        audiences: list[str] | None = None,
    ) -> str:
        from kubernetes import client

        with self.api_client() as api:
            core = client.CoreV1Api(api)
            body = client.AuthenticationV1TokenRequest(
                spec=client.V1TokenRequestSpec(
                    audiences=audiences or [SA_ISSUER], expiration_seconds=expiration
                )
            )
            resp = core.create_namespaced_service_account_token(name, namespace, body)
            return str(resp.status.token)

    def sa_kubeconfig(self, namespace: str, name: str, path: Path | None = None) -> Path:
        """A kubeconfig that authenticates as ServiceAccount namespace/name (TokenRequest)."""
        path = path or self.state_dir / f"sa-{namespace}-{name}.kubeconfig"
        token = self.service_account_token(namespace, name)
        return write_kubeconfig(
            path,
            self.server,
            self.ca_file,
            user=f"{namespace}-{name}",
            token=token,
            namespace=namespace,
        )

    def in_cluster_env(self, namespace: str, name: str, root: Path) -> dict[str, str]:
        """Lay out a pod's service-account directory and return the in-cluster environment."""
        root.mkdir(parents=True, exist_ok=True)
        (root / "token").write_text(self.service_account_token(namespace, name))
        (root / "token").chmod(0o600)
        shutil.copyfile(self.ca_file, root / "ca.crt")
        (root / "namespace").write_text(namespace)
        return {
            "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": str(self.port),
            "WORKSHOP_RUNNER_SERVICEACCOUNT_DIR": str(root),
        }

    # -- lifecycle -----------------------------------------------------------------------
    def restart_apiserver(
        self, *, sig: int = signal.SIGTERM, down_seconds: float = 0.0, grace: float = 15.0
    ) -> None:
        """Stop kube-apiserver with `sig` (SIGKILL after `grace`), keep it down `down_seconds`,
        start it again on the same port with the same flags; blocks until it is ready.
        For fault tests: clients see their connections and watches break, then reconnect."""
        pid = self.pids["kube-apiserver"]
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, 0)
        time.sleep(down_seconds)
        bins = build.build(log=lambda _msg: None)
        for attempt in range(5):
            try:
                _start_apiserver(self, bins)
                return
            except ClusterError as e:
                # The port is in the ephemeral range: for a moment another socket may hold it.
                if "address already in use" not in str(e) or attempt == 4:
                    raise
                time.sleep(1.0)

    def stop(self, *, remove: bool = True, grace: float = 10.0) -> None:
        """SIGTERM every process we started (by pid), SIGKILL after `grace`, remove state."""
        for pid in self.pids.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(pid_alive(p) for p in self.pids.values()):
            time.sleep(0.1)
        for pid in self.pids.values():
            if pid_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for pid in self.pids.values():
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, 0)
        if remove:
            shutil.rmtree(self.state_dir, ignore_errors=True)


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the parent dies (Linux PR_SET_PDEATHSIG).

    Not SIGTERM: a gracefully stopping apiserver whose etcd is already gone never exits."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)


def _spawn(cluster: Cluster, name: str, argv: list[str]) -> None:
    log = cluster.log_path(name).open("ab")
    # A test session's cluster must not outlive a killed pytest. PDEATHSIG fires when the
    # spawning *thread* ends, so only a main-thread spawn is tied.
    tie = cluster.tied and threading.current_thread() is threading.main_thread()
    proc = subprocess.Popen(
        argv,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=_die_with_parent if tie else None,  # noqa: PLW1509
    )
    log.close()
    cluster.pids[name] = proc.pid
    cluster.save()


def _wait(cluster: Cluster, what: str, ok: Any, timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if crashed := cluster.crashed():
            name = crashed[0]
            raise ClusterError(
                f"{name} exited while waiting for {what}; last log lines:\n"
                f"{log_tail(cluster.log_path(name))}"
            )
        if ok():
            return
        time.sleep(0.2)
    raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}")


def _etcd_ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as resp:
            return bool(json.loads(resp.read()).get("health") == "true")
    except (OSError, ValueError):
        return False


def _start_etcd(cluster: Cluster, bins: build.Built) -> None:
    peer = free_port()
    url = f"http://127.0.0.1:{cluster.etcd_port}"
    _spawn(
        cluster,
        "etcd",
        [
            str(bins.path("etcd")),
            "--name=devcluster",
            f"--data-dir={cluster.state_dir / 'etcd'}",
            f"--listen-client-urls={url}",
            f"--advertise-client-urls={url}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=devcluster=http://127.0.0.1:{peer}",
            # A throwaway test store: durability buys nothing and fsync costs seconds.
            "--unsafe-no-fsync",
            "--log-level=warn",
        ],
    )
    _wait(cluster, "etcd /health", lambda: _etcd_ready(cluster.etcd_port), timeout=30)


def _start_apiserver(cluster: Cluster, bins: build.Built) -> None:
    p = cluster.pki
    _spawn(
        cluster,
        "kube-apiserver",
        [
            str(bins.path("kube-apiserver")),
            f"--etcd-servers=http://127.0.0.1:{cluster.etcd_port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            # Loopback may not be an endpoint of the kubernetes Service; nothing here needs it.
            "--endpoint-reconciler-type=none",
            f"--secure-port={cluster.port}",
            f"--cert-dir={cluster.state_dir / 'apiserver-certs'}",
            f"--tls-cert-file={p.serving_crt}",
            f"--tls-private-key-file={p.serving_key}",
            f"--client-ca-file={p.ca_crt}",
            f"--service-account-issuer={SA_ISSUER}",
            f"--service-account-key-file={p.sa_pub}",
            f"--service-account-signing-key-file={p.sa_key}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--authorization-mode=RBAC",
            f"--requestheader-client-ca-file={p.front_proxy_ca}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={p.client_crt('front-proxy-client')}",
            f"--proxy-client-key-file={p.client_key('front-proxy-client')}",
            "--allow-privileged=true",
            "--profiling=false",
            "--v=1",
        ],
    )
    _wait(cluster, "kube-apiserver /readyz and the default namespace", cluster.is_ready)


def _start_controller_manager(cluster: Cluster, bins: build.Built) -> None:
    p = cluster.pki
    kubeconfig = write_kubeconfig(
        cluster.state_dir / "kcm.kubeconfig",
        cluster.server,
        p.ca_crt,
        user=KCM,
        cert=p.client_crt(KCM),
        key=p.client_key(KCM),
    )
    _spawn(
        cluster,
        "kube-controller-manager",
        [
            str(bins.path("kube-controller-manager")),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={free_port()}",
            "--leader-elect=false",
            "--use-service-account-credentials=true",
            f"--controllers={','.join(KCM_CONTROLLERS)}",
            f"--service-account-private-key-file={p.sa_key}",
            f"--root-ca-file={p.ca_crt}",
            "--kube-api-qps=200",
            "--kube-api-burst=400",
            "--concurrent-job-syncs=20",
            "--v=1",
        ],
    )
    _wait(cluster, "kube-controller-manager to start", lambda: _kcm_running(cluster), timeout=60)


def _kcm_running(cluster: Cluster) -> bool:
    # The root-ca-cert-publisher writes kube-root-ca.crt into every namespace once it runs.
    return (
        cluster.raw("/api/v1/namespaces/default/configmaps/kube-root-ca.crt", timeout=2)[0] == 200
    )


def start_cluster(
    state_dir: Path | None = None, *, openshift: bool = False, log: Any = None, tied: bool = False
) -> Cluster:
    """Build (or reuse) the binaries and start the control plane; blocks until it is ready.

    `tied`: the components get SIGTERM when this process dies (for test sessions)."""
    say = log or (lambda _msg: None)
    state_dir = state_dir or default_state_dir()
    bins = build.build(log=say)
    shutil.rmtree(state_dir, ignore_errors=True)
    (state_dir / "logs").mkdir(parents=True)
    cluster = Cluster(
        state_dir=state_dir,
        port=free_port(),
        etcd_port=free_port(),
        openshift=openshift,
        tied=tied,
    )
    pki.generate(cluster.pki.dir, _CLIENTS)
    write_kubeconfig(
        cluster.kubeconfig,
        cluster.server,
        cluster.ca_file,
        user=ADMIN,
        cert=cluster.pki.client_crt(ADMIN),
        key=cluster.pki.client_key(ADMIN),
    )
    cluster.save()
    try:
        say("starting etcd")
        _start_etcd(cluster, bins)
        say("starting kube-apiserver")
        _start_apiserver(cluster, bins)
        say("starting kube-controller-manager")
        _start_controller_manager(cluster, bins)
        say("installing CRDs")
        with cluster.api_client() as api:
            crds.install(api, openshift=openshift)
    except BaseException:
        cluster.stop(remove=False)
        raise
    return cluster


@contextlib.contextmanager
def running(state_dir: Path, *, openshift: bool = False) -> Iterator[Cluster]:
    cluster = start_cluster(state_dir, openshift=openshift)
    try:
        yield cluster
    finally:
        cluster.stop()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
