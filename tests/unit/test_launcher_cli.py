"""The launcher's commands refuse bad input with exit 2 before any API call."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.cli import main

NO_CLUSTER: dict[str, str] = {}  # no KUBECONFIG, no in-cluster env: any API call would fail


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["launch"], "exactly one of --users"),
        (["launch", "--users", "a", "--count", "2"], "exactly one of --users"),
        (["launch", "--users", "kube-system"], "system namespace"),
        (["launch", "--users", "a,a"], "twice"),
        (["launch", "--count", "2", "--mode", "jobs", "--parallelism", "2"], "--mode indexed"),
        (["launch", "--count", "2", "--parallelism", "0"], "at least 1"),
        (["launch", "--count", "2", "--launch-id", "Bad_Id"], "--launch-id"),
        (["launch", "--count", "2", "--namespace", "elsewhere"], "--skip-deploy"),
        (["launch", "--count", "2"], "no cluster configuration"),
        (["teardown"], "exactly one of --user and --all"),
        (["teardown", "--user", "a", "--all"], "exactly one of --user and --all"),
        (["status", "--no-such-flag"], "unrecognized"),
    ],
)
def test_bad_input_is_exit_2_with_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv, NO_CLUSTER) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_template_error_is_exit_3_before_any_api_call(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("not_a_parameter: 1\n")
    assert main(["launch", "--count", "2", "--params", str(params)], NO_CLUSTER) == 3
    assert "unknown parameter" in capsys.readouterr().err
