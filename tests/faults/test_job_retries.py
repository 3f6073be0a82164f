"""Job-level retries with the real job controller and the process kubelet.

A per-user Job (manifests/deploy/jobs/per-user) whose runner process is SIGKILLed in the
middle of a wait fails that pod (exit 137, no DisruptionTarget), so the Job starts another one,
which resumes and finishes: the user ends provisioned, nothing twice. A bad-input exit code
(2) fails the Job at once through its podFailurePolicy, without a second pod.
"""

from __future__ import annotations

import contextlib
import copy
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.faults.support import (
    FIGURES,
    ROOT,
    RUNNER_NAMESPACE,
    WAIT_KINDS,
    Provisioned,
    check_converged,
    longest_wait_step,
    set_knobs,
)

pytestmark = pytest.mark.faults
STEP_ANNOTATION = "workshop-runner.io/step"


@pytest.fixture(scope="module")
def job_template() -> dict[str, Any]:
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / "manifests" / "deploy" / "jobs" / "per-user")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    job: dict[str, Any] = yaml.safe_load(rendered)
    return job


@pytest.fixture
def make_job(
    api_client: Any, runner_kubeconfig: Any, kubelet: Any, job_template: dict[str, Any]
) -> Iterator[Callable[[str, str], str]]:
    """Create the per-user Job for `user` (WORKSHOP_USER = `env_user`); deleted afterwards."""
    batch = client.BatchV1Api(api_client)
    made: list[str] = []

    def make(user: str, env_user: str) -> str:
        job = copy.deepcopy(job_template)
        name = f"faults-{user}"
        job["metadata"]["name"] = name
        for meta in (job["metadata"], job["spec"]["template"]["metadata"]):
            meta["labels"]["workshop-runner.io/user"] = user
            meta["labels"]["workshop-runner.io/launch"] = "faults"
        container = job["spec"]["template"]["spec"]["containers"][0]
        for var in container["env"]:
            if var["name"] == "WORKSHOP_USER":
                var["value"] = env_user
        batch.create_namespaced_job(RUNNER_NAMESPACE, job)
        made.append(name)
        return name

    yield make
    for name in made:
        with contextlib.suppress(ApiException):
            batch.delete_namespaced_job(name, RUNNER_NAMESPACE, propagation_policy="Background")


def _pods(core: client.CoreV1Api, job: str) -> list[Any]:
    pods = core.list_namespaced_pod(RUNNER_NAMESPACE, label_selector=f"job-name={job}").items
    return sorted(pods, key=lambda p: p.metadata.creation_timestamp)


def _eventually(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


def _condition(job: Any, kind: str) -> Any:
    return next(
        (c for c in job.status.conditions or [] if c.type == kind and c.status == "True"), None
    )


def _container_pid(pod: Any) -> int | None:
    """The process kubelet names containers devcluster://<instance>-<pid>."""
    for status in pod.status.container_statuses or []:
        if status.state and status.state.running and status.container_id:
            return int(status.container_id.rsplit("-", 1)[1])
    return None


def test_pod_killed_mid_run_is_retried_by_the_job(
    api_client: Any, sims: Any, make_job: Callable[[str, str], str], unique_user: str
) -> None:
    step = longest_wait_step()
    set_knobs(
        api_client,
        unique_user,
        # Long enough that the coalesced step annotation (written at most every
        # runner.progress.INTERVAL_SECONDS) shows the step well before the wait ends.
        {"rules": [{"user": unique_user, "kind": WAIT_KINDS[step], "delay": 12.0}]},
    )
    core, batch = client.CoreV1Api(api_client), client.BatchV1Api(api_client)
    job = make_job(unique_user, unique_user)

    def first_pod_in_wait() -> Any:
        pods = _pods(core, job)
        if not pods:
            return None
        annotations = pods[0].metadata.annotations or {}
        # "smcp (queued)": each running step with its wait's state
        running = [part.split(" (")[0] for part in annotations.get(STEP_ANNOTATION, "").split(",")]
        return pods[0] if step in running else None

    pod = _eventually(first_pod_in_wait, 120, f"the runner pod to reach step {step}")
    time.sleep(1.0)  # inside the wait
    pid = _eventually(
        lambda: _container_pid(core.read_namespaced_pod(pod.metadata.name, RUNNER_NAMESPACE)),
        10,
        "the container's pid",
    )
    os.kill(pid, signal.SIGKILL)
    FIGURES.job_retries += 1
    done = _eventually(
        lambda: (
            (j := batch.read_namespaced_job(job, RUNNER_NAMESPACE))
            and (_condition(j, "Complete") or _condition(j, "Failed"))
            and j
        ),
        240,
        "the Job to finish",
    )
    pods = _pods(core, job)
    assert _condition(done, "Complete"), done.status
    assert done.status.failed == 1, done.status
    first = pods[0].status.container_statuses[0].state.terminated
    assert first.exit_code == 137, first
    assert len(pods) == 2, [p.metadata.name for p in pods]
    assert check_converged(Provisioned(api_client), unique_user) == []


def test_bad_input_fails_the_job_at_once(
    api_client: Any, make_job: Callable[[str, str], str], unique_user: str
) -> None:
    core, batch = client.CoreV1Api(api_client), client.BatchV1Api(api_client)
    job = make_job(unique_user, "Not_A_Label")
    started = time.monotonic()
    failed = _eventually(
        lambda: (
            (j := batch.read_namespaced_job(job, RUNNER_NAMESPACE))
            and _condition(j, "Failed")
            and j
        ),
        120,
        "the Job to fail",
    )
    took = time.monotonic() - started
    condition = _condition(failed, "Failed")
    assert condition.reason == "PodFailurePolicy", condition
    assert failed.status.failed == 1, failed.status
    pods = _pods(core, job)
    assert len(pods) == 1, [p.metadata.name for p in pods]
    terminated = pods[0].status.container_statuses[0].state.terminated
    assert terminated.exit_code == 2, terminated
    assert "Not_A_Label" in terminated.message
    assert took < 60, f"the Job took {took:.0f}s to fail"
    FIGURES.notes.append(f"bad-input Job failed by podFailurePolicy in {took:.1f}s, 1 pod")
