"""manifests/ renders with kustomize, keeps the Job conventions, and the API server accepts it.

The static checks read what `kubectl kustomize` renders (the objects a cluster would get), not
the source files; the last test sends the rendered output to the devcluster's kube-apiserver as
a server-side dry-run apply.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with kustomize) needed"),
]

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
DEPLOY = MANIFESTS / "deploy"
JOBS = {"per-user": DEPLOY / "jobs" / "per-user", "indexed": DEPLOY / "jobs" / "indexed"}
JOBS_NAMESPACE = "workshop-runner"
MESH_MEMBER_ROLE = "workshop-runner-mesh-member"
SERVICE_ACCOUNT = "workshop-runner"
TEMPLATES_CONFIGMAP = "workshop-runner-templates"
GUARD_PARAMS = "workshop-runner-guard-olm"
GUARD_POLICIES = [
    "workshop-runner-guard",
    "workshop-runner-guard-tenant",
    "workshop-runner-guard-olm",
    "workshop-runner-guard-mesh",
]
NO_RETRY_EXIT_CODES = [2, 3, 4, 7]


def kustomize(directory: Path) -> list[dict[str, Any]]:
    proc = subprocess.run(
        ["kubectl", "kustomize", str(directory)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, f"kubectl kustomize {directory}: {proc.stderr}"
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def template_files() -> set[str]:
    return {
        p.name
        for p in (MANIFESTS / "templates").iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix in (".yaml", ".yml")
    }


def test_deploy_renders_namespace_identity_rbac_and_guard() -> None:
    docs = kustomize(DEPLOY)
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(
        [
            "Namespace",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRole",  # workshop-runner-mesh-member, bound by the runner itself
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "ConfigMap",  # the OLM guard's parameters
            *["ValidatingAdmissionPolicy"] * len(GUARD_POLICIES),
            *["ValidatingAdmissionPolicyBinding"] * len(GUARD_POLICIES),
        ]
    )
    (sa,) = by_kind(docs, "ServiceAccount")
    assert (sa["metadata"]["namespace"], sa["metadata"]["name"]) == (
        JOBS_NAMESPACE,
        SERVICE_ACCOUNT,
    )
    assert sa["automountServiceAccountToken"] is True
    for doc in docs:
        assert doc["metadata"]["labels"]["app.kubernetes.io/name"] == "workshop-runner"
    (ns,) = by_kind(docs, "Namespace")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_full_install_generates_the_templates_configmap_from_every_template() -> None:
    docs = kustomize(MANIFESTS)
    (cm,) = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"] != GUARD_PARAMS]
    assert cm["metadata"]["name"] == TEMPLATES_CONFIGMAP, "fixed name: the Jobs mount it by name"
    assert cm["metadata"]["namespace"] == JOBS_NAMESPACE
    assert set(cm.get("data", {})) == template_files(), (
        "manifests/kustomization.yaml configMapGenerator files must list every template"
    )
    for name, text in cm.get("data", {}).items():
        assert text == (MANIFESTS / "templates" / name).read_text()
    assert len(docs) == len(kustomize(DEPLOY)) + 1


def test_rbac_grants_no_wildcards_no_secrets_and_bind_only_on_admin_and_mesh_member() -> None:
    docs = kustomize(DEPLOY)
    roles = by_kind(docs, "ClusterRole") + by_kind(docs, "Role")
    assert roles
    for role in roles:
        for rule in role["rules"]:
            for key in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                assert "*" not in rule.get(key, []), f"{role['metadata']['name']}: {rule}"
            assert "secrets" not in rule["resources"]
            assert not {"escalate", "impersonate", "deletecollection"} & set(rule["verbs"])
            assert not {"clusterrolebindings", "roles", "serviceaccounts"} & set(rule["resources"])
            if "bind" in rule["verbs"]:
                assert rule == {
                    "apiGroups": ["rbac.authorization.k8s.io"],
                    "resources": ["clusterroles"],
                    "verbs": ["bind"],
                    "resourceNames": ["admin", MESH_MEMBER_ROLE],
                }
    cluster_roles = {r["metadata"]["name"]: r for r in by_kind(docs, "ClusterRole")}
    assert set(cluster_roles) == {"workshop-runner", MESH_MEMBER_ROLE}
    # What Maistra's member-roll webhook reviews, nothing more (bound only by the runner, in
    # the user's namespace; the guard refuses real pod writes there).
    assert cluster_roles[MESH_MEMBER_ROLE]["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["update"]}
    ]
    # Namespaces: never delete, never list all of them.
    cluster_role = cluster_roles["workshop-runner"]
    ns_rules = [r for r in cluster_role["rules"] if "namespaces" in r["resources"]]
    assert [sorted(r["verbs"]) for r in ns_rules] == [["create", "get", "patch"]]
    # Pods only in the runner's own namespace (progress annotation), via a Role.
    assert all("pods" not in r["resources"] for r in cluster_role["rules"])
    (role,) = by_kind(docs, "Role")
    assert role["metadata"]["namespace"] == JOBS_NAMESPACE
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "patch"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create"]},
    ]
    # Events: create only, events.k8s.io only (never the core group's), nothing else on them.
    event_rules = [r for r in cluster_role["rules"] + role["rules"] if "events" in r["resources"]]
    assert all(r == event_rules[-1] for r in event_rules)
    for binding in by_kind(docs, "ClusterRoleBinding") + by_kind(docs, "RoleBinding"):
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": JOBS_NAMESPACE}
        ]


def test_every_rbac_rule_states_its_reason_in_a_comment() -> None:
    lines = (DEPLOY / "clusterrole.yaml").read_text().splitlines()
    rule_lines = [i for i, line in enumerate(lines) if re.match(r"^  - apiGroups:", line)]
    assert rule_lines
    for i in rule_lines:
        assert lines[i - 1].lstrip().startswith("#"), f"clusterrole.yaml:{i + 1}: no reason given"
    # The progress Role's rules are explained in the file's header comment.
    assert (DEPLOY / "role-progress.yaml").read_text().startswith("# The runner annotates")


def test_admission_guard_matches_the_runner_role_not_a_name() -> None:
    """Each policy guards whoever holds the runner's ClusterRole (its marker permission), so a
    kustomize overlay that renames the namespace cannot leave the renamed identity unguarded;
    no policy spells out the ServiceAccount's username or namespace."""
    docs = kustomize(DEPLOY)
    policies = {p["metadata"]["name"]: p for p in by_kind(docs, "ValidatingAdmissionPolicy")}
    assert sorted(policies) == sorted(GUARD_POLICIES)
    (cluster_role,) = [
        r for r in by_kind(docs, "ClusterRole") if r["metadata"]["name"] == SERVICE_ACCOUNT
    ]
    assert {
        "apiGroups": ["guard.workshop-runner.io"],
        "resources": ["identities"],
        "verbs": ["guarded"],
    } in cluster_role["rules"]
    for policy in policies.values():
        (condition,) = policy["spec"]["matchConditions"]
        assert "check('guarded')" in condition["expression"]
        assert f":{JOBS_NAMESPACE}:" not in json.dumps(policy["spec"])
        assert policy["spec"]["failurePolicy"] == "Fail"
    bindings = {
        b["spec"]["policyName"]: b for b in by_kind(docs, "ValidatingAdmissionPolicyBinding")
    }
    assert sorted(bindings) == sorted(GUARD_POLICIES)
    assert all(b["spec"]["validationActions"] == ["Deny"] for b in bindings.values())
    assert bindings["workshop-runner-guard-olm"]["spec"]["paramRef"] == {
        "name": GUARD_PARAMS,
        "namespace": JOBS_NAMESPACE,
        "parameterNotFoundAction": "Deny",
    }


