"""The Kiali CRD and the simulated Kiali operator against the real API server: the bundle's
schema keeps every field, and a failed run is retried until it succeeds, with the conditions
ansible-operator writes."""

from __future__ import annotations

from typing import Any

import pytest

from devcluster.sim.kube import KIALIS, Kube
from devcluster.sim.objects import condition
from devcluster.sim.testkit import cond_is
from devcluster.sim.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def test_the_kiali_crd_stores_any_field_as_the_bundle_schema_does(kube: Kube, istio: str) -> None:
    """kiali-ossm's CRD preserves unknown fields at the root: a misspelled or mistyped field is
    kept, not pruned or refused (only the operator's playbook could object)."""
    spec = {"kubernetes_config": {"excluded_workload": "Job"}, "no_such_section": {"x": 1}}
    kube.create(KIALIS, istio, {"metadata": {"name": "kiali"}, "spec": spec})
    assert kube.get(KIALIS, istio, "kiali")["spec"] == spec


def test_a_failed_run_is_retried_until_it_succeeds(kube: Kube, istio: str, sim_knobs: Any) -> None:
    sim_knobs.set({"kind": "Kiali", "fail": "Failed: simulated ansible task failure"})
    kube.create(KIALIS, istio, {"metadata": {"name": "kiali"}, "spec": {}})
    failed = wait_for(
        kube, KIALIS, istio, "kiali", cond_is("Failure", "True", "Failed"), timeout=30
    )
    running = condition(failed["status"], "Running")
    assert running is not None
    assert (running["status"], running["reason"], running["message"]) == (
        "False",
        "Running",
        "Running reconciliation",
    )
    # the retry: Running True again, Failure back to False with the failed run's message
    retrying = wait_for(
        kube, KIALIS, istio, "kiali", cond_is("Running", "True", "Running"), timeout=30
    )
    failure = condition(retrying["status"], "Failure")
    assert failure is not None
    assert (failure["status"], failure["message"]) == ("False", "simulated ansible task failure")
    sim_knobs.clear()  # the cause is gone: a later retry succeeds
    done = wait_for(kube, KIALIS, istio, "kiali", cond_is("Successful", "True"), timeout=60)
    assert cond_is("Failure", "False", "")(done)
    assert cond_is("Running", "True", "Successful")(done)
