"""The launcher's commands refuse bad input with exit 2 before any API call."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from runner.cli import main
from runner.launcher.render import (
    RENDER_FILES,
    LaunchPlan,
    launch_objects,
    load_deploy,
    pod_files,
)

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
        (["launch", "--count", "2", "--canary", "2"], "--canary 2: between 1 and 1"),
        (["launch", "--count", "2", "--canary", "0"], "--canary 0: between 1 and 1"),
        (["launch", "--count", "3", "--canary", "1", "--render"], "not with --render"),
        (["launch", "--count", "3", "--canary", "1", "--launch-id", "a" * 23], "with --canary"),
        (["launch", "--count", "1", "-o", "out"], "-o/--output is for --render"),
        (["launch", "--count", "1", "--launch", "x"], "--launch ID is for --retry-failed"),
        (["launch", "--retry-failed", "--users", "a"], "drop --users"),
        (["launch", "--retry-failed", "--image", "i", "--mode", "jobs"], "drop --image, --mode"),
        (["launch", "--retry-failed", "--params", "p.yaml"], "takes the users, image, mode"),
        (["launch", "--retry-failed"], "no cluster configuration"),
        (["preflight"], "no cluster configuration"),
        (["preflight", "--bogus"], "unrecognized"),
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


def test_preflight_parameter_error_is_exit_3_before_any_api_call(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("catalog_imag: x\n")
    assert main(["preflight", "--params", str(params)], NO_CLUSTER) == 3
    assert "catalog_imag" in capsys.readouterr().err


def test_template_error_is_exit_3_before_any_api_call(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("not_a_parameter: 1\n")
    assert main(["launch", "--count", "2", "--params", str(params)], NO_CLUSTER) == 3
    assert "unknown parameter" in capsys.readouterr().err


def render_argv(*extra: str) -> list[str]:
    return ["launch", "--users", "ann,bob", "--launch-id", "r1", "--render", *extra]


def test_render_writes_what_launch_applies_without_a_cluster(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(render_argv("--image", "reg.example/wr:1"), NO_CLUSTER) == 0
    docs = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d]
    base = load_deploy()
    plan = LaunchPlan("r1", "workshop-runner", ("ann", "bob"), "reg.example/wr:1", "indexed", 20)
    expected = launch_objects(base, plan, pod_files(["ann", "bob"], None, None)).all()
    assert docs == expected
    assert [d["kind"] for d in docs][-2:] == ["ConfigMap", "Job"]
    assert docs[0]["kind"] == "Namespace"


def test_render_to_a_directory_in_apply_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(render_argv("--mode", "jobs", "-o", str(out)), NO_CLUSTER) == 0
    assert sorted(p.name for p in out.iterdir()) == [n for n, _ in RENDER_FILES]
    jobs = list(yaml.safe_load_all((out / "20-jobs.yaml").read_text()))
    assert [j["metadata"]["name"] for j in jobs] == ["wr-r1-ann", "wr-r1-bob"]
    assert "wrote 00-deploy.yaml" in capsys.readouterr().out
    # --skip-deploy renders no base, and removes the one an earlier render left there
    assert main(render_argv("-o", str(out), "--skip-deploy"), NO_CLUSTER) == 0
    assert not (out / "00-deploy.yaml").exists()
    (cm,) = yaml.safe_load_all((out / "10-configmap.yaml").read_text())
    assert cm["metadata"]["name"] == "wr-r1"
    assert "ownerReferences" not in cm["metadata"]


def test_output_without_render_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["launch", "--count", "1", "-o", str(tmp_path)], NO_CLUSTER) == 2
    assert "-o/--output is for --render" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_retry_gets_the_launch_s_templates_and_params_back(tmp_path: Path) -> None:
    from runner.launcher.retry import write_files

    params = tmp_path / "in.yaml"
    params.write_text("smcp_version: v2.5\n")
    files = pod_files(["u1"], None, params)
    templates, written = write_files(files, tmp_path / "out")
    assert written is not None
    assert pod_files(["u1"], templates, written) == files
