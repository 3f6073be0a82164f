"""The per-user catalog is a snapshot: rendered from the defaults it is not polled (no
spec.updateStrategy), and the old polling parameter is refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner import config, templates
from runner.errors import TemplateError

USER = config.User("user1")


def rendered_catalog(params_file: Path | None = None) -> dict[str, object]:
    params = config.load_params(params_file, USER, project_request=False)
    (doc,) = templates.render(templates.load_templates(None)["catalog-source.yaml"], params)
    return doc


def test_the_default_catalog_is_not_polled() -> None:
    spec = rendered_catalog()["spec"]
    assert isinstance(spec, dict)
    assert "updateStrategy" not in spec
    assert spec["sourceType"] == "grpc"


def test_a_digest_pinned_image_is_used_as_given(tmp_path: Path) -> None:
    image = "registry.redhat.io/redhat/redhat-operator-index@sha256:" + "ab" * 32
    params = tmp_path / "params.yaml"
    params.write_text(f"catalog_image: {image}\n")
    spec = rendered_catalog(params)["spec"]
    assert isinstance(spec, dict)
    assert spec["image"] == image


def test_the_removed_poll_interval_parameter_is_an_input_error(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("catalog_poll_interval: 30m\n")
    with pytest.raises(TemplateError, match="unknown parameter 'catalog_poll_interval'") as e:
        config.load_params(params, USER, project_request=False)
    assert e.value.exit_code == 3
