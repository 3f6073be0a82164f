"""The fault proxy against a small local HTTPS upstream: forwarding, streaming, every fault kind,
the at-most-K-in-a-row rule, reproducibility from the seed, and the counts."""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import urllib3
import yaml
from cryptography.hazmat.primitives import serialization

from devcluster import pki
from devcluster.faultproxy import FaultPlan, FaultProxy, Request

TOKEN = "Bearer s3cr3t-token"
EVENTS = 5
EVENT_GAP = 0.2


class _Upstream(ThreadingHTTPServer):
    daemon_threads = True
    writes = 0
    authorized: list[bool]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Upstream

    def log_message(self, *_: Any) -> None:
        pass

    def _json(self, code: int, data: Any) -> None:
        body = json.dumps(data).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.server.authorized.append(self.headers.get("Authorization") == TOKEN)
        if "watch=true" in self.path:
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(EVENTS):
                line = json.dumps({"type": "ADDED", "n": i}).encode() + b"\n"
                self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                self.wfile.flush()
                time.sleep(EVENT_GAP)
            self.wfile.write(b"0\r\n\r\n")
            return
        self._json(200, {"path": self.path})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(length)
        self.server.writes += 1
        self._json(201, {"got": json.loads(body)})


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Any]:
    d = tmp_path_factory.mktemp("ca")
    cert, key = pki.make_ca(d, "test-ca")
    (d / "ca.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "ca.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return d / "ca.crt", d / "ca.key", (cert, key)


@pytest.fixture
def upstream(ca: tuple[Path, Path, Any], tmp_path: Path) -> Iterator[_Upstream]:
    pki.make_leaf(
        ca[2], tmp_path / "up.crt", tmp_path / "up.key", "up", ips=("127.0.0.1",), server=True
    )
    server = _Upstream(("127.0.0.1", 0), _Handler)
    server.authorized = []
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(tmp_path / "up.crt"), str(tmp_path / "up.key"))
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _proxy(ca: tuple[Path, Path, Any], upstream: _Upstream, plan: FaultPlan) -> FaultProxy:
    port = upstream.server_address[1]
    return FaultProxy(f"https://127.0.0.1:{port}", ca[0], ca[1], plan)


@pytest.fixture
def http(ca: tuple[Path, Path, Any]) -> urllib3.PoolManager:
    return urllib3.PoolManager(ca_certs=str(ca[0]), retries=False, timeout=10)


def _get(http: urllib3.PoolManager, proxy: FaultProxy, path: str = "/ok") -> Any:
    return http.request("GET", proxy.url + path, headers={"Authorization": TOKEN})


def test_forwards_with_the_clients_token_and_counts(
    ca: Any, upstream: _Upstream, http: urllib3.PoolManager
) -> None:
    with _proxy(ca, upstream, FaultPlan()) as proxy:
        for _ in range(3):  # keep-alive: several requests on one client connection
            resp = _get(http, proxy, "/ok?x=1")
            assert resp.status == 200
            assert resp.json() == {"path": "/ok?x=1"}
        post = http.request("POST", proxy.url + "/w", json={"a": 1})
        assert post.status == 201
        assert post.json() == {"got": {"a": 1}}
        assert proxy.stats() == {
            "connections": 1,
            "requests": 4,
            "forwarded": 4,
            "writes": 1,
            "writes_ok": 1,
            "methods": {"GET": 3, "POST": 1},
            "upstream_errors": 0,
            "faults": {},
            "injected": 0,
        }
    assert upstream.authorized == [True, True, True]


