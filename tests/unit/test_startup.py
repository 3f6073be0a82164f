"""Start-up cost: what `workshop-runner run` imports (runner/_lazy.py), in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys


def python(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_a_pod_run_loads_no_kubeconfig_loader_console_renderer_generated_client_launcher() -> None:
    code = (
        "import sys, runner.cli\n"
        "heavy = ['kubernetes.config.kube_config', 'requests_oauthlib', 'rich',\n"
        "         'runner.launcher.cli', 'kubernetes.client.api_client', 'pydantic',\n"
        "         'kubernetes.client.models', 'kubernetes.dynamic', 'kubernetes.stream',\n"
        "         'websocket', 'requests', 'dateutil', 'asyncio.base_events']\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    assert python(code) == "[]"


def test_a_deferred_package_is_whole_on_first_use() -> None:
    code = (
        "import runner.kube, kubernetes, asyncio\n"
        "from kubernetes import config\n"
        "print(callable(config.load_kube_config), kubernetes.__version__ != '',\n"
        "      asyncio.run(asyncio.sleep(0, 'loop')))"
    )
    assert python(code) == "True True loop"


def test_structlog_without_rich_still_renders_a_console_exception() -> None:
    code = (
        "import io, runner.logs as logs\n"
        "buf = io.StringIO()\n"
        "logs.configure('console', 'info', buf)\n"
        "try:\n    1 / 0\nexcept ZeroDivisionError:\n"
        "    logs.get_logger().exception('boom')\n"
        "print('ZeroDivisionError' in buf.getvalue())"
    )
    assert python(code) == "True"
