"""Teardown for one user: every step's `undo`, run by the engine in reverse step order.

Step knowledge lives in the steps: a step module may define `undo(ctx) -> StepResult`, which
removes what its `run` made, observing first (something already gone is a no-op with its
reason, so teardown is idempotent), with the context's helpers (`ctx.remove`,
`ctx.remove_member`). This module only renders what a run for the user would render and gives
the engine a context factory.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from runner import config, templates
from runner.config import User
from runner.context import StepContext, step_templates
from runner.engine import Engine
from runner.kube import Cluster, Kube
from runner.logs import Logger
from runner.result import RunResult, Step
from runner.waits import CancelToken, Deadline, Obj


def render_for(
    user: User, templates_dir: Path | None, params_file: Path | None, *, project_request: bool
) -> tuple[dict[str, Any], dict[str, list[Obj]]]:
    """The same parameters and rendered templates a run for `user` would use."""
    params = config.load_params(params_file, user, project_request=project_request)
    loaded = templates.load_templates(templates_dir)
    return params, {name: templates.render(t, params) for name, t in loaded.items()}


def teardown_user(
    cluster: Cluster,
    steps: Sequence[Step],
    user: User,
    params: Mapping[str, Any],
    rendered: Mapping[str, list[Obj]],
    *,
    log: Logger,
    clock: Callable[[], float] = time.monotonic,
) -> RunResult:
    """Run every step's undo in reverse order; the first failure stops this user."""
    named = step_templates(steps)

    def make_context(
        step: Step, deadline: Deadline, cancel: CancelToken, step_log: Logger
    ) -> StepContext:
        kube = Kube(cluster, log=step_log, deadline=deadline, cancel=cancel)
        return StepContext(
            step.NAME, user, params, rendered, kube, step_log, deadline, cancel, False, named
        )

    engine = Engine(steps, make_context, log=log.bind(user=user.name), clock=clock)
    return engine.teardown(user.name)
