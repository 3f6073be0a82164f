"""The bench's own tools and the facts the report states: machine and versions.

Ansible and matplotlib live in a separate virtualenv (never in the project's .venv): created
on first use, reused while its pinned requirements are unchanged.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

from devcluster import build

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
RUNNER = VENV_BIN / "workshop-runner"
KUBECTL = VENV_BIN / "kubectl"
BENCH_REQUIREMENTS = ("ansible==12.3.0", "kubernetes==37.0.2", "matplotlib==3.11.2")


def bench_venv() -> Path:
    env = os.environ.get("BENCH_VENV")
    return Path(env) if env else build.cache_root().parent / "bench-venv"


def bench_bin(name: str) -> Path:
    return bench_venv() / "bin" / name


def ensure_bench_venv(say: object = print) -> Path:
    """Create or reuse the bench virtualenv (idempotent: a stamp records what it holds)."""
    venv = bench_venv()
    stamp = venv / ".bench-requirements"
    wanted = "\n".join(BENCH_REQUIREMENTS)
    if stamp.exists() and stamp.read_text() == wanted and bench_bin("ansible-playbook").exists():
        return venv
    if callable(say):
        say(f"installing {', '.join(BENCH_REQUIREMENTS)} into {venv} (once)")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [
        str(venv / "bin" / "python"),
        "-m",
        "pip",
        "install",
        "-q",
        "--disable-pip-version-check",
    ]
    subprocess.run([*pip, *BENCH_REQUIREMENTS], check=True)
    stamp.write_text(wanted)
    return venv


def _out(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine() -> dict[str, str]:
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    return {
        "nproc": str(os.cpu_count()),
        "memory": f"{mem_kib / 1024 / 1024:.1f} GiB",
        "cpu": cpu or platform.processor(),
        "kernel": platform.release(),
        "loadavg_at_start": loadavg(),
    }


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def versions() -> dict[str, str]:
    kubectl = _out([str(KUBECTL), "version", "--client", "-o", "json"])
    try:
        kubectl = json.loads(kubectl)["clientVersion"]["gitVersion"]
    except (ValueError, KeyError):
        kubectl = kubectl.splitlines()[0] if kubectl else "?"
    ansible = _out([str(bench_bin("ansible")), "--version"]).splitlines()
    core = ansible[0].split("[core", 1)[-1].strip(" ]") if ansible else "?"
    collection = _out(
        [str(bench_bin("ansible-galaxy")), "collection", "list", "kubernetes.core"]
    ).split()
    return {
        "kubernetes (apiserver, controller-manager)": build.KUBE_VERSION,
        "etcd": build.ETCD_VERSION,
        "python": platform.python_version(),
        "workshop-runner": _out([str(RUNNER), "--version"]) or _pkg_version("workshop-runner"),
        "ansible": _pkg_version("ansible", bench_venv()),
        "ansible-core": core,
        "kubernetes.core collection": collection[-1] if collection else "?",
        "kubectl": kubectl,
        "bash": _out(["bash", "-c", "echo $BASH_VERSION"]),
    }


def _pkg_version(name: str, venv: Path | None = None) -> str:
    python = str(venv / "bin" / "python") if venv else sys.executable
    code = f"import importlib.metadata as m; print(m.version({name!r}))"
    return _out([python, "-c", code]) or "?"
