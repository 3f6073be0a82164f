"""The wheel the image is built from: complete, installable the image's way, and runnable.

No container engine runs on these machines, so this builds the wheel (`python -m build`),
installs it with mk/install-venv.sh, the script the Dockerfile runs, into a fresh venv
(preferring /usr/bin/python3.11, the interpreter path the image has), and runs the installed
console script, also as an OpenShift-style arbitrary UID with group 0 and no write access.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from steps import STEPS

# Building the wheel and installing its locked dependencies from the index takes minutes on a
# loaded machine (measured 118 s for the module at load average 16 on 2 cores).
pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = ROOT / "mk" / "install-venv.sh"
SYSTEM_PYTHON = Path("/usr/bin/python3.11")
ARBITRARY_UID = 1000720000  # like an OpenShift namespace's UID range; group 0


def run(
    argv: list[str | Path], cwd: Path | str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        cwd=cwd,
        env=env,
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    proc = run([sys.executable, "-m", "build", "--wheel", "--outdir", out, ROOT], cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (built,) = out.glob("workshop_runner-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path) -> Iterator[Path]:
    # Not under pytest's tmp dir (mode 0700): the arbitrary UID must be able to reach it.
    root = Path(tempfile.mkdtemp(prefix="wr-wheel-", dir="/tmp"))
    root.chmod(0o755)
    python = SYSTEM_PYTHON if SYSTEM_PYTHON.exists() else Path(sys.executable)
    target = root / "venv"
    try:
        proc = run(["sh", INSTALL_SCRIPT, python, target, wheel, ROOT / "requirements.lock"])
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        yield target
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_wheel_ships_code_templates_and_deploy_manifests(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    templates = sorted(p.name for p in (ROOT / "manifests" / "templates").glob("*.y*ml"))
    assert templates
    for name in templates:
        assert f"runner/_templates/{name}" in names
    deploy = [
        p.relative_to(ROOT / "manifests" / "deploy")
        for p in (ROOT / "manifests" / "deploy").rglob("*.yaml")
    ]
    for rel in deploy:
        assert f"runner/_deploy/{rel.as_posix()}" in names
    assert "runner/defaults.yaml" in names
    assert "runner/cli.py" in names
    for module in (ROOT / "steps").glob("*.py"):
        assert f"steps/{module.name}" in names
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "workshop-runner = runner.cli:main" in text


def test_installed_venv_has_no_installers(venv: Path) -> None:
    assert not (venv / "bin" / "pip").exists()
    proc = run([venv / "bin" / "python", "-c", "import pip"])
    assert proc.returncode != 0


def test_installed_console_script_lists_the_steps(venv: Path) -> None:
    proc = run([venv / "bin" / "workshop-runner", "steps"], cwd="/")
    assert proc.returncode == 0, proc.stderr
    listed = [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]
    assert listed == [s.NAME for s in STEPS]
    proc = run([venv / "bin" / "workshop-runner", "--help"], cwd="/")
    assert proc.returncode == 0, proc.stderr
    assert "run" in proc.stdout


def test_installed_runner_reads_its_templates_from_the_package(venv: Path) -> None:
    code = (
        "from runner.templates import packaged_templates_dir, load_dir;"
        "d = packaged_templates_dir(); print(d); print(sorted(load_dir(d)))"
    )
    proc = run([venv / "bin" / "python", "-c", code], cwd="/")
    assert proc.returncode == 0, proc.stderr
    where, names = proc.stdout.splitlines()
    assert Path(where).is_relative_to(venv)
    assert where.endswith("runner/_templates")
    expected = sorted(p.name for p in (ROOT / "manifests" / "templates").glob("*.y*ml"))
    assert names == repr(expected)


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to an arbitrary UID needs root")
@pytest.mark.skipif(not SYSTEM_PYTHON.exists(), reason="needs a world-readable /usr/bin/python3.11")
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
def test_runs_as_an_arbitrary_uid_with_group_zero_and_nothing_writable(venv: Path) -> None:
    """What OpenShift's restricted-v2 does: a UID with no passwd entry, group 0, and (with
    readOnlyRootFilesystem) nowhere to write but /tmp. The venv is root-owned, so the runner
    can write nothing into it; a bad user name must still fail cleanly with exit 2."""
    as_uid = ["setpriv", f"--reuid={ARBITRARY_UID}", "--regid=0", "--clear-groups"]
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "PYTHONDONTWRITEBYTECODE": "1"}
    proc = run([*as_uid, venv / "bin" / "workshop-runner", "steps"], cwd="/", env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[0] == STEPS[0].NAME
    proc = run(
        [*as_uid, venv / "bin" / "workshop-runner", "run", "--user", "kube-system"],
        cwd="/",
        env=env,
    )
    assert proc.returncode == 2, proc.stderr
    assert "system namespace" in proc.stderr
    assert not list(venv.rglob("__pycache__/*.cpython-*.pyc.*")), "no stray writes"


def test_dockerfile_installs_with_the_same_script_and_runs_the_console_script() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "COPY mk/install-venv.sh /usr/local/bin/install-venv" in text
    assert (
        "install-venv python3.11 /opt/workshop-runner /dist/workshop_runner-*.whl "
        "requirements.lock" in text
    )
    assert 'ENTRYPOINT ["workshop-runner"]' in text
    assert "\nUSER 1001\n" in text


@pytest.mark.skipif(not (ROOT / ".venv" / "bin" / "hadolint").exists(), reason="dev extra")
def test_dockerfile_passes_hadolint() -> None:
    proc = run(
        [ROOT / ".venv" / "bin" / "hadolint", "--failure-threshold", "warning", "Dockerfile"],
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
