#!/usr/bin/env bash
# Bench peer: the seed's approach. kubectl apply, then `kubectl get` in a `sleep` loop, for the
# same per-user steps as workshop-runner. Users one after the other, or (--parallel) every user
# at once as a background process.
#
#   provision.sh [--parallel] USER...
#
# It runs as a cluster admin, as the workshop's provisioning does: Maistra's member-roll
# admission asks the writer to be allowed to update pods in each namespace it adds, which a
# cluster admin is everywhere, so unlike workshop-runner (a ServiceAccount without pod rights,
# which binds workshop-runner-mesh-member in the user's namespace) it needs no binding.
#
# Environment: KUBECTL (default kubectl), KUBECONFIG, POLL (seconds between polls, default 5),
# TRIES (polls before giving up, default 120), CSV (pinned CSV), MARKS (file to append
# "mark <user> <step> <epoch seconds>" lines to when a step ends; the bench reads them).
set -euo pipefail

KUBECTL=${KUBECTL:-kubectl}
POLL=${POLL:-5}
TRIES=${TRIES:-120}
CSV=${CSV:-rhsso-operator.7.5.2-opr-001}
CATALOG=${CATALOG:-rhsso-catalog}
CATALOG_IMAGE=${CATALOG_IMAGE:-registry.redhat.io/redhat/redhat-operator-index:v4.12}
MARKS=${MARKS:-/dev/null}

k() { "$KUBECTL" "$@"; }
mark() { echo "mark $1 $2 $(date +%s.%N)" >>"$MARKS"; }
die() { echo "provision $1: $2" >&2; exit "${3:-1}"; }

# poll USER WHAT COMMAND...: run COMMAND every $POLL seconds until it succeeds (exit 0);
# exit 6 when it prints FAILED, 5 after $TRIES tries.
poll() {
  local user=$1 what=$2 out
  shift 2
  for ((i = 0; i < TRIES; i++)); do
    if out=$("$@" 2>/dev/null); then
      return 0
    fi
    [[ $out == FAILED* ]] && die "$user" "$what: $out" 6
    sleep "$POLL"
  done
  die "$user" "timed out waiting for $what" 5
}

catalog_ready() {
  [[ $(k get catalogsource "$CATALOG" -n "$1" \
    -o jsonpath='{.status.connectionState.lastObservedState}') == READY ]]
}

# The plan that lists the pinned CSV; approve it only once it asks for approval.
approve_plan() {
  local line name phase
  line=$(k get installplans -n "$1" -o jsonpath='{range .items[*]}{.metadata.name}|{.status.phase}|{.spec.clusterServiceVersionNames}{"\n"}{end}' | grep -F "\"$CSV\"" | head -n1)
  IFS='|' read -r name phase _ <<<"$line"
  case $phase in
    RequiresApproval)
      k patch installplan "$name" -n "$1" --type merge -p '{"spec":{"approved":true}}' >/dev/null ;;
    Installing | Complete) return 0 ;;
    Failed) echo "FAILED installplan $name"; return 1 ;;
    *) return 1 ;;
  esac
}

csv_succeeded() {
  local phase
  phase=$(k get csv "$CSV" -n "$1" -o jsonpath='{.status.phase}')
  [[ $phase == Failed ]] && { echo "FAILED csv $CSV"; return 1; }
  [[ $phase == Succeeded ]]
}

smcp_ready() {
  local out ready observed gen
  out=$(k get smcp.v2.maistra.io workshop-install -n "$1-istio" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}|{.status.observedGeneration}|{.metadata.generation}')
  IFS='|' read -r ready observed gen <<<"$out"
  [[ $ready == True && $observed == "$gen" ]]
}

smmr_ready() {
  local out
  out=$(k get smmr default -n "$1-istio" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status} {.status.configuredMembers}')
  [[ $out == True* && $out == *"\"$1\""* ]]
}

kiali_exists() { k get kiali.kiali.io kiali -n "$1-istio" -o name >/dev/null; }

# The Kiali operator (ansible-operator) writes no observedGeneration: a reconciliation that
# ran after our change is one whose Running condition (reason Successful) carries an
# ansibleResult.completion other than the one seen before the patch.
kiali_completion() {
  k get kiali.kiali.io kiali -n "$1-istio" \
    -o jsonpath='{.status.conditions[?(@.type=="Running")].reason}|{.status.conditions[?(@.type=="Running")].ansibleResult.completion}|{.status.conditions[?(@.type=="Failure")].status}'
}

kiali_reconciled() {
  local reason completion failure
  IFS='|' read -r reason completion failure <<<"$(kiali_completion "$1")"
  [[ $failure == True ]] && { echo "FAILED kiali"; return 1; }
  [[ $reason == Successful && -n $completion && $completion != "$2" ]]
}