def test_watch_streams_as_it_arrives(
    ca: Any, upstream: _Upstream, http: urllib3.PoolManager
) -> None:
    with _proxy(ca, upstream, FaultPlan()) as proxy:
        started = time.monotonic()
        resp = http.request("GET", proxy.url + "/w?watch=true", preload_content=False, headers={})
        chunks = resp.stream(1024)  # one generator: closing one closes the connection
        first = next(chunks)
        assert time.monotonic() - started < EVENT_GAP * (EVENTS - 2)
        assert json.loads(first.splitlines()[0])["n"] == 0
        rest = b"".join(chunks)
        lines = (first + rest).splitlines()
        assert [json.loads(x)["n"] for x in lines] == list(range(EVENTS))


@pytest.mark.parametrize("code", [429, 500, 503])
def test_error_answers_are_kubernetes_statuses(
    ca: Any, upstream: _Upstream, http: urllib3.PoolManager, code: int
) -> None:
    plan = FaultPlan({str(code): 1.0}, retry_after=3)
    with _proxy(ca, upstream, plan) as proxy:
        resp = _get(http, proxy)
        assert resp.status == code
        status = resp.json()
        assert status["kind"] == "Status"
        assert status["code"] == code
        assert (resp.headers.get("Retry-After") == "3") == (code == 429)
        assert proxy.stats()["faults"] == {str(code): 1}
        assert proxy.stats()["forwarded"] == 0


def test_reset_is_not_forwarded_and_lost_response_is(
    ca: Any, upstream: _Upstream, http: urllib3.PoolManager
) -> None:
    with _proxy(ca, upstream, FaultPlan()) as proxy:
        proxy.inject("reset")
        with pytest.raises(urllib3.exceptions.ProtocolError):
            http.request("POST", proxy.url + "/w", json={})
        assert upstream.writes == 0
        proxy.inject("lost_response")
        with pytest.raises(urllib3.exceptions.ProtocolError):
            http.request("POST", proxy.url + "/w", json={})
        assert upstream.writes == 1  # the write happened; its answer was lost
        assert http.request("POST", proxy.url + "/w", json={}).status == 201
        assert proxy.stats()["faults"] == {"reset": 1, "lost_response": 1}


def test_eof_looks_like_an_unexpected_tls_eof(
    ca: Any, upstream: _Upstream, http: urllib3.PoolManager
) -> None:
    with _proxy(ca, upstream, FaultPlan()) as proxy:
        proxy.inject("eof")
        with pytest.raises((urllib3.exceptions.SSLError, urllib3.exceptions.ProtocolError)):
            _get(http, proxy)
        assert proxy.stats()["faults"] == {"eof": 1}


def test_handshake_eof_cuts_new_connections_only(
    ca: Any, upstream: _Upstream, http: urllib3.PoolManager
) -> None:
    plan = FaultPlan({"handshake_eof": 1.0}, max_consecutive=1)
    with _proxy(ca, upstream, plan) as proxy:
        with pytest.raises(urllib3.exceptions.SSLError):
            _get(http, proxy)
        assert _get(http, proxy).status == 200  # K=1: the next connection is clean
        assert _get(http, proxy).status == 200  # same (kept-alive) connection: no new draw
        assert proxy.stats()["faults"] == {"handshake_eof": 1}


def test_slow_holds_the_answer_back(
    ca: Any, upstream: _Upstream, http: urllib3.PoolManager
) -> None:
    plan = FaultPlan({"slow": 1.0}, slow_seconds=(0.4, 0.5), max_consecutive=1)
    with _proxy(ca, upstream, plan) as proxy:
        started = time.monotonic()
        assert _get(http, proxy).status == 200
        assert time.monotonic() - started >= 0.4
        started = time.monotonic()
        assert _get(http, proxy).status == 200  # K=1: the next one is clean
        assert time.monotonic() - started < 0.4


def test_drop_watch_cuts_the_stream(
    ca: Any, upstream: _Upstream, http: urllib3.PoolManager
) -> None:
    plan = FaultPlan({"drop_watch": 1.0}, drop_after_seconds=(0.3, 0.3))
    with _proxy(ca, upstream, plan) as proxy:
        assert _get(http, proxy).status == 200  # not a watch: untouched
        resp = http.request("GET", proxy.url + "/w?watch=true", preload_content=False)
        received: list[bytes] = []
        with pytest.raises(urllib3.exceptions.ProtocolError):
            received.extend(resp.stream(1024))
        assert 0 < len(b"".join(received).splitlines()) < EVENTS
        assert proxy.stats()["faults"] == {"drop_watch": 1}


