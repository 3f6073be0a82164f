"""Write "mark <user> <step> <epoch seconds>" when a task named "mark:<step>:<user>: ..." ends.

Observation only: the bench reads these lines to time each step; the playbook runs the same
without this plugin. The file comes from $MARKS (nothing is written when it is unset).
"""

from __future__ import annotations

import os
import time
from typing import Any

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):  # type: ignore[misc]
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bench_marks"
    CALLBACK_NEEDS_ENABLED = True

    def v2_runner_on_ok(self, result: Any) -> None:
        self._mark(result)

    def v2_runner_on_skipped(self, result: Any) -> None:
        self._mark(result)  # a conditional step with nothing to do still ends the step

    def _mark(self, result: Any) -> None:
        path = os.environ.get("MARKS")
        task = getattr(result, "task", None) or result._task
        name = str(task.get_name())
        if not path or not name.startswith("mark:"):
            return
        _, step, rest = name.split(":", 2)
        user = rest.split(":", 1)[0].strip()
        with open(path, "a", encoding="utf-8") as out:
            out.write(f"mark {user} {step} {time.time():.6f}\n")
