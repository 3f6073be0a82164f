"""No token on any path: a token loaded with a trailing newline is trimmed before it is sent,
a malformed one is refused by name of its source only, and an unexpected exception shows its
type and a redacted message. Every output of the process (stdout, stderr, the termination
message) is searched for the token."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from runner import cli, logs
from runner.errors import InvalidInput
from runner.kube import load_configuration

TOKEN = "eyJhbGciOiJSUzI1NiJ9.c2VrcmV0LXBheWxvYWQ.c2lnbmF0dXJlLXBhcnQ"  # JWT-shaped
TOKEN_PARTS = ("c2VrcmV0LXBheWxvYWQ", "c2lnbmF0dXJlLXBhcnQ")  # no fragment of it may show


class _Unauthorized(BaseHTTPRequestHandler):
    """An API server that rejects every credential, recording the Authorization headers."""

    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.seen.append(self.headers.get("Authorization", ""))
        body = json.dumps({"kind": "Status", "code": 401, "message": "Unauthorized"}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture(autouse=True)
def _no_registered_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logs, "_secrets", set())


@pytest.fixture
def server() -> Iterator[str]:
    _Unauthorized.seen = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Unauthorized)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def kubeconfig(tmp_path: Path, server: str, user: dict[str, str]) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": user}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return path


def run(
    tmp_path: Path, argv: list[str], env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    term = tmp_path / "termination-log"
    code = cli.main(
        ["run", "--user", "u1", "--log-format", "json", "--termination-log", str(term), *argv],
        env={"HOME": "/nonexistent", **env},
    )
    out = capsys.readouterr()
    everything = out.out + out.err + (term.read_text() if term.exists() else "")
    for part in TOKEN_PARTS:
        assert part not in everything
    return code, everything


@pytest.mark.parametrize("source", ["token", "tokenFile"])
def test_kubeconfig_token_with_a_trailing_newline_is_trimmed(
    source: str, tmp_path: Path, server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    user = {"token": TOKEN + "\n"}
    if source == "tokenFile":
        (tmp_path / "token").write_text(TOKEN + "\n")
        user = {"tokenFile": str(tmp_path / "token")}
    code, out = run(tmp_path, ["--kubeconfig", str(kubeconfig(tmp_path, server, user))], {}, capsys)
    assert _Unauthorized.seen
    assert set(_Unauthorized.seen) == {f"Bearer {TOKEN}"}
    assert code == 4
    assert "unauthorized (the credentials were rejected)" in out


def service_account_dir(tmp_path: Path, token: str) -> dict[str, str]:
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text(token)
    (sa / "ca.crt").write_text("not parsed before the first request")
    (sa / "namespace").write_text("workshop-runner")
    return {
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": "6443",
        "WORKSHOP_RUNNER_SERVICEACCOUNT_DIR": str(sa),
    }


def test_service_account_token_with_a_trailing_newline_is_trimmed_on_every_read(
    tmp_path: Path,
) -> None:
    env = service_account_dir(tmp_path, TOKEN + "\n")
    cfg, _ = load_configuration(None, None, env)
    # Before each request the loader's refresh hook sets the raw token again (re-reading the
    # rotated file once it is due): every read is trimmed, not only the first.
    for _ in range(3):
        assert cfg.auth_settings()["BearerToken"]["value"] == f"bearer {TOKEN}"


def test_kubeconfig_token_is_trimmed_on_every_read(tmp_path: Path, server: str) -> None:
    path = kubeconfig(tmp_path, server, {"token": TOKEN + "\n"})
    cfg, _ = load_configuration(path, None, {})
    for _ in range(3):
        assert cfg.auth_settings()["BearerToken"]["value"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize("bad", [TOKEN[:20] + "\n" + TOKEN[20:], TOKEN + "\u00e9", "  \n"])
def test_malformed_kubeconfig_token_is_refused_without_showing_it(
    bad: str, tmp_path: Path, server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = kubeconfig(tmp_path, server, {"token": bad})
    code, out = run(tmp_path, ["--kubeconfig", str(path)], {}, capsys)
    assert code == 2
    assert "the token is malformed" in out
    assert _Unauthorized.seen == []  # refused before any request


def test_malformed_service_account_token_is_refused_without_showing_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = service_account_dir(tmp_path, TOKEN[:20] + "\n" + TOKEN[20:] + "\n")
    code, out = run(tmp_path, [], env, capsys)
    assert code == 2
    assert "in-cluster service account" in out
    assert "the token is malformed" in out
    with pytest.raises(InvalidInput, match="malformed"):
        load_configuration(None, None, env)


def test_an_unexpected_exception_shows_its_type_and_a_redacted_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def crash(*_: Any) -> int:
        raise ValueError(f"Invalid header value b'Bearer {TOKEN}\\n' ({TOKEN})")

    monkeypatch.setattr(cli, "run", crash)
    code, out = run(tmp_path, [], {}, capsys)
    assert code == 1
    assert "run: unexpected ValueError: Invalid header value" in out
    assert json.loads((tmp_path / "termination-log").read_text())["exit_code"] == 1


def test_an_unexpected_launcher_exception_shows_a_redacted_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def crash(*_: Any) -> int:
        raise OSError(f"Bad file descriptor while sending b'Bearer {TOKEN}'")

    from runner.launcher import cli as launcher

    monkeypatch.setattr(launcher, "main", crash)
    assert cli.main(["status"], env={"HOME": "/nonexistent"}) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert err.splitlines()[-1].startswith("workshop-runner: error: status: unexpected OSError: ")
    for part in TOKEN_PARTS:
        assert part not in err
