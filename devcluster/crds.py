"""Install the CRDs the workshop steps need into the local control plane.

OLM's CRDs are read from the published Go module github.com/operator-framework/api (its crds/
directory) in the module cache, not copied into this repository. Maistra, Kiali and the
OpenShift project API are our own structural schemas in devcluster/crds/.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

OLM_API_MODULE = "github.com/operator-framework/api"
OLM_API_VERSION = "v0.41.0"
OLM_KINDS = (
    "catalogsources",
    "clusterserviceversions",
    "installplans",
    "operatorgroups",
    "subscriptions",
)
OWN_DIR = Path(__file__).resolve().parent / "crds"


def olm_crd_dir(version: str = OLM_API_VERSION) -> Path:
    proc = subprocess.run(
        ["go", "mod", "download", "-json", f"{OLM_API_MODULE}@{version}"],
        capture_output=True,
        text=True,
        check=False,
        cwd=OWN_DIR,
        env={**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"go mod download {OLM_API_MODULE}@{version}: {proc.stderr.strip()}")
    return Path(json.loads(proc.stdout)["Dir"]) / "crds"


def load_all(openshift: bool = False) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    olm = olm_crd_dir()
    for kind in OLM_KINDS:
        docs.append(yaml.safe_load((olm / f"operators.coreos.com_{kind}.yaml").read_text()))
    files = ["maistra.yaml", "kiali.yaml"] + (["openshift.yaml"] if openshift else [])
    for name in files:
        docs.extend(d for d in yaml.safe_load_all((OWN_DIR / name).read_text()) if d)
    return docs


def install(api_client: Any, *, openshift: bool = False, timeout: float = 60.0) -> list[str]:
    """Create (or replace) every CRD and wait until each is Established."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    ext = client.ApiextensionsV1Api(api_client)
    names = []
    for doc in load_all(openshift):
        name = doc["metadata"]["name"]
        names.append(name)
        try:
            ext.create_custom_resource_definition(doc)
        except ApiException as exc:
            if exc.status != 409:
                raise
            current = ext.read_custom_resource_definition(name)
            doc["metadata"]["resourceVersion"] = current.metadata.resource_version
            ext.replace_custom_resource_definition(name, doc)
    deadline = time.monotonic() + timeout
    pending = set(names)
    while pending and time.monotonic() < deadline:
        for name in list(pending):
            crd = ext.read_custom_resource_definition(name)
            conds = {c.type: c.status for c in (crd.status.conditions or [])}
            if conds.get("Established") == "True":
                pending.discard(name)
        if pending:
            time.sleep(0.1)
    if pending:
        raise RuntimeError(f"CRDs not Established after {timeout:.0f}s: {sorted(pending)}")
    return names