def test_never_more_than_k_faults_in_a_row_per_request(
    ca: Any, upstream: _Upstream, http: urllib3.PoolManager
) -> None:
    plan = FaultPlan({"503": 1.0}, max_consecutive=2)
    with _proxy(ca, upstream, plan) as proxy:
        codes = [_get(http, proxy, "/a?rv=1").status for _ in range(6)]
        assert codes == [503, 503, 200, 503, 503, 200]
        assert _get(http, proxy, "/b").status == 503  # another key has its own streak
        assert proxy.stats()["faults"] == {"503": 5}


def test_a_seed_reproduces_the_faults_per_request(
    ca: Any, upstream: _Upstream, http: urllib3.PoolManager
) -> None:
    def run(seed: int) -> list[int]:
        plan = FaultPlan({"429": 0.3, "500": 0.2}, seed=seed, max_consecutive=3)
        with _proxy(ca, upstream, plan) as proxy:
            return [_get(http, proxy, f"/p{i % 3}").status for i in range(30)]

    first = run(7)
    assert first == run(7)
    assert first != run(8)
    assert {429, 500, 200} <= set(first)


def test_match_and_inject_select_requests(
    ca: Any, upstream: _Upstream, http: urllib3.PoolManager
) -> None:
    plan = FaultPlan({"500": 1.0}, match=lambda r: r.method == "POST")
    with _proxy(ca, upstream, plan) as proxy:
        assert _get(http, proxy).status == 200
        assert http.request("POST", proxy.url + "/w", json={}).status == 500
        proxy.inject("429", times=2, match=lambda r: r.path == "/only")
        assert _get(http, proxy, "/other").status == 200
        assert _get(http, proxy, "/only").status == 429
        assert _get(http, proxy, "/only").status == 429
        assert _get(http, proxy, "/only").status == 200


def test_an_unreachable_upstream_is_a_503_not_a_broken_connection(
    ca: Any, http: urllib3.PoolManager
) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with FaultProxy(f"https://127.0.0.1:{port}", ca[0], ca[1]) as proxy:
        resp = _get(http, proxy)
        assert resp.status == 503
        assert proxy.stats()["upstream_errors"] == 1
        assert proxy.stats()["injected"] == 0


def test_kubeconfig_points_at_the_proxy(ca: Any, upstream: _Upstream, tmp_path: Path) -> None:
    source = tmp_path / "sa.kubeconfig"
    source.write_text(
        yaml.safe_dump(
            {
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
            }
        )
    )
    with _proxy(ca, upstream, FaultPlan()) as proxy:
        out = yaml.safe_load(proxy.kubeconfig(source, tmp_path / "p.kubeconfig").read_text())
        assert out["clusters"][0]["cluster"] == {
            "server": proxy.url,
            "certificate-authority": str(ca[0]),
        }
        assert out["users"] == [{"name": "u", "user": {"token": "t"}}]


def test_request_keys_and_plan_validation() -> None:
    watch = Request("GET", "/api/v1/namespaces", {"watch": ["true"], "resourceVersion": ["5"]})
    assert watch.watch
    assert watch.key == "GET /api/v1/namespaces watch"
    assert Request("GET", "/api/v1/watch/pods").watch
    assert Request("PATCH", "/x", {"fieldManager": ["m"]}).key == "PATCH /x"
    with pytest.raises(ValueError, match="unknown fault kind"):
        FaultPlan({"teapot": 0.1})
    with pytest.raises(ValueError, match="more than 1"):
        FaultPlan({"429": 0.6, "500": 0.6})