apply_smcp() {
  k apply -f - >/dev/null <<YAML
apiVersion: maistra.io/v2
kind: ServiceMeshControlPlane
metadata: {name: workshop-install, namespace: $1-istio}
spec:
  version: v2.4
  proxy: {networking: {trafficControl: {outbound: {policy: REGISTRY_ONLY}}}}
  tracing: {type: Jaeger, sampling: 10000}
  addons:
    grafana: {enabled: true}
    kiali: {enabled: true, name: kiali}
    prometheus: {enabled: true}
YAML
}

rolebinding() {
  cat <<YAML
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: workshop-user-admin, namespace: $2}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: $1}]
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: admin}
YAML
}

provision() {
  local u=$1
  k apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Namespace
metadata: {name: $u, labels: {workshop-runner.io/user: $u}}
YAML
  mark "$u" namespace
  # The workshop's own policy (agnosticd's istio-mesh-workshop-all) before anything else: once
  # the namespace is a mesh member, Maistra's copied policies admit only the mesh, and without
  # this one OLM's catalog-operator could no longer reach the catalog (TRANSIENT_FAILURE).
  k apply -f - >/dev/null <<YAML
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: istio-mesh-workshop-all, namespace: $u}
spec:
  podSelector: {}
  policyTypes: [Ingress]
  ingress: [{from: [{namespaceSelector: {}}]}]
YAML
  k apply -f - >/dev/null <<YAML
apiVersion: operators.coreos.com/v1alpha1
kind: CatalogSource
metadata: {name: $CATALOG, namespace: $u}
spec: {sourceType: grpc, image: "$CATALOG_IMAGE", displayName: workshop, publisher: workshop}
YAML
  poll "$u" "CatalogSource READY" catalog_ready "$u"
  mark "$u" catalog-source
  rolebinding "$u" "$u" | k apply -f - >/dev/null
  mark "$u" rbac
  k apply -f - >/dev/null <<YAML
apiVersion: operators.coreos.com/v1
kind: OperatorGroup
metadata: {name: rhsso-operator-group, namespace: $u}
spec: {targetNamespaces: [$u]}
---
apiVersion: operators.coreos.com/v1alpha1
kind: Subscription
metadata: {name: rhsso-operator, namespace: $u}
spec: {channel: stable, installPlanApproval: Manual, name: rhsso-operator,
       source: $CATALOG, sourceNamespace: $u, startingCSV: $CSV}
YAML
  mark "$u" sso-operator
  poll "$u" "InstallPlan for $CSV" approve_plan "$u"
  mark "$u" install-plan
  poll "$u" "CSV $CSV Succeeded" csv_succeeded "$u"
  mark "$u" csv
  k apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Namespace
metadata: {name: $u-istio, labels: {workshop-runner.io/user: $u}}
YAML
  rolebinding "$u" "$u-istio" | k apply -f - >/dev/null
  mark "$u" istio-namespace
  k delete limitranges --all -n "$u-istio" >/dev/null
  mark "$u" limit-ranges
  # The mesh operator's webhook refuses creates for a while after it starts: retry.
  poll "$u" "SMCP admission" apply_smcp "$u"
  poll "$u" "SMCP Ready" smcp_ready "$u"
  mark "$u" smcp
  k apply -f - >/dev/null <<YAML
apiVersion: maistra.io/v1
kind: ServiceMeshMemberRoll
metadata: {name: default, namespace: $u-istio}
spec: {members: [$u]}
YAML
  poll "$u" "SMMR Ready" smmr_ready "$u"
  mark "$u" member-roll
  poll "$u" "Kiali CR" kiali_exists "$u"
  local before
  IFS='|' read -r _ before _ <<<"$(kiali_completion "$u")"
  k patch kiali.kiali.io kiali -n "$u-istio" --type merge \
    -p '{"spec":{"kubernetes_config":{"excluded_workloads":["CronJob","Job","ReplicationController"]}}}' >/dev/null
  poll "$u" "Kiali reconciled" kiali_reconciled "$u" "$before"
  mark "$u" kiali
}

parallel=false
if [[ ${1:-} == --parallel ]]; then parallel=true; shift; fi
[[ $# -gt 0 ]] || die "usage" "provision.sh [--parallel] USER..." 2

if ! $parallel; then
  for u in "$@"; do provision "$u"; done
  exit 0
fi
pids=()
for u in "$@"; do provision "$u" & pids+=("$!"); done
rc=0
for pid in "${pids[@]}"; do wait "$pid" || rc=$?; done
exit "$rc"
