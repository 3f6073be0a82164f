"""workshop-runner: provision one workshop user's environment, step by step."""

from runner._lazy import defer_package_init

# Before anything imports them: see runner/_lazy.py.
defer_package_init("kubernetes")
defer_package_init("kubernetes.config")
defer_package_init("kubernetes.utils")
