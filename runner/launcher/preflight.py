"""`workshop-runner preflight`: is the cluster ready for a workshop? Read-only checks.

Seven checks, each ending `pass`, `fail` (with what to do about it) or `skip` (with why):

apis           every API the steps use (their APIS and their templates' kinds) is served
operators      the mesh and Kiali operators are installed: their CSVs Succeeded
guard          the deploy base's admission guard is live: a server dry-run, as the runner's
               ServiceAccount, of a request the guard must deny
rbac           the runner's ServiceAccount may do every verb of its deploy-base roles
               (a SubjectAccessReview per rule, verb and resource name)
member-roll    Maistra's member-roll webhook will admit the runner (the
               workshop-runner-mesh-member ClusterRole and the runner's `bind` on it)
catalog-image  the catalog image the launch uses is the one the guard allows (and the other
               OLM pins of the guard's parameter object equal the launch's params)
catalog-csv    the pinned CSV is offered in the pinned channel (PackageManifest, where served)

Nothing is written: the guard check is a dry run, SubjectAccessReviews are not stored. The
launcher runs every check before it creates any Job (after applying the deploy base, which
the guard check needs); `--skip-preflight` skips all but the guard check.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal, TextIO

from kubernetes.client import Configuration

from runner import config, templates
from runner.config import User
from runner.context import step_apis, step_templates
from runner.errors import Forbidden, RunnerError
from runner.kube import Cluster, Kube
from runner.launcher.render import DeployBase
from runner.logs import get_logger
from runner.result import Step
from runner.waits import CancelToken, Deadline, Obj

EXIT_PREFLIGHT = 13
CHECKS = ("apis", "operators", "guard", "rbac", "member-roll", "catalog-image", "catalog-csv")
ALWAYS = ("guard",)  # the launcher runs these even with --skip-preflight
OPERATORS_NAMESPACE = "openshift-operators"
SAMPLE_USER = "preflight-user"  # the templates are rendered for this name (as a pod would)
# CSV name prefix -> what to install (OpenShift Service Mesh 2.4 and its Kiali, as the
# defaults' smcp_version v2.4 expects).
OPERATORS = {
    "servicemeshoperator.": "Red Hat OpenShift Service Mesh 2.4 (package servicemeshoperator)",
    "kiali-operator.": "Kiali Operator 1.65 (package kiali-ossm)",
}
MESH_MEMBER_ROLE = "workshop-runner-mesh-member"
GUARD = "workshop-runner-guard"
# A request RBAC grants the runner (create namespaces) that the guard must refuse (a system
# namespace name): allowed through means the guard is not live.
GUARD_PROBE_NAMESPACE = "openshift-workshop-runner-preflight"
PACKAGE_MANIFEST = ("packages.operators.coreos.com/v1", "PackageManifest")
CSV = ("operators.coreos.com/v1alpha1", "ClusterServiceVersion")
VAP = ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy")
VAP_BINDING = ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding")
SAR = ("authorization.k8s.io/v1", "SubjectAccessReview")
SECONDS = 60.0
Status = Literal["pass", "fail", "skip"]


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class Setting:
    """What the checks compare the cluster with."""

    base: DeployBase
    namespace: str  # the Jobs namespace
    steps: Sequence[Step]
    rendered: Mapping[str, list[Obj]]  # the templates rendered for one user
    params: Mapping[str, Any]
    operators_namespace: str = OPERATORS_NAMESPACE

    @property
    def service_account(self) -> str:
        spec = self.base.per_user_job["spec"]["template"]["spec"]
        return str(spec.get("serviceAccountName", "default"))

    @property
    def runner_user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"


class Preflight:
    """The checks against one cluster, as the admin (`kube`) and as the runner's
    ServiceAccount (`runner`, impersonated)."""

    def __init__(self, kube: Kube, runner: Kube, setting: Setting, settle: float = 0.0) -> None:
        self.kube, self.runner, self.s = kube, runner, setting
        # Just after the launcher applied the guard or the RBAC, the API server enforces
        # them only once its caches have caught up (moments): until `settle` seconds have
        # passed, a guard that lets the probe through or a denied verb is asked again.
        self.settle = Deadline.after(settle, kube.deadline.clock)

    def _settled(self, probe: Callable[[], bool]) -> bool:
        """probe(), asked again with a capped backoff while it is False and settling."""
        delay = 0.1
        while True:
            if probe():
                return True
            if self.settle.remaining() < delay:
                return False
            self.kube.cancel.sleep(delay)
            delay = min(delay * 2, 1.0)

    def run(self, names: Sequence[str] = CHECKS) -> list[Check]:
        table: dict[str, Callable[[], Check]] = {
            "apis": self.apis,
            "operators": self.operators,
            "guard": self.guard,
            "rbac": self.rbac,
            "member-roll": self.member_roll,
            "catalog-image": self.catalog_image,
            "catalog-csv": self.catalog_csv,
        }
        results = []
        for name in names:
            try:
                results.append(table[name]())
            except RunnerError as e:  # the check itself could not be made
                results.append(
                    Check(name, "fail", f"could not check: {e}", "see the error; re-run preflight")
                )
        return results

    # -- the checks ------------------------------------------------------------------------
    def apis(self) -> Check:
        named = step_templates(self.s.steps)
        missing = []
        count = 0
        for step in self.s.steps:
            for api_version, kind in step_apis(step, self.s.rendered, named):
                count += 1
                if not self.kube.has_api(api_version, kind):
                    missing.append(f"{kind} ({api_version}, step {step.NAME})")
        if missing:
            return Check(
                "apis",
                "fail",
                f"not served: {', '.join(missing)}",
                "install the operators that provide these CRDs (docs/runbook.md, step 1), "
                "or remove the template that needs them",
            )
        return Check("apis", "pass", f"all {count} APIs the steps use are served")

    def operators(self) -> Check:
        ns = self.s.operators_namespace
        if not self.kube.has_api(*CSV):
            return Check("operators", "fail", "OLM is not installed (no CSV API)", "install OLM")
        items, _ = self.kube.list_items(*CSV, ns)
        found, missing = [], []
        for prefix, what in OPERATORS.items():
            csvs = [c for c in items if str(c["metadata"]["name"]).startswith(prefix)]
            ok = [c for c in csvs if (c.get("status") or {}).get("phase") == "Succeeded"]
            if ok:
                found.append(str(ok[0]["metadata"]["name"]))
            else:
                phases = ", ".join(
                    f"{c['metadata']['name']} {(c.get('status') or {}).get('phase') or 'no phase'}"
                    for c in csvs
                )
                missing.append(f"{what}: {phases or 'no CSV ' + prefix + '*'}")
        if missing:
            return Check(
                "operators",
                "fail",
                f"in {ns}: " + "; ".join(missing),
                f"install them cluster-wide into {ns} and wait for their CSVs to reach "
                "Succeeded (docs/runbook.md, step 1); --operators-namespace if installed elsewhere",
            )
        return Check("operators", "pass", f"Succeeded in {ns}: {', '.join(found)}")

    def guard(self) -> Check:
        probe = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": GUARD_PROBE_NAMESPACE,
                "labels": {"app.kubernetes.io/managed-by": "workshop-runner"},
            },
        }
        who = self.s.runner_user
        fix = "apply the deploy base: kubectl apply --server-side -k manifests (as a cluster admin)"
        refused: list[str] = []

        def denied() -> bool:
            try:
                self.runner.create(probe)
            except Forbidden as e:
                refused[:] = [str(e)]
                return "ValidatingAdmissionPolicy" in str(e)
            refused.clear()
            return False

        if self._settled(denied):
            return Check("guard", "pass", f"as {who}, a dry-run into a system namespace is denied")
        if refused:
            text = refused[0]
            if "impersonate" in text:
                return Check(
                    "guard",
                    "fail",
                    f"cannot act as {who}: {text}",
                    "run preflight as a cluster admin (it impersonates the runner)",
                )
            return Check("guard", "fail", f"refused by RBAC, not by the guard: {text}", fix)
        return Check(
            "guard",
            "fail",
            f"as {who}, a dry-run create of Namespace {GUARD_PROBE_NAMESPACE} was allowed: "
            f"the admission guard {GUARD} is not live",
            fix,
        )

    def rbac(self) -> Check:
        denied = []
        count = 0
        for namespace, rule in self._runner_rules():
            for attributes in _attributes(rule, namespace):
                count += 1
                if not self._settled(partial(self._allowed, attributes)):
                    denied.append(_describe(attributes))
        if count == 0:
            return Check("rbac", "fail", "the deploy base binds no role to the runner", "")
        if denied:
            shown = ", ".join(denied[:6]) + (
                f" (+{len(denied) - 6} more)" if len(denied) > 6 else ""
            )
            return Check(
                "rbac",
                "fail",
                f"{self.s.runner_user} may not: {shown}",
                "apply the deploy base (kubectl apply --server-side -k manifests); on a "
                "renamed namespace, its adapted base",
            )
        return Check("rbac", "pass", f"{self.s.runner_user} may do all {count} rule verbs")

    def member_roll(self) -> Check:
        if not any(
            o["kind"] == "ClusterRole" and o["metadata"]["name"] == MESH_MEMBER_ROLE
            for o in self.s.base.objects
        ):
            return Check(
                "member-roll",
                "skip",
                f"this deploy base has no ClusterRole {MESH_MEMBER_ROLE} (the member-roll "
                "webhook's permission), so there is nothing to check",
            )
        live = self.kube.get("rbac.authorization.k8s.io/v1", "ClusterRole", MESH_MEMBER_ROLE)
        fix = "apply the deploy base (kubectl apply --server-side -k manifests)"
        if live is None:
            return Check("member-roll", "fail", f"ClusterRole {MESH_MEMBER_ROLE} is missing", fix)
        if not any(
            "pods" in (r.get("resources") or []) and "update" in (r.get("verbs") or [])
            for r in live.get("rules") or []
        ):
            return Check(
                "member-roll",
                "fail",
                f"ClusterRole {MESH_MEMBER_ROLE} does not grant update on pods, which Maistra's "
                "member-roll webhook asks for in each member namespace",
                fix,
            )
        bind = {
            "group": "rbac.authorization.k8s.io",
            "resource": "clusterroles",
            "verb": "bind",
            "name": MESH_MEMBER_ROLE,
        }
        if not self._allowed(bind):
            return Check(
                "member-roll",
                "fail",
                f"{self.s.runner_user} may not bind ClusterRole {MESH_MEMBER_ROLE}",
                fix,
            )
        return Check(
            "member-roll",
            "pass",
            f"ClusterRole {MESH_MEMBER_ROLE} grants update on pods and the runner may bind it",
        )

    def catalog_image(self) -> Check:
        image = str(self.s.params.get("catalog_image", ""))
        # The guard policy that takes parameters (workshop-runner-guard-olm pins OLM).
        policy = next(
            (
                o
                for o in self.s.base.objects
                if o["kind"] == VAP[1]
                and str(o["metadata"]["name"]).startswith(GUARD)
                and (o.get("spec") or {}).get("paramKind")
            ),
            None,
        )
        if policy is None:
            return Check(
                "catalog-image",
                "skip",
                f"the guard in this deploy base takes no parameters, so it allows any catalog "
                f"image; the launch uses {image}",
            )
        name = policy["metadata"]["name"]
        binding = self.kube.get(*VAP_BINDING, name)
        ref = ((binding or {}).get("spec") or {}).get("paramRef") or {}
        kind = policy["spec"]["paramKind"]
        fix = "apply the deploy base rendered from the same params as the launch"
        if not ref.get("name"):
            return Check("catalog-image", "fail", f"binding {name} has no paramRef", fix)
        param = self.kube.get(kind["apiVersion"], kind["kind"], ref["name"], ref.get("namespace"))
        if param is None:
            return Check(
                "catalog-image", "fail", f"the guard's {kind['kind']} {ref['name']} is missing", fix
            )
        allowed = sorted(set(_image_values(param)))
        # The other OLM pins the guard holds under a parameter's own name (channel, CSV …).
        pinned = {k: str(v) for k, v in (param.get("data") or {}).items() if k in self.s.params}
        differ = [
            f"{k} {self.s.params[k]} (the guard: {v})"
            for k, v in sorted(pinned.items())
            if k != "catalog_image" and str(self.s.params[k]) != v
        ]
        fix = (
            "launch with the params the guard was rendered from, or re-apply the deploy base "
            "from these params (workshop-runner launch does)"
        )
        if image not in allowed:
            return Check(
                "catalog-image",
                "fail",
                f"the launch uses catalog image {image}; the guard allows "
                + (", ".join(allowed) or "none"),
                fix,
            )
        if differ:
            return Check(
                "catalog-image", "fail", "the guard pins otherwise: " + "; ".join(differ), fix
            )
        also = (
            f" and the same {', '.join(sorted(pinned.keys() - {'catalog_image'}))}"
            if len(pinned) > 1
            else ""
        )
        return Check("catalog-image", "pass", f"the guard allows {image}{also}")

    def catalog_csv(self) -> Check:
        package = str(self.s.params.get("sso_package", ""))
        channel = str(self.s.params.get("sso_channel", ""))
        csv = str(self.s.params.get("sso_starting_csv", ""))
        if not self.kube.has_api(*PACKAGE_MANIFEST):
            return Check(
                "catalog-csv",
                "skip",
                "PackageManifest is not served (OLM's packageserver); cannot see what the "
                f"catalogs offer; the launch pins {csv}",
            )
        items, _ = self.kube.list_items(*PACKAGE_MANIFEST, None)
        offered: list[str] = []
        for manifest in items:
            if manifest["metadata"]["name"] != package:
                continue
            where = (manifest.get("status") or {}).get("catalogSource") or manifest["metadata"].get(
                "namespace", ""
            )
            for ch in (manifest.get("status") or {}).get("channels") or []:
                names = {ch.get("currentCSV")} | {e.get("name") for e in ch.get("entries") or []}
                if ch.get("name") == channel and csv in names:
                    return Check(
                        "catalog-csv", "pass", f"{csv} is offered in channel {channel} by {where}"
                    )
                offered.append(f"{where} {ch.get('name')}: {ch.get('currentCSV')}")
        return Check(
            "catalog-csv",
            "fail",
            f"no catalog offers {csv} in {package} channel {channel}"
            + (f" (offered: {'; '.join(offered[:4])})" if offered else ""),
            "pin a catalog image that contains it (catalog_image), or the CSV and channel the "
            "catalog offers (sso_starting_csv, sso_channel)",
        )

    # -- helpers ---------------------------------------------------------------------------
    def _runner_rules(self) -> Iterator[tuple[str | None, Obj]]:
        """(namespace or None, rule) of every role the deploy base binds to the runner."""
        objects = self.s.base.objects
        for binding in objects:
            if binding["kind"] not in ("ClusterRoleBinding", "RoleBinding"):
                continue
            if not any(
                s.get("kind") == "ServiceAccount" and s.get("name") == self.s.service_account
                for s in binding.get("subjects") or []
            ):
                continue
            ref = binding["roleRef"]
            role = next(
                (
                    o
                    for o in objects
                    if o["kind"] == ref["kind"] and o["metadata"]["name"] == ref["name"]
                ),
                None,
            )
            scope = self.s.namespace if binding["kind"] == "RoleBinding" else None
            for rule in (role or {}).get("rules") or []:
                yield scope, rule

    def _allowed(self, attributes: Obj) -> bool:
        review = {
            "apiVersion": SAR[0],
            "kind": SAR[1],
            "spec": {
                "user": self.s.runner_user,
                "groups": [
                    "system:serviceaccounts",
                    f"system:serviceaccounts:{self.s.namespace}",
                    "system:authenticated",
                ],
                "resourceAttributes": attributes,
            },
        }
        answer = self.kube.review(review)
        return bool((answer.get("status") or {}).get("allowed"))


def _attributes(rule: Obj, namespace: str | None) -> Iterator[Obj]:
    for group in rule.get("apiGroups") or [""]:
        for resource in rule.get("resources") or []:
            for verb in rule.get("verbs") or []:
                for name in rule.get("resourceNames") or [None]:
                    attrs: Obj = {"group": group, "resource": resource, "verb": verb}
                    if name:
                        attrs["name"] = name
                    if namespace:
                        attrs["namespace"] = namespace
                    yield attrs


def _describe(attributes: Obj) -> str:
    what = attributes["resource"] + (f".{attributes['group']}" if attributes["group"] else "")
    if attributes.get("name"):
        what += f"/{attributes['name']}"
    if attributes.get("namespace"):
        what += f" in {attributes['namespace']}"
    return f"{attributes['verb']} {what}"


def _image_values(obj: Any, key: str = "") -> Iterator[str]:
    """Every string under a key that names an image (the guard's allowed catalog images)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k != "metadata":
                yield from _image_values(v, str(k))
    elif isinstance(obj, list):
        for v in obj:
            yield from _image_values(v, key)
    elif isinstance(obj, str) and "image" in key.lower():
        yield obj


def setting(
    base: DeployBase,
    namespace: str,
    steps: Sequence[Step],
    *,
    user: str,
    templates_dir: Path | None,
    params_file: Path | None,
    operators_namespace: str = OPERATORS_NAMESPACE,
) -> Setting:
    """The templates and parameters as `user`'s pod would render them."""
    params = config.load_params(params_file, User(user), project_request=False)
    loaded = templates.load_templates(templates_dir)
    rendered = {name: templates.render(t, params) for name, t in loaded.items()}
    return Setting(base, namespace, steps, rendered, params, operators_namespace)


def run_preflight(
    cfg: Configuration,
    setting: Setting,
    names: Sequence[str],
    *,
    settle: float = 0.0,
    seconds: float = SECONDS,
) -> list[Check]:
    """Run the checks `names` as the admin (`cfg`) and, impersonated, as the runner."""
    kube = Kube(
        Cluster(cfg),
        log=get_logger(user=None, step=None),
        deadline=Deadline.after(seconds),
        cancel=CancelToken(),
    )
    runner = connect_as(cfg, setting.runner_user, seconds)
    try:
        return Preflight(kube, runner, setting, settle).run(names)
    finally:
        kube.cluster.close()
        runner.cluster.close()


def connect_as(cfg: Configuration, user: str, seconds: float) -> Kube:
    """A dry-run Kube acting as `user` (impersonation: the admin needs `impersonate`)."""
    cluster = Cluster(cfg)
    cluster.default_headers["Impersonate-User"] = user
    return Kube(
        cluster,
        log=get_logger(user=None, step=None),
        deadline=Deadline.after(seconds),
        cancel=CancelToken(),
        dry_run=True,
    )


def print_checks(results: Sequence[Check], out: TextIO) -> None:
    width = max(len(n) for n in CHECKS)
    for c in results:
        out.write(f"{c.status.upper():<4}  {c.name:<{width}}  {c.detail}\n")
        if c.status == "fail" and c.fix:
            out.write(f"{'':<4}  {'':<{width}}  -> {c.fix}\n")
    failed = [c.name for c in results if c.status == "fail"]
    if failed:
        out.write(f"preflight: {len(failed)} check(s) failed: {', '.join(failed)}\n")
    else:
        out.write(f"preflight: {len(results)} check(s) run, none failed\n")


def exit_code(results: Sequence[Check]) -> int:
    return EXIT_PREFLIGHT if any(c.status == "fail" for c in results) else 0
