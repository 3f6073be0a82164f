"""requirements.lock (the image's dependencies, installed with --require-hashes) still matches
pyproject.toml: every runtime dependency is pinned within its specifier, every pin is hashed,
and the Dockerfile's base image is pinned by digest."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
ENTRY = re.compile(r"^([A-Za-z0-9_.-]+)==(\S+) \\\n    --hash=sha256:[0-9a-f]{64}$", re.MULTILINE)


def locked() -> dict[str, str]:
    text = (ROOT / "requirements.lock").read_text()
    body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    entries: dict[str, str] = {canonicalize_name(m[1]): m[2] for m in ENTRY.finditer(body)}
    assert len(entries) == body.count("==") == body.count("--hash=sha256:")
    return entries


def test_every_runtime_dependency_is_locked_within_its_specifier() -> None:
    pins = locked()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for spec in project["dependencies"]:
        requirement = Requirement(spec)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in requirements.lock: run `make lock`"
        assert requirement.specifier.contains(pins[name]), (
            f"requirements.lock pins {name}=={pins[name]}, pyproject wants {spec}: `make lock`"
        )


def test_the_image_installs_the_lock_and_pins_its_base_by_digest() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    (base,) = re.findall(r"^FROM (\S+) AS base$", dockerfile, re.MULTILINE)
    assert re.search(r"@sha256:[0-9a-f]{64}$", base), base
    assert "requirements.lock" in dockerfile
    script = (ROOT / "mk" / "install-venv.sh").read_text()
    assert "--require-hashes" in script
    assert "--no-deps" in script
