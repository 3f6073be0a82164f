"""Which users a launch provisions: --users, --users-file or --count/--prefix/--start.

Every name is validated with the runner's own rules (DNS-1123, fits `<user>-istio`, not a system
namespace, not the Jobs namespace) before anything is sent to the cluster, so a bad list fails
the launch with exit 2 instead of failing N pods.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from runner import config
from runner.errors import InvalidInput

MAX_USERS = 1000


def select_users(
    names: Sequence[str] | None,
    users_file: Path | None,
    count: int | None,
    prefix: str,
    start: int,
) -> list[str]:
    """Exactly one source of users; the result keeps the given order, without duplicates."""
    given = [s for s in (names, users_file, count) if s]
    if len(given) != 1:
        raise InvalidInput("give the users with exactly one of --users, --users-file, --count")
    if count is not None:
        if not 0 < count <= MAX_USERS:
            raise InvalidInput(f"--count must be between 1 and {MAX_USERS}, not {count}")
        if start < 0:
            raise InvalidInput(f"--start must be >= 0, not {start}")
        users = [f"{prefix}{i}" for i in range(start, start + count)]
    elif users_file is not None:
        users = config.users_list({}, users_file)
    else:
        users = [u.strip() for v in names or () for u in v.split(",") if u.strip()]
    duplicates = sorted({u for u in users if users.count(u) > 1})
    if duplicates:
        raise InvalidInput(f"user(s) listed twice: {', '.join(duplicates)}")
    if not users:
        raise InvalidInput("the users list is empty")
    if len(users) > MAX_USERS:
        raise InvalidInput(f"{len(users)} users; at most {MAX_USERS} per launch")
    return users


def validate_users(users: Sequence[str], jobs_namespace: str) -> None:
    """The runner's checks for every user, reported together."""
    problems: list[str] = []
    for user in users:
        try:
            config.validate_user(user, {jobs_namespace})
        except InvalidInput as e:
            problems.append(str(e))
    if problems:
        shown = "; ".join(problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise InvalidInput(f"{len(problems)} invalid user(s): {shown}{more}")
