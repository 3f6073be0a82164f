"""workshop-runner: provision one workshop user's environment, step by step."""

from runner._lazy import defer_package_init

# Before anything imports them: see runner/_lazy.py. asyncio: structlog imports it for its
# async log methods, which the runner never calls; its __init__ (the whole event loop) was a
# fifth of the runner's start-up.
for _package in ("kubernetes", "kubernetes.config", "kubernetes.utils", "asyncio"):
    defer_package_init(_package)
