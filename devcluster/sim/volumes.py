"""A pod's volumes, materialised in its directory by the process kubelet.

configMap, secret, emptyDir, downwardAPI, hostPath (used in place) and projected
(serviceAccountToken through a TokenRequest bound to the pod, configMap, secret, downwardAPI).
A missing ConfigMap or Secret that is not optional keeps the pod Pending (ContainerCreating,
"MountVolume.SetUp failed") until it appears or the pod is deleted, as on a real node; any other
volume type fails the pod with StartError and says which.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devcluster.sim import podspec

if TYPE_CHECKING:
    from devcluster.sim.podrun import PodRun

Obj = dict[str, Any]
GROUP_DIR = 0o2770


def mkdir_group(path: Path, mode: int = GROUP_DIR) -> Path:
    """A directory root owns with group 0 access, as OpenShift's arbitrary UIDs (gid 0) need."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(mode)
    if os.geteuid() == 0:
        os.chown(path, 0, 0)
    return path


def write_file(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)


class Volumes:
    def __init__(self, run: PodRun) -> None:
        self.run = run

    def _wait_for(
        self, read: Callable[[], dict[str, str] | None], optional: bool, what: str
    ) -> dict[str, str] | None:
        said = False
        while not self.run.stopping.is_set():
            data = read()
            if data is not None or optional:
                return data
            if not said:
                self.run._write_waiting(
                    "ContainerCreating", f"MountVolume.SetUp failed: {what} not found"
                )
                said = True
            self.run.stopping.wait(1.0)
        return None

    def build(self) -> dict[str, str] | None:
        """Volume name -> local directory; None if the pod went away while waiting."""
        out: dict[str, str] = {}
        for vol in (self.run.pod.get("spec") or {}).get("volumes") or []:
            name = vol["name"]
            target = mkdir_group(self.run.dir / "volumes" / name)
            out[name] = str(target)
            mode = int(
                next(
                    (
                        v.get("defaultMode")
                        for v in vol.values()
                        if isinstance(v, dict) and "defaultMode" in v
                    ),
                    0o644,
                )
            )
            if "emptyDir" in vol:
                continue
            if "hostPath" in vol:
                out[name] = str(vol["hostPath"]["path"])
            elif "configMap" in vol or "secret" in vol:
                files = self._source_files(vol)
                if files is None:
                    return None
                self._fill(target, files, mode)
            elif "downwardAPI" in vol:
                self._fill(target, self._downward(vol["downwardAPI"].get("items") or []), mode)
            elif "projected" in vol:
                for source in vol["projected"].get("sources") or []:
                    files = self._projected(source)
                    if files is None:
                        return None
                    self._fill(target, files, mode)
            else:
                kinds = sorted(set(vol) - {"name"})
                raise podspec.PodSpecError(
                    f"volume {name}: {kinds} not supported by the devcluster kubelet",
                    reason="StartError",
                )
        return out

    def _source_files(self, source: Obj) -> dict[str, str] | None:
        if "configMap" in source:
            ref = source["configMap"]
            name = ref.get("name", "")
            data = self._wait_for(
                lambda: self.run.k.configmap(self.run.ns, name),
                bool(ref.get("optional")),
                f'configmap "{name}"',
            )
        else:
            ref = source["secret"]
            name = ref.get("secretName") or ref.get("name", "")
            data = self._wait_for(
                lambda: self.run.k.secret(self.run.ns, name),
                bool(ref.get("optional")),
                f'secret "{name}"',
            )
        if data is None:
            return None if self.run.stopping.is_set() else {}
        items = ref.get("items")
        if not items:
            return dict(data)
        return {i["path"]: data[i["key"]] for i in items if i["key"] in data}

    def _downward(self, items: list[Obj]) -> dict[str, str]:
        return {
            i["path"]: podspec.field_value(self.run.pod, i["fieldRef"]["fieldPath"])
            for i in items
            if "fieldRef" in i
        }

    def _projected(self, source: Obj) -> dict[str, str] | None:
        if "serviceAccountToken" in source:
            sat = source["serviceAccountToken"]
            token = self.run.k.token(
                self.run.pod, sat.get("audience"), int(sat.get("expirationSeconds") or 3607)
            )
            return {sat.get("path", "token"): token}
        if "configMap" in source or "secret" in source:
            return self._source_files(source)
        if "downwardAPI" in source:
            return self._downward(source["downwardAPI"].get("items") or [])
        raise podspec.PodSpecError(
            f"projected source {sorted(source)} not supported", reason="StartError"
        )

    @staticmethod
    def _fill(target: Path, files: dict[str, str], mode: int) -> None:
        for rel, text in files.items():
            write_file(target / rel, text.encode(), mode)
