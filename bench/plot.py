"""Fleet wall time vs N per contender, as a PNG. Runs in the bench's own virtualenv (which has
matplotlib): `python plot.py fleet.json out.png [--capacity]`, fleet.json = {label: [[n,
seconds, measured], ...]}; a label starting with "limit" is drawn as a black dashed line (the
capacity limit). Standalone on purpose: it imports nothing from the project."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(src: str, dst: str, capacity: bool = False) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads(Path(src).read_text())
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    ticks: set[int] = set()
    for label, points in data.items():
        points.sort()
        if label.startswith("limit"):
            ax.plot([p[0] for p in points], [p[1] for p in points], "k--", label=label)
            ticks.update(p[0] for p in points)
            continue
        measured = [p for p in points if p[2]]
        extrapolated = [p for p in points if not p[2]]
        shown = measured or points
        (line,) = ax.plot([p[0] for p in shown], [p[1] for p in shown], marker="o", label=label)
        if extrapolated and measured:
            # Extrapolated points hollow, on a dashed continuation of the measured line.
            tail = [measured[-1], *extrapolated]
            color = line.get_color()
            ax.plot([p[0] for p in tail], [p[1] for p in tail], linestyle="--", color=color)
            ax.plot(
                [p[0] for p in extrapolated],
                [p[1] for p in extrapolated],
                linestyle="none",
                marker="o",
                markerfacecolor="white",
                color=color,
            )
        ticks.update(p[0] for p in points)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(sorted(ticks), [str(t) for t in sorted(ticks)])
    ax.minorticks_off()
    ax.set_xlabel("users (N)")
    ax.set_ylabel("fleet wall time (s)")
    profile = "capacity profile: upstream's work queues" if capacity else "realistic delays"
    ax.set_title(f"Provisioning N workshop users ({profile})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, title="hollow / dashed = extrapolated", title_fontsize=8)
    fig.tight_layout()
    fig.savefig(dst)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], "--capacity" in sys.argv[3:])
