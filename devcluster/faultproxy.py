"""A fault-injecting HTTPS proxy on loopback, between a client (the runner) and the apiserver.

Why our own: the fault suite needs faults the way a real cluster front end produces them (an
overloaded apiserver answering 429 with Retry-After, a load balancer resetting connections or
dropping long watches, a slow control plane), decided per request, reproducibly from a seed,
and counted. A TCP pass-through cannot see requests; a general-purpose proxy cannot be told
"never more than K faults in a row for the same request".

How it works
- It terminates TLS with a serving certificate signed by the devcluster CA (SANs 127.0.0.1 and
  localhost), so a kubeconfig that trusts the cluster CA trusts the proxy: only its `server`
  changes (`FaultProxy.kubeconfig`).
- Every HTTP/1.1 request is read, then either answered with a fault or forwarded, unchanged,
  over a fresh TLS connection to the real apiserver (verified against the cluster CA). The
  client's `Authorization: Bearer` header is forwarded as is: run the client with a
  ServiceAccount kubeconfig (`Cluster.sa_kubeconfig`), not with the admin's client certificate
  (the proxy cannot forward a TLS client certificate; such a client reaches the apiserver as
  anonymous). The response is relayed as it arrives, chunk by chunk, so watches stream.
- The proxy never logs or stores headers or bodies.

Faults (`KINDS`), chosen per request by `FaultPlan`:
  429            answer 429 TooManyRequests with `Retry-After: <plan.retry_after>`
  500, 503       answer a Kubernetes `Status` with that code
  reset          the request is NOT forwarded; the connection is reset (TCP RST)
  lost_response  the request IS forwarded (a write happens), then the connection is reset
                 before the client sees the answer: the client must not create things twice
  eof            the connection is closed without a TLS close_notify before any answer (what
                 a crashed server or an idle-closing load balancer looks like)
  slow           the response is held back for a random time in `plan.slow_seconds`
  drop_watch     a watch is relayed, then cut (RST) after a random time in
                 `plan.drop_after_seconds`; counted only when the cut actually happens
  handshake_eof  a new connection is closed before the TLS handshake completes (what a
                 TCP load balancer in front of a down apiserver does); decided per connection
`lost_response` applies to non-watch requests, `drop_watch` only to watches, `handshake_eof`
only to connections (key `TLS handshake`), the rest to every request.

Python clients note: with OpenSSL 3, CPython reports a reset on a TLS socket as an unexpected
EOF, which urllib3 turns into `ProtocolError(RemoteDisconnected)`; `reset` and `eof` look alike
to the runner (they differ for other clients). An EOF during the handshake surfaces as
`urllib3.exceptions.SSLError`, not a connection error.

Choosing: each request has a key, `METHOD path` (+ ` watch`); query strings are ignored, so a
retried request (or a resumed watch) has the same key. The n-th request of a key draws from
`random.Random(f"{seed}:{key}:{n}")`, so a plan is reproducible per key whatever the
interleaving of concurrent requests. A draw `u` picks the first kind whose cumulative rate
exceeds it (only kinds that apply to the request count). Faults scheduled with `inject()` come
before the draw. Whatever the plan, a key never gets more than `plan.max_consecutive` faults in
a row: the next request of that key is forwarded cleanly, so a client that retries converges.

Counts: `stats()` -> connections and requests seen, requests forwarded (by method; how many
were writes, and how many of those the apiserver accepted with a 2xx), faults by kind.
`python -m devcluster.faultproxy` runs one in the foreground for manual experiments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import socket
import ssl
import struct
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from devcluster import pki

KINDS = (
    "429",
    "500",
    "503",
    "reset",
    "lost_response",
    "eof",
    "slow",
    "drop_watch",
    "handshake_eof",
)
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
STATUS_REASONS = {429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable"}
_PHRASES = {429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}
_HEAD_LIMIT = 1 << 20
_COPY = 1 << 16


@dataclass(frozen=True)
class Request:
    """What a plan sees of a request: never its headers or body."""

    method: str
    path: str
    query: Mapping[str, list[str]] = field(default_factory=dict)

    @property
    def watch(self) -> bool:
        return self.query.get("watch", [""])[0] in ("true", "1") or "/watch/" in self.path

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}{' watch' if self.watch else ''}"


HANDSHAKE = Request("TLS", "handshake")  # the per-connection decision, before any request


def applies(kind: str, request: Request) -> bool:
    if (kind == "handshake_eof") != (request is HANDSHAKE):
        return False
    if kind == "drop_watch":
        return request.watch
    if kind == "lost_response":
        return not request.watch
    return True


@dataclass(frozen=True)
class FaultPlan:
    """Rates per fault kind (probability per request), the seed, and the fault shapes."""

    rates: Mapping[str, float] = field(default_factory=dict)
    seed: int = 0
    max_consecutive: int = 2
    retry_after: int = 1
    slow_seconds: tuple[float, float] = (0.2, 1.5)
    drop_after_seconds: tuple[float, float] = (0.2, 2.0)
    match: Callable[[Request], bool] | None = None

    def __post_init__(self) -> None:
        unknown = set(self.rates) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown fault kind(s) {sorted(unknown)}; known: {KINDS}")
        if sum(self.rates.values()) > 1.0:
            raise ValueError("fault rates add up to more than 1")

    def draw(self, request: Request, n: int) -> tuple[str | None, random.Random]:
        """The fault (or None) for the n-th request with this key, and the RNG for its shape."""
        rng = random.Random(f"{self.seed}:{request.key}:{n}")
        u = rng.random()
        if self.match is not None and not self.match(request):
            return None, rng
        total = 0.0
        for kind in KINDS:
            if kind in self.rates and applies(kind, request):
                total += self.rates[kind]
                if u < total:
                    return kind, rng
        return None, rng


NO_FAULTS = FaultPlan()


@dataclass
class _Scheduled:
    kind: str
    remaining: int
    match: Callable[[Request], bool] | None


@dataclass
class _Decision:
    kind: str | None
    rng: random.Random


class FaultProxy:
    """The proxy; `start()` runs it on a background thread (an asyncio loop), `stop()` ends it.

    >>> with FaultProxy(cluster.server, cluster.pki.ca_crt, cluster.pki.ca_key, plan) as proxy:
    ...     kubeconfig = proxy.kubeconfig(cluster.sa_kubeconfig("ns", "sa"), tmp / "kc")
    """

    def __init__(
        self,
        upstream: str,
        ca_crt: Path,
        ca_key: Path,
        plan: FaultPlan = NO_FAULTS,
        *,
        workdir: Path | None = None,
    ) -> None:
        split = urlsplit(upstream)
        if split.scheme != "https" or not split.hostname or not split.port:
            raise ValueError(f"upstream must be https://host:port, not {upstream!r}")
        self.upstream_host, self.upstream_port = split.hostname, split.port
        self.ca_crt = ca_crt
        self._ca_key = ca_key
        self._workdir = workdir
        self._plan = plan
        self._lock = threading.Lock()
        self._seen: Counter[str] = Counter()
        self._streak: Counter[str] = Counter()
        self._scheduled: list[_Scheduled] = []
        self._faults: Counter[str] = Counter()
        self._requests = 0
        self._forwarded = 0
        self._connections = 0
        self._writes_ok = 0
        self._methods: Counter[str] = Counter()
        self._upstream_errors = 0
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._server_ctx: ssl.SSLContext | None = None
        self._up_ctx: ssl.SSLContext | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None

    # -- control (any thread) ------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def set_plan(self, plan: FaultPlan) -> None:
        with self._lock:
            self._plan = plan

    def inject(
        self, kind: str, times: int = 1, match: Callable[[Request], bool] | None = None
    ) -> None:
        """Force `kind` on the next `times` matching requests (still at most K in a row)."""
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {KINDS}")
        with self._lock:
            self._scheduled.append(_Scheduled(kind, times, match))

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "connections": self._connections,
                "requests": self._requests,
                "forwarded": self._forwarded,
                "writes": sum(n for m, n in self._methods.items() if m in WRITE_METHODS),
                "writes_ok": self._writes_ok,
                "methods": dict(self._methods),
                "upstream_errors": self._upstream_errors,
                "faults": dict(self._faults),
                "injected": sum(self._faults.values()),
            }

    def kubeconfig(self, source: Path, dest: Path) -> Path:
        """A copy of `source` whose clusters point at the proxy (same CA, same credentials)."""
        config = yaml.safe_load(source.read_text())
        for entry in config.get("clusters") or []:
            entry["cluster"]["server"] = self.url
            entry["cluster"]["certificate-authority"] = str(self.ca_crt)
            entry["cluster"].pop("certificate-authority-data", None)
        dest.write_text(yaml.safe_dump(config, sort_keys=False))
        dest.chmod(0o600)
        return dest

    def start(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._run, name="faultproxy", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._startup_error is not None:
            raise RuntimeError(f"fault proxy failed to start: {self._startup_error}")
        if not self._ready.is_set():
            raise RuntimeError("fault proxy did not start within 30s")
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(self._shutdown)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- the loop thread -----------------------------------------------------------------
    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            with tempfile.TemporaryDirectory(dir=self._workdir) as tmp:
                self._server_ctx = self._server_context(Path(tmp))
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._serve, "127.0.0.1", 0, limit=_HEAD_LIMIT)
                )
            self.port = self._server.sockets[0].getsockname()[1]
        except Exception as e:
            self._startup_error = e
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            for _ in range(5):  # ending a connection may start a task (a close, a wait_for)
                pending = asyncio.all_tasks(loop)
                if not pending:
                    break
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        assert self._loop is not None
        self._loop.stop()

    def _server_context(self, tmp: Path) -> ssl.SSLContext:
        ca_cert = x509.load_pem_x509_certificate(self.ca_crt.read_bytes())
        ca_key = serialization.load_pem_private_key(self._ca_key.read_bytes(), password=None)
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise TypeError("the devcluster CA key is expected to be an EC key")
        crt, key = tmp / "proxy.crt", tmp / "proxy.key"
        pki.make_leaf(
            (ca_cert, ca_key),
            crt,
            key,
            "devcluster-faultproxy",
            dns=("localhost",),
            ips=("127.0.0.1",),
            server=True,
        )
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(crt), str(key))
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx

    def _upstream_context(self) -> ssl.SSLContext:
        if self._up_ctx is None:
            self._up_ctx = ssl.create_default_context(cafile=str(self.ca_crt))
            self._up_ctx.set_alpn_protocols(["http/1.1"])
        return self._up_ctx

    def _decide(self, request: Request) -> _Decision:
        with self._lock:
            if request is HANDSHAKE:
                self._connections += 1
            else:
                self._requests += 1
            key = request.key
            n = self._seen[key]
            self._seen[key] += 1
            kind, rng = self._plan.draw(request, n)
            if self._streak[key] >= self._plan.max_consecutive:
                kind = None
            else:
                for entry in self._scheduled:
                    if applies(entry.kind, request) and (
                        entry.match is None or entry.match(request)
                    ):
                        kind = entry.kind
                        entry.remaining -= 1
                        if entry.remaining <= 0:
                            self._scheduled.remove(entry)
                        break
            if kind is None:
                self._streak[key] = 0
            else:
                self._streak[key] += 1
                if kind != "drop_watch":
                    self._faults[kind] += 1
            return _Decision(kind, rng)

    def _count(self, kind: str) -> None:
        with self._lock:
            self._faults[kind] += 1

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        clean = False
        try:
            if self._decide(HANDSHAKE).kind == "handshake_eof":
                # Read the ClientHello, then close (FIN): the handshake meets an EOF.
                await asyncio.wait_for(reader.read(_COPY), 10)
                writer.close()
                return
            assert self._server_ctx is not None
            await writer.start_tls(self._server_ctx)
            keep_alive = True
            while keep_alive:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    break  # the client closed its (idle) connection
                request_line, headers = _parse_head(head)
                method, target, _version = request_line.split(" ", 2)
                body = await _read_body(reader, headers)
                split = urlsplit(target)
                request = Request(method, split.path, parse_qs(split.query))
                keep_alive = await self._handle(request, head, body, headers, writer)
            clean = True
        except (
            ConnectionError,
            OSError,
            ssl.SSLError,
            asyncio.IncompleteReadError,
            ValueError,
            TimeoutError,
        ):
            pass
        except asyncio.CancelledError:
            pass  # stop(): end quietly (a cancelled connection task is logged as an error)
        finally:
            if clean and not writer.transport.is_closing():
                writer.close()  # with a TLS close_notify
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(writer.wait_closed(), 5)
            else:
                writer.transport.abort()

    async def _handle(
        self,
        request: Request,
        head: bytes,
        body: bytes,
        headers: dict[str, str],
        writer: asyncio.StreamWriter,
    ) -> bool:
        """Answer one request; False when the client connection must end."""
        plan = self._plan
        decision = self._decide(request)
        kind = decision.kind
        if kind in ("429", "500", "503"):
            writer.write(_status_response(int(kind), plan.retry_after))
            await writer.drain()
            return True
        if kind == "reset":
            _reset(writer)
            return False
        if kind == "eof":
            # A FIN without close_notify: the TLS layer sees an unexpected EOF.
            writer.transport.abort()
            return False
        try:
            up_reader, up_writer = await asyncio.open_connection(
                self.upstream_host,
                self.upstream_port,
                ssl=self._upstream_context(),
                server_hostname=self.upstream_host,
                limit=_HEAD_LIMIT,
            )
        except OSError:
            # The apiserver is down (restarting): answer like a load balancer with no backend.
            with self._lock:
                self._upstream_errors += 1
            writer.write(_status_response(503, plan.retry_after, "no upstream apiserver"))
            await writer.drain()
            return True
        try:
            up_writer.write(head + body)
            await up_writer.drain()
            with self._lock:
                self._forwarded += 1
                self._methods[request.method] += 1
            status_head = await up_reader.readuntil(b"\r\n\r\n")
            resp_line, resp_headers = _parse_head(status_head)
            status = int(resp_line.split(" ", 2)[1])
            if request.method in WRITE_METHODS and 200 <= status < 300:
                with self._lock:
                    self._writes_ok += 1
            if kind == "lost_response":
                _reset(writer)
                return False
            if kind == "slow":
                await asyncio.sleep(decision.rng.uniform(*plan.slow_seconds))
            timer = None
            if kind == "drop_watch":
                delay = decision.rng.uniform(*plan.drop_after_seconds)
                loop = asyncio.get_running_loop()
                timer = loop.call_later(delay, self._drop, writer, up_writer)
            try:
                writer.write(status_head)
                ended = await _relay_body(request.method, status, resp_headers, up_reader, writer)
            finally:
                if timer is not None:
                    timer.cancel()
            await writer.drain()
            return ended and not _closes(headers, resp_headers)
        finally:
            up_writer.transport.abort()

    def _drop(self, writer: asyncio.StreamWriter, up_writer: asyncio.StreamWriter) -> None:
        self._count("drop_watch")
        _reset(writer)
        up_writer.transport.abort()


def _parse_head(head: bytes) -> tuple[str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return lines[0], headers


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise ValueError("chunked request bodies are not supported")
    length = int(headers.get("content-length", "0") or 0)
    return await reader.readexactly(length) if length else b""


async def _relay_body(
    method: str,
    status: int,
    headers: dict[str, str],
    up: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> bool:
    """Copy the response body as it arrives; False when it ended by closing the connection."""
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return True
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size_line = await up.readuntil(b"\r\n")
            writer.write(size_line)
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while True:  # trailers, then the blank line
                    line = await up.readuntil(b"\r\n")
                    writer.write(line)
                    if line == b"\r\n":
                        return True
            writer.write(await up.readexactly(size + 2))
            await writer.drain()
    if "content-length" in headers:
        remaining = int(headers["content-length"])
        while remaining:
            chunk = await up.read(min(remaining, _COPY))
            if not chunk:
                raise ConnectionError("upstream closed mid-body")
            writer.write(chunk)
            remaining -= len(chunk)
            await writer.drain()
        return True
    while chunk := await up.read(_COPY):
        writer.write(chunk)
        await writer.drain()
    return False


def _closes(request_headers: dict[str, str], response_headers: dict[str, str]) -> bool:
    return any(
        h.get("connection", "").lower() == "close" for h in (request_headers, response_headers)
    )


def _reset(writer: asyncio.StreamWriter) -> None:
    """Abort with SO_LINGER 0: the peer gets a TCP RST (ECONNRESET), not a clean close."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _status_response(code: int, retry_after: int, why: str = "") -> bytes:
    body = json.dumps(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": f"devcluster.faultproxy: {why or 'injected ' + _PHRASES[code]}",
            "reason": STATUS_REASONS[code],
            "code": code,
        }
    ).encode()
    lines = [
        f"HTTP/1.1 {code} {_PHRASES[code]}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    if code == 429:
        lines.append(f"Retry-After: {retry_after}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _parse_rates(values: list[str]) -> dict[str, float]:
    rates: dict[str, float] = {}
    for value in values:
        kind, _, rate = value.partition("=")
        rates[kind] = float(rate)
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devcluster.faultproxy", description="Run a fault proxy in the foreground."
    )
    parser.add_argument("--state", type=Path, help="devcluster state dir (default: `up`'s)")
    parser.add_argument("--rate", action="append", default=[], help="KIND=P, e.g. 429=0.05")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-consecutive", type=int, default=2)
    args = parser.parse_args(argv)
    from devcluster.cluster import Cluster, default_state_dir

    cluster = Cluster.load(args.state or default_state_dir())
    if cluster is None:
        parser.error("no devcluster running (python -m devcluster up)")
    plan = FaultPlan(_parse_rates(args.rate), args.seed, args.max_consecutive)
    with FaultProxy(cluster.server, cluster.pki.ca_crt, cluster.pki.ca_key, plan) as proxy:
        print(f"fault proxy {proxy.url} -> {cluster.server}; Ctrl-C to stop", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
        print(json.dumps(proxy.stats()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
