"""Input errors that help: what the user probably meant, in plain grammar.

One place for every "unknown X" message (parameters, steps, flag values): the closest known
name as a "did you mean", and the whole list only when nothing is close. Also the argparse
types whose errors say "must be an integer" rather than "invalid int value".
"""

from __future__ import annotations

import argparse
import difflib
import math
from collections.abc import Iterable

# difflib's ratio, at its own default: smcp_verison/smcp_version scores 0.92, nope/smcp 0.25.
CUTOFF = 0.6


def closest(word: str, known: Iterable[str]) -> str | None:
    """The known name nearest to `word`, if any is near enough to be a typo of it."""
    found = difflib.get_close_matches(word, list(known), n=1, cutoff=CUTOFF)
    return found[0] if found else None


def suggest(words: Iterable[str], known: Iterable[str], *, quote: bool = True) -> str:
    """What follows "unknown X 'w'": "did you mean 'v'?" for each word that has a close
    match, and "known: a, b, c" only when one of them has none."""
    names = list(known)
    show = repr if quote else str
    matches = {w: closest(w, names) for w in words}
    parts = []
    found = [(w, m) for w, m in matches.items() if m is not None]
    if len(matches) == 1 and found:
        parts.append(f"did you mean {show(found[0][1])}?")
    elif found:
        parts.append(f"did you mean {', '.join(f'{show(m)} for {show(w)}' for w, m in found)}?")
    if None in matches.values():
        parts.append(f"known: {', '.join(names)}")
    return "; ".join(parts)


def article(noun: str) -> str:
    """'a string', 'an integer', 'a list of strings'."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def integer(text: str) -> int:
    """argparse type: "must be an integer, not 'x'"."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, not {text!r}") from None


def number(text: str) -> float:
    """argparse type: "must be a number, not 'x'"."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a number, not {text!r}")
    return value
