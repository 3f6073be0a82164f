"""devcluster builds one key at a time and never deletes another build's work."""

from __future__ import annotations

import fcntl
import threading
from pathlib import Path

import pytest

from devcluster import build


@pytest.fixture
def fake_go(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """`go build` writes its -o file and is recorded; `go env GOVERSION` answers a fixed go."""
    monkeypatch.setenv("DEVCLUSTER_CACHE", str(tmp_path))
    built: list[str] = []

    def go(args: list[str], cwd: Path) -> str:
        if args[:2] == ["env", "GOVERSION"]:
            return "go-test\n"
        assert args[0] == "build", args
        out = Path(args[args.index("-o") + 1])
        out.write_text("binary")
        built.append(out.name)
        return ""

    monkeypatch.setattr(build, "_go", go)
    return built


def _key_dir(tmp_path: Path) -> Path:
    return tmp_path / build.cache_key(build.KUBE_VERSION, build.ETCD_VERSION, "go-test")


def test_a_build_leaves_another_builds_partial_directory_alone(
    fake_go: list[str], tmp_path: Path
) -> None:
    key = _key_dir(tmp_path)
    other = key / "bin.partial"  # what a concurrent (older) build is writing into
    other.mkdir(parents=True)
    (other / "etcd").write_text("half")
    first = build.build(log=lambda _m: None)
    assert not first.cached
    assert sorted(fake_go) == sorted(build.BINARIES)
    assert (other / "etcd").read_text() == "half"
    assert sorted(p.name for p in key.iterdir()) == ["bin", "bin.partial", "build.lock"]
    again = build.build(log=lambda _m: None)
    assert again.cached
    assert len(fake_go) == len(build.BINARIES)


def test_a_second_build_waits_for_the_first_and_reuses_its_binaries(
    fake_go: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = _key_dir(tmp_path)
    key.mkdir(parents=True)
    checked = threading.Event()
    complete = build._complete

    def spy(bin_dir: Path) -> bool:
        checked.set()
        return complete(bin_dir)

    monkeypatch.setattr(build, "_complete", spy)
    result: list[build.Built] = []
    with (key / "build.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # "the first build" holds the lock
        second = threading.Thread(target=lambda: result.append(build.build(log=print)))
        second.start()
        assert checked.wait(30)  # the second build found nothing cached
        (key / "bin").mkdir()
        for name in build.BINARIES:  # the first build finishes
            (key / "bin" / name).write_text("binary")
    second.join(30)
    assert len(result) == 1
    assert result[0].cached
    assert fake_go == []
