"""Input errors that help: the closest known name, the grammar of type errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner import config, hints
from runner.cli import main
from runner.errors import InvalidInput, TemplateError

STEPS = ["namespace", "rbac", "catalog-source", "smcp", "member-roll", "kiali"]


def test_a_typo_names_the_closest_name_and_not_the_list() -> None:
    assert hints.suggest(["smcp_verison"], ["smcp_version", "smcp_name", "kiali"]) == (
        "did you mean 'smcp_version'?"
    )


def test_nothing_close_lists_every_known_name() -> None:
    assert hints.suggest(["zzz"], ["a1", "b2"], quote=False) == "known: a1, b2"


def test_several_words_each_get_their_own_suggestion() -> None:
    got = hints.suggest(["namespase", "qqq"], STEPS, quote=False)
    assert got == f"did you mean namespace for namespase?; known: {', '.join(STEPS)}"


@pytest.mark.parametrize(
    ("noun", "expected"),
    [("integer", "an integer"), ("string", "a string"), ("list of strings", "a list of strings")],
)
def test_article(noun: str, expected: str) -> None:
    assert hints.article(noun) == expected


def test_unknown_step_suggests(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as err:
        config.select_steps(STEPS, ("memberroll",))
    assert str(err.value) == "unknown step(s) memberroll; did you mean member-roll?"
    with pytest.raises(InvalidInput, match="--timeout: unknown step kaili; did you mean kiali"):
        config.parse_timeouts(["kaili=5"], STEPS)


def test_unknown_parameter_suggests_and_types_read_right(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("smcp_trace_samplng: 5\n")
    with pytest.raises(TemplateError) as err:
        config.load_params(path, config.User("u1"), project_request=False)
    assert str(err.value).endswith(
        "unknown parameter 'smcp_trace_samplng'; did you mean 'smcp_trace_sampling'?"
    )
    path.write_text("smcp_trace_sampling: lots\n")
    with pytest.raises(TemplateError, match=r"must be an integer, not a string$"):
        config.load_params(path, config.User("u1"), project_request=False)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--log-format", "jsn"], "invalid choice: 'jsn'; did you mean 'json'?"),
        (["lanch", "--count", "1"], "invalid choice: 'lanch'; did you mean 'launch'?"),
        (["launch", "--mode", "index"], "invalid choice: 'index'; did you mean 'indexed'?"),
        (["launch", "--count", "ten"], "argument --count: must be an integer, not 'ten'"),
        (["status", "--timeout", "soon"], "argument --timeout: must be a number, not 'soon'"),
        (["teardown", "--parallel", "1.5"], "must be an integer, not '1.5'"),
        (["run", "--log-level", "zzz"], "known: debug, info, warning, error"),
    ],
)
def test_flag_values(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv, env={}) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert message in err
