"""Behaviour knobs: profiles, per-user/kind rules, seeded jitter, failures, refusal windows."""

from __future__ import annotations

import pytest

from devcluster.sim import knobs
from devcluster.sim.knobs import Failure, KnobError


def test_fast_profile_is_the_default_and_small() -> None:
    k = knobs.build([])
    d = k.delay_for("ClusterServiceVersion", "user1", "x.v1", "Pending")
    assert 0.1 <= d <= 0.3
    assert k.refuse_seconds == 2.0
    assert k.webhook_mode == "deny"


def test_realistic_profile_is_slower() -> None:
    k = knobs.build([], profile="realistic")
    assert k.delay_for("ServiceMeshControlPlane", "u1-istio", "basic", "begin") > 5
    assert k.refuse_seconds == 30.0


def test_jitter_is_a_pure_function_of_seed_and_object() -> None:
    a = knobs.build([("f", {"seed": 7})])
    b = knobs.build([("f", {"seed": 7})])
    c = knobs.build([("f", {"seed": 8})])
    args = ("InstallPlan", "user3", "install-abc", "RequiresApproval")
    assert a.delay_for(*args) == b.delay_for(*args)
    assert a.delay_for(*args) != c.delay_for(*args)
    steps = {a.delay_for("InstallPlan", "user3", "install-abc", s) for s in ("a", "b", "c", "d")}
    assert len(steps) > 1


@pytest.mark.parametrize("jitter", [0.0, 0.25, 1.0])
def test_jitter_stays_within_its_fraction(jitter: float) -> None:
    k = knobs.build([("f", {"delay": 2.0, "jitter": jitter})])
    for i in range(200):
        d = k.delay_for("Kiali", f"u{i}", "kiali", "running")
        assert 2.0 * (1 - jitter) <= d <= 2.0 * (1 + jitter)


def test_rules_match_user_of_the_istio_namespace_and_later_rules_win() -> None:
    k = knobs.build(
        [
            ("file", {"rules": [{"user": "user3", "kind": "SMCP", "delay": 30, "jitter": 0}]}),
            ("configmap:user3", {"rules": [{"user": "user3", "kind": "smcp", "delay": 10}]}),
        ]
    )
    assert k.delay_for("ServiceMeshControlPlane", "user3-istio", "basic", "ready") == 10
    assert k.delay_for("ServiceMeshControlPlane", "user4-istio", "basic", "ready") < 1
    assert k.delay_for("Kiali", "user3-istio", "kiali", "ready") < 1


def test_failure_forms() -> None:
    k = knobs.build(
        [
            (
                "f",
                {
                    "rules": [
                        {"user": "user7", "kind": "CSV", "fail": True},
                        {
                            "user": "user8",
                            "kind": "CSV",
                            "fail": "InstallCheckFailed: install timeout",
                        },
                        {"user": "user9", "kind": "CSV", "fail": "the disk is full"},
                        {"user": "u10", "kind": "CSV", "fail": {"reason": "X", "message": "y"}},
                        {"user": "user*", "kind": "Kiali", "name": "kiali", "fail": True},
                    ]
                },
            )
        ]
    )
    csv = "ClusterServiceVersion"
    f7 = k.failure(csv, "user7", "rhsso.v1")
    assert f7 is not None
    assert f7.reason == "InstallComponentFailed"
    assert k.failure(csv, "user8", "rhsso.v1") == Failure("InstallCheckFailed", "install timeout")
    assert k.failure(csv, "user9", "rhsso.v1") == Failure(
        "InstallComponentFailed", "the disk is full"
    )
    assert k.failure(csv, "u10", "rhsso.v1") == Failure("X", "y")
    assert k.failure(csv, "user1", "rhsso.v1") is None
    assert k.failure("Kiali", "user5-istio", "kiali") is not None
    assert k.failure("Kiali", "user5-istio", "other") is None


def test_refusal_windows_start_when_loaded_and_end() -> None:
    starts: dict[str, float] = {}
    k = knobs.build(
        [("configmap:u5", {"rules": [{"user": "u5", "kind": "webhook", "refuse_for": 5}]})],
        started_at=0.0,
        window_starts=starts,
    )
    k.refuse_seconds = 2.0
    assert k.refusing("anyone-istio", now=1.0)  # the start-up window
    assert not k.refusing("anyone-istio", now=2.5)
    assert k.refusing("u5-istio", now=100.0)  # first seen now: window opens
    assert k.refusing("u5-istio", now=104.9)
    assert not k.refusing("u5-istio", now=105.1)
    assert not k.refusing("u6-istio", now=101.0)


@pytest.mark.parametrize(
    "doc",
    [
        {"rules": [{"kind": "Pod", "delay": 1}]},
        {"rules": [{"kind": "CSV", "delay": -1}]},
        {"rules": [{"kind": "CSV", "sleep": 1}]},
        {"rules": ["CSV"]},
        {"profile": "slow"},
        {"webhook": {"mode": "maybe"}},
        {"delays": {"CSV": "soon"}},
        {"bogus": 1},
    ],
)
def test_bad_documents_are_named_errors(doc: dict[str, object]) -> None:
    with pytest.raises(KnobError):
        knobs.build([("configmap:t", doc)])