@pytest.mark.parametrize("mode", sorted(JOBS))
def test_job_follows_the_conventions(mode: str) -> None:
    (job,) = kustomize(JOBS[mode])
    assert job["kind"] == "Job"
    assert job["metadata"]["namespace"] == JOBS_NAMESPACE
    spec = job["spec"]
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert spec["activeDeadlineSeconds"] > 0
    assert spec["ttlSecondsAfterFinished"] > 0
    rules = spec["podFailurePolicy"]["rules"]
    assert {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]} in rules
    fail_action = "FailIndex" if mode == "indexed" else "FailJob"
    assert {
        "action": fail_action,
        "onExitCodes": {"containerName": "runner", "operator": "In", "values": NO_RETRY_EXIT_CODES},
    } in rules
    if mode == "indexed":
        assert spec["completionMode"] == "Indexed"
        assert 0 < spec["backoffLimitPerIndex"] <= 3
        assert "backoffLimit" not in spec
    else:
        assert 0 < spec["backoffLimit"] <= 3

    assert pod["serviceAccountName"] == SERVICE_ACCOUNT
    assert pod["automountServiceAccountToken"] is True
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert "runAsUser" not in pod["securityContext"], "OpenShift assigns the UID"
    (container,) = pod["containers"]
    assert container["name"] == "runner"
    assert "command" not in container, "the image's ENTRYPOINT runs"
    assert container["securityContext"] == {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    resources = container["resources"]
    assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}

    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    if mode == "indexed":
        assert env["WORKSHOP_USERS"]["value"]
        assert "JOB_COMPLETION_INDEX" in env
        assert "WORKSHOP_USER" not in env
    else:
        assert env["WORKSHOP_USER"]["value"] == job["metadata"]["labels"]["workshop-runner.io/user"]

    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["templates"]["configMap"]["name"] == TEMPLATES_CONFIGMAP
    templates_dir = mounts["templates"]["mountPath"]
    assert container["args"][0] == "run"
    assert container["args"][container["args"].index("--templates") + 1] == templates_dir
    assert mounts["tmp"]["mountPath"] == "/tmp"
    assert "emptyDir" in volumes["tmp"]

    for labels in (job["metadata"]["labels"], spec["template"]["metadata"]["labels"]):
        assert labels["app.kubernetes.io/name"] == "workshop-runner"
        assert "workshop-runner.io/launch" in labels
        assert ("workshop-runner.io/user" in labels) == (mode == "per-user")


