"""The simulators' API client retries a 429 that carries Retry-After, as client-go does."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from devcluster.sim.kube import RETRY_AFTER_ATTEMPTS, Kube, KubeError


class Script:
    """Answers 429 (with or without Retry-After) `busy` times, then 200."""

    def __init__(self) -> None:
        self.busy = 0
        self.retry_after: str | None = "0"
        self.calls = 0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Kube, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            script.calls += 1
            if script.calls <= script.busy:
                body = json.dumps(
                    {"kind": "Status", "code": 429, "message": "storage is (re)initializing"}
                ).encode()
                self.send_response(429)
                if script.retry_after is not None:
                    self.send_header("Retry-After", script.retry_after)
            else:
                body = json.dumps({"kind": "NamespaceList", "items": []}).encode()
                self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "c", "cluster": {"server": f"http://127.0.0.1:{httpd.server_port}"}}
                ],
                "users": [{"name": "u", "user": {}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    kube = Kube(kubeconfig)
    try:
        yield kube, script
    finally:
        kube.close()
        httpd.shutdown()


def test_a_429_with_retry_after_is_retried_until_it_succeeds(server: tuple[Kube, Script]) -> None:
    kube, script = server
    script.busy = 3
    assert kube.request("GET", "/api/v1/namespaces")["kind"] == "NamespaceList"
    assert script.calls == 4


def test_a_429_without_retry_after_fails_at_once(server: tuple[Kube, Script]) -> None:
    kube, script = server
    script.busy, script.retry_after = 1, None
    with pytest.raises(KubeError) as err:
        kube.request("GET", "/api/v1/namespaces")
    assert err.value.status == 429
    assert script.calls == 1


def test_retries_stop_after_client_gos_limit(server: tuple[Kube, Script]) -> None:
    kube, script = server
    script.busy = 100
    with pytest.raises(KubeError) as err:
        kube.request("GET", "/api/v1/namespaces")
    assert err.value.status == 429
    assert "(re)initializing" in err.value.message
    assert script.calls == RETRY_AFTER_ATTEMPTS + 1
