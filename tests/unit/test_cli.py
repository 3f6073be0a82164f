"""The CLI boundary without a cluster: listing, and bad inputs refused before any API call
with their exit code and one line on stderr."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.cli import main

NO_CLUSTER_ENV = {"HOME": "/nonexistent", "USER": "root", "PATH": "/usr/bin"}


def test_steps_listing(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["steps"], env={}) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == [  # docs/interfaces.md, "Step names"
        "namespace",
        "catalog-source",
        "rbac",
        "sso-operator",
        "install-plan",
        "csv",
        "istio-namespace",
        "limit-ranges",
        "smcp",
        "member-roll",
        "kiali",
        "extra",
    ]
    assert all(len(line.split(None, 1)) == 2 for line in lines)


def run(
    argv: list[str], tmp_path: Path, env: dict[str, str] | None = None
) -> tuple[int, str, dict]:  # type: ignore[type-arg]
    term = tmp_path / "termination-log"
    code = main(
        ["run", "--log-format", "json", "--termination-log", str(term), *argv],
        env=env or NO_CLUSTER_ENV,
    )
    data = json.loads(term.read_text()) if term.exists() else {}
    return code, "", data


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["--user", "User_1"], 2, "not a DNS-1123 label"),
        (["--user", "x" * 58], 2, "at most 57"),
        (["--user", "kube-system"], 2, "system namespace kube-system"),
        (["--user", "openshift-monitoring"], 2, "system namespace openshift-monitoring"),
        (["--user", "default"], 2, "system namespace default"),
        (["--user", "u1", "--steps", "namespace,nope"], 2, "unknown step(s) nope"),
        (["--user", "u1", "--from", "later"], 2, "unknown step(s) later"),
        ([], 2, "no user"),
        (["--user", "u1"], 2, "no cluster configuration"),
    ],
)
def test_bad_inputs(
    argv: list[str], code: int, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    got, _, data = run(argv, tmp_path)
    err = capsys.readouterr().err
    assert got == code
    assert err.count("\n") == 1
    assert err.startswith("workshop-runner: error: ")
    assert message in err
    assert data["exit_code"] == code
    assert data["outcome"] == "failed"
    assert message in data["reason"]


def test_template_and_params_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("no_such_param: 1\n")
    assert run(["--user", "u1", "--params", str(params)], tmp_path)[0] == 3
    templates = tmp_path / "t"
    templates.mkdir()
    (templates / "rbac.yaml").write_text("apiVersion: v1\nkind: X\nmetadata:\n  name: ${nope}\n")
    assert run(["--user", "u1", "--templates", str(templates)], tmp_path)[0] == 3
    (templates / "rbac.yaml").write_text("apiVersion: v1\nkind: [\n")
    assert run(["--user", "u1", "--templates", str(templates)], tmp_path)[0] == 3
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3
    assert "unknown parameter 'no_such_param'" in err[0]
    assert "unknown parameter(s) nope" in err[1]
    assert "malformed YAML" in err[2]


def test_usage_error_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--bogus"], env={}) == 2
    assert main([], env={}) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2
    assert all(line.startswith("workshop-runner: error: ") for line in err)


def test_in_cluster_env_without_token(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = {
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": "1",
        "WORKSHOP_RUNNER_SERVICEACCOUNT_DIR": str(tmp_path),
        "WORKSHOP_USER": "u1",
    }
    assert run([], tmp_path, env)[0] == 2
    assert "token file does not exist" in capsys.readouterr().err


def test_own_namespace_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "namespace").write_text("workshop-jobs")
    env = {"WORKSHOP_RUNNER_SERVICEACCOUNT_DIR": str(tmp_path), "WORKSHOP_USER": "workshop-jobs"}
    assert run([], tmp_path, env)[0] == 2
    assert "runner's own namespace" in capsys.readouterr().err