def kubectl_apply(kubeconfig: Path, docs: list[dict[str, Any]], *extra: str) -> str:
    proc = subprocess.run(
        [
            "kubectl",
            f"--kubeconfig={kubeconfig}",
            "apply",
            "--server-side",
            "--field-manager=workshop-runner-tests",
            "--force-conflicts",
            *extra,
            "-f",
            "-",
        ],
        input=yaml.safe_dump_all(docs),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={**os.environ, "KUBECTL_WARNINGS_AS_ERRORS": "false"},
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout + proc.stderr


def test_rendered_output_passes_server_side_dry_run(kubeconfig: Path) -> None:
    install = kustomize(MANIFESTS)
    # A dry-run creates nothing, so the namespaced objects of the same dry-run would not find
    # their namespace: create the (empty) Jobs namespace for real first.
    kubectl_apply(kubeconfig, by_kind(install, "Namespace"))
    out = kubectl_apply(kubeconfig, install, "--dry-run=server")
    assert "(server dry run)" in out
    for directory in JOBS.values():
        out = kubectl_apply(kubeconfig, kustomize(directory), "--dry-run=server")
        assert "(server dry run)" in out
        # The namespace enforces Pod Security `restricted`; for a Job it only warns.
        assert "PodSecurity" not in out, out


@pytest.mark.parametrize("mode", sorted(JOBS))
def test_job_pod_is_admitted_under_pod_security_restricted(kubeconfig: Path, mode: str) -> None:
    """The Jobs namespace enforces Pod Security `restricted`; a Job is only warned about, so
    dry-run the Pod its template makes, which admission enforces (the ServiceAccount must
    exist for that, so the deploy base is applied for real first, as an admin would)."""
    kubectl_apply(kubeconfig, kustomize(DEPLOY))
    (job,) = kustomize(JOBS[mode])
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"psa-{mode}", "namespace": JOBS_NAMESPACE},
        "spec": job["spec"]["template"]["spec"],
    }
    out = kubectl_apply(kubeconfig, [pod], "--dry-run=server")
    assert "(server dry run)" in out
