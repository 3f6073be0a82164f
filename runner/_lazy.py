"""Start-up cost: packages whose `__init__` imports far more than the runner uses.

`kubernetes/__init__.py` imports every subpackage, among them `kubernetes.config`, whose
kubeconfig loader pulls in OAuth and requests; `structlog` imports `rich` for pretty tracebacks
in its console renderer, and imports asyncio (its whole event loop) for async log methods. A
runner in a pod uses neither a kubeconfig, nor a console, nor an event loop. Deferring
a package's `__init__` registers the package without running it: its submodules import as
usual (`kubernetes.client`), and the first access to anything else on the package itself runs
the real `__init__` then, so code elsewhere in the process sees the package unchanged.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from types import ModuleType
from typing import Any

_lock = threading.RLock()


def defer_package_init(name: str) -> None:
    """Register package `name` with its `__init__` deferred (no-op once it is imported)."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return
    module = importlib.util.module_from_spec(spec)
    loader = spec.loader

    def __getattr__(attr: str) -> Any:  # PEP 562 module hook
        # `from kubernetes import watch` asks the package for a submodule: import just that.
        if importlib.util.find_spec(f"{name}.{attr}") is not None:
            return importlib.import_module(f"{name}.{attr}")
        with _lock:
            if module.__dict__.pop("__getattr__", None) is not None:
                loader.exec_module(module)
        return getattr(module, attr)

    module.__getattr__ = __getattr__  # type: ignore[method-assign]
    sys.modules[name] = module


def import_without(blocked: str, name: str) -> ModuleType:
    """Import `name` as if `blocked` were not installed (it then takes its fallback), unless
    `blocked` is imported already; later imports of `blocked` work as usual."""
    if name in sys.modules or blocked in sys.modules:
        return importlib.import_module(name)
    sys.modules[blocked] = None  # type: ignore[assignment]
    try:
        return importlib.import_module(name)
    finally:
        if sys.modules.get(blocked, 0) is None:
            del sys.modules[blocked]
