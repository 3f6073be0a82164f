"""Progress output while a launch runs: a live table on a terminal (rich), otherwise one JSON
line per user state change. Both are driven by the single thread that consumes the watch
events, so they never read the fleet while it changes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from runner.launcher.progress import UserView

_ORDER = {"running": 0, "retrying": 1, "failed": 2, "pending": 3, "succeeded": 4}
_STYLE = {
    "running": "cyan",
    "retrying": "yellow",
    "failed": "bold red",
    "pending": "dim",
    "succeeded": "green",
}


class Display(Protocol):
    def update(self, views: Sequence[UserView], touched: set[str], now: datetime) -> None: ...

    def close(self) -> None: ...


class JsonLines:
    """One line per change of a user's (state, step, attempt, final)."""

    def __init__(self, launch_id: str, stream: TextIO) -> None:
        self.launch_id = launch_id
        self.stream = stream
        self._last: dict[str, tuple[str, str, int, bool]] = {}

    def update(self, views: Sequence[UserView], touched: set[str], now: datetime) -> None:
        for view in views:
            if view.user not in touched or self._last.get(view.user) == view.change_key():
                continue
            self._last[view.user] = view.change_key()
            seconds = view.seconds(now)
            line = {
                "ts": now.astimezone(UTC).isoformat(timespec="seconds"),
                "event": "progress",
                "launch": self.launch_id,
                "user": view.user,
                "state": view.state,
                "final": view.final,
                "step": view.step or None,
                "attempt": view.attempts,
                "seconds": round(seconds, 1) if seconds is not None else None,
            }
            if view.failed_step or view.reason:
                line.update(failed_step=view.failed_step, reason=view.reason)
            self.stream.write(json.dumps(line, ensure_ascii=False) + "\n")
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()


class LiveTable:
    """A table of every user (active ones first), redrawn on each event and each tick."""

    def __init__(self, launch_id: str, console: Console, started: datetime | None = None) -> None:
        self.launch_id = launch_id
        self.console = console
        self.started = started
        # Transient: the summary table replaces it at the end.
        self._live = Live(console=console, auto_refresh=False, transient=True)
        self._live.start()

    def update(self, views: Sequence[UserView], touched: set[str], now: datetime) -> None:
        self._live.update(self.render(views, now), refresh=True)

    def render(self, views: Sequence[UserView], now: datetime) -> Group:
        counts = {s: sum(1 for v in views if v.state == s) for s in _ORDER}
        elapsed = f"  {(now - self.started).total_seconds():.0f}s" if self.started else ""
        header = Text.assemble(
            (f"launch {self.launch_id}", "bold"),
            f"{elapsed}  {len(views)} users  ",
            *(
                (f"{counts[s]} {s}  ", _STYLE[s])
                for s in ("running", "retrying", "pending", "succeeded", "failed")
                if counts[s]
            ),
        )
        table = Table(expand=False, box=None, pad_edge=False)
        for column in ("user", "state", "step", "elapsed", "attempt"):
            table.add_column(column, no_wrap=True)
        position = {v.user: i for i, v in enumerate(views)}
        rows = sorted(views, key=lambda v: (_ORDER[v.state], position[v.user]))
        room = max(3, self.console.size.height - 4)
        for view in rows[:room]:
            seconds = view.seconds(now)
            table.add_row(
                view.user,
                Text(
                    view.state + ("" if view.final or view.state != "succeeded" else "…"),
                    style=_STYLE[view.state],
                ),
                _step_column(view),
                f"{seconds:.0f}s" if seconds is not None else "",
                str(view.attempts or ""),
            )
        parts: list[Table | Text] = [header, table]
        if len(rows) > room:
            parts.append(Text(f"… and {len(rows) - room} more", style="dim"))
        return Group(*parts)

    def close(self) -> None:
        self._live.stop()


def _step_column(view: UserView) -> str:
    if view.state == "failed":
        return view.failed_step or ""
    return "" if view.state == "succeeded" else view.step
