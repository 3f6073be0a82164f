"""What the process kubelet derives from a Pod spec, as pure functions: env, argv, paths.

Supported, as the real kubelet does it: env with $(VAR) expansion, valueFrom fieldRef /
resourceFieldRef / configMapKeyRef / secretKeyRef (with `optional`), envFrom (configMapRef,
secretRef, prefix), KUBERNETES_SERVICE_HOST/PORT, HOSTNAME; command/args with $(VAR) expansion
and `$$` escapes; when `command` is absent, the image's entrypoint from the image map.
There is no container filesystem: every volumeMount's mountPath, the service-account mount and
the terminationMessagePath are directories/files of the pod's own directory, and occurrences of
those paths in command, args and env values (as a whole value or after `=`) are rewritten to
the local path. WORKSHOP_RUNNER_SERVICEACCOUNT_DIR points at the service-account directory (when
the pod has the token mounted) and WORKSHOP_RUNNER_TERMINATION_LOG at the termination file.
"""

from __future__ import annotations

import fnmatch
import math
import os
import re
import shutil
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Obj = dict[str, Any]

SA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
DEFAULT_TERMINATION_PATH = "/dev/termination-log"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MESSAGE_LIMIT = 4096
FALLBACK_LINES = 80
FALLBACK_BYTES = 2048
_FIELD = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


class PodSpecError(Exception):
    """The kubelet cannot build a container from this spec (CreateContainerConfigError)."""

    def __init__(self, message: str, reason: str = "CreateContainerConfigError") -> None:
        super().__init__(message)
        self.reason = reason


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: `$$` is a literal `$`, unknown references stay as they are."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch != "$" or i + 1 >= n:
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            end = text.find(")", i + 2)
            if end < 0:
                out.append(text[i:])
                break
            name = text[i + 2 : end]
            out.append(env.get(name, f"$({name})"))
            i = end + 1
        else:
            out.append("$" + nxt)
            i += 2
    return "".join(out)


def field_value(pod: Obj, path: str) -> str:
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    st = pod.get("status") or {}
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.hostIP": st.get("hostIP") or "127.0.0.1",
        "status.hostIPs": ",".join(i["ip"] for i in st.get("hostIPs") or []) or "127.0.0.1",
        "status.podIP": st.get("podIP") or "127.0.0.1",
        "status.podIPs": ",".join(i["ip"] for i in st.get("podIPs") or []) or "127.0.0.1",
    }
    if path in simple:
        return str(simple[path])
    if path in ("metadata.labels", "metadata.annotations"):
        items = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
    match = _FIELD.match(path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    raise PodSpecError(f"unsupported fieldRef fieldPath {path!r}")


_SUFFIX = {
    "m": 1e-3,
    "": 1,
    "k": 1e3,
    "K": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
}


def quantity(text: str) -> float:
    match = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(text).strip())
    if not match or match.group(2) not in _SUFFIX:
        raise PodSpecError(f"invalid quantity {text!r}")
    return float(match.group(1)) * _SUFFIX[match.group(2)]


def resource_value(container: Obj, ref: Obj, node_allocatable: Mapping[str, str]) -> str:
    resource = str(ref.get("resource", ""))
    kind, _, name = resource.partition(".")
    resources = container.get("resources") or {}
    value = (resources.get(kind) or {}).get(name)
    if value is None and kind == "limits":
        value = node_allocatable.get(name)
    if value is None:
        value = "0"
    divisor = quantity(str(ref.get("divisor") or "1"))
    return str(math.ceil(quantity(str(value)) / divisor))


@dataclass
class Lookups:
    """Reads the kubelet needs while building env: ConfigMaps and Secrets of the pod's namespace."""

    configmap: Callable[[str], Mapping[str, str] | None]
    secret: Callable[[str], Mapping[str, str] | None]
    allocatable: Mapping[str, str] = field(default_factory=lambda: {"cpu": "8", "memory": "32Gi"})


def _ref_value(
    source: Callable[[str], Mapping[str, str] | None], ref: Obj, what: str
) -> str | None:
    data = source(str(ref.get("name", "")))
    optional = bool(ref.get("optional"))
    if data is None:
        if optional:
            return None
        raise PodSpecError(f'{what} "{ref.get("name")}" not found')
    key = str(ref.get("key", ""))
    if key not in data:
        if optional:
            return None
        raise PodSpecError(f"couldn't find key {key} in {what} {ref.get('name')}")
    return data[key]


def build_env(
    pod: Obj,
    container: Obj,
    base: Mapping[str, str],
    lookups: Lookups,
    rewrite: Callable[[str], str] = str,
) -> dict[str, str]:
    """base (kubelet-provided) < envFrom < env, each literal value path-rewritten, then expanded
    against what came before."""
    env = dict(base)
    for source in container.get("envFrom") or []:
        prefix = str(source.get("prefix") or "")
        for kind, getter in (("configMapRef", lookups.configmap), ("secretRef", lookups.secret)):
            ref = source.get(kind)
            if not ref:
                continue
            data = getter(str(ref.get("name", "")))
            if data is None:
                if ref.get("optional"):
                    continue
                raise PodSpecError(f"{kind} {ref.get('name')} not found")
            for key, value in data.items():
                env[prefix + key] = value
    for item in container.get("env") or []:
        name = str(item["name"])
        if "valueFrom" not in item:
            env[name] = expand(rewrite(str(item.get("value", ""))), env)
            continue
        vf = item["valueFrom"]
        found: str | None
        if "fieldRef" in vf:
            found = field_value(pod, str(vf["fieldRef"].get("fieldPath", "")))
        elif "resourceFieldRef" in vf:
            found = resource_value(container, vf["resourceFieldRef"], lookups.allocatable)
        elif "configMapKeyRef" in vf:
            found = _ref_value(lookups.configmap, vf["configMapKeyRef"], "configmap")
        elif "secretKeyRef" in vf:
            found = _ref_value(lookups.secret, vf["secretKeyRef"], "secret")
        else:
            raise PodSpecError(f"unsupported valueFrom for {name}")
        if found is not None:
            env[name] = found
    return env


@dataclass(frozen=True)
class ImageMap:
    """Image glob -> entrypoint argv; the first matching glob wins. An entry may also give the
    image's environment (a Dockerfile's ENV): `{glob: {command: [argv], env: {NAME: value}}}`;
    the container's own env overrides it."""

    entries: tuple[tuple[str, tuple[str, ...]], ...]
    envs: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()

    @classmethod
    def default(cls, bin_dir: Path) -> ImageMap:
        return cls((("*workshop-runner*", (str(bin_dir / "workshop-runner"),)),))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], fallback: ImageMap | None = None) -> ImageMap:
        entries, envs = [], []
        for glob, value in data.items():
            command = value.get("command") if isinstance(value, Mapping) else value
            entries.append((glob, tuple([command] if isinstance(command, str) else command)))
            if isinstance(value, Mapping) and value.get("env"):
                envs.append((glob, tuple((str(k), str(v)) for k, v in value["env"].items())))
        if fallback is not None:
            entries += fallback.entries
            envs += fallback.envs
        return cls(tuple(entries), tuple(envs))

    def entrypoint(self, image: str) -> tuple[str, ...] | None:
        for pattern, argv in self.entries:
            if fnmatch.fnmatchcase(image, pattern):
                return argv
        return None

    def env(self, image: str) -> dict[str, str]:
        """The environment of the entry `entrypoint` picks for `image`."""
        for pattern, _argv in self.entries:
            if fnmatch.fnmatchcase(image, pattern):
                return dict(next((e for g, e in self.envs if g == pattern), ()))
        return {}

    def bin_dirs(self, image: str) -> list[str]:
        argv = self.entrypoint(image)
        return [str(Path(argv[0]).parent)] if argv and "/" in argv[0] else []


class PathMap:
    """Container paths -> local paths, in whole values, `--flag=value` forms and inside shell
    strings (a mount path preceded by a start, space, quote, `=`, `:` or `(`, and followed by an
    end, `/`, space, quote or shell punctuation)."""

    def __init__(self, mapping: Mapping[str, str]) -> None:
        self.items = sorted(mapping.items(), key=lambda kv: -len(kv[0].rstrip("/")))
        alternation = "|".join(re.escape(k.rstrip("/") or "/") for k, _ in self.items)
        self._embedded = (
            re.compile(rf"(?:(?<=^)|(?<=[\s'\"=:(]))({alternation})(?=$|[/\s'\";|&)<>])")
            if self.items
            else None
        )

    def local(self, path: str) -> str | None:
        for container_path, local in self.items:
            cp = container_path.rstrip("/") or "/"
            if path == cp:
                return local
            if path.startswith(cp + "/"):
                return local + path[len(cp) :]
        return None

    def rewrite(self, value: str) -> str:
        found = self.local(value)
        if found is not None:
            return found
        if self._embedded is None:
            return value
        # One pass, so a local path put in is never rewritten again.
        return self._embedded.sub(lambda m: self.local(m.group(1)) or m.group(1), value)


def build_argv(
    container: Obj, images: ImageMap, env: Mapping[str, str], paths: PathMap
) -> list[str]:
    """command (or the image map's entrypoint, used as is) + args; the container's own strings
    are path-rewritten, then $(VAR)-expanded."""
    own = [paths.rewrite(str(a)) for a in container.get("command") or []]
    own_args = [paths.rewrite(str(a)) for a in container.get("args") or []]
    entry: list[str] = []
    if not own:
        image = str(container.get("image", ""))
        found = images.entrypoint(image)
        if found is None:
            raise PodSpecError(
                f"devcluster kubelet: no entrypoint known for image {image!r} and no command; "
                "add the image to the kubelet's image map",
                reason="StartError",
            )
        entry = list(found)
    return entry + [expand(a, env) for a in own + own_args]


def resolve(argv0: str, env: Mapping[str, str]) -> str | None:
    if "/" in argv0:
        return argv0 if os.path.exists(argv0) else None
    return shutil.which(argv0, path=env.get("PATH", DEFAULT_PATH))


def can_execute(path: str, uid: int, gids: Sequence[int], depth: int = 0) -> bool:
    """Whether uid/gids may run `path`: every parent searchable, the file executable, and for a
    `#!` script the interpreter too. (The venv under /root is not, on some machines.)"""
    if uid == 0:
        return True
    real = os.path.realpath(path)

    def allowed(p: str, bit: int) -> bool:
        try:
            st = os.stat(p)
        except OSError:
            return False
        if st.st_uid == uid:
            return bool(st.st_mode & (bit << 6))
        if st.st_gid in gids:
            return bool(st.st_mode & (bit << 3))
        return bool(st.st_mode & bit)

    for candidate in {path, real}:
        parts = Path(candidate).parent.parts
        for i in range(1, len(parts) + 1):
            if not allowed(str(Path(*parts[:i])), stat.S_IXOTH):
                return False
    if not allowed(real, stat.S_IXOTH):
        return False
    if depth < 3:
        try:
            with open(real, "rb") as fh:
                head = fh.readline(256)
        except OSError:
            return True
        if head.startswith(b"#!"):
            if not allowed(real, stat.S_IROTH):
                return False
            interp = head[2:].decode(errors="replace").strip().split()
            if interp:
                return can_execute(interp[0], uid, gids, depth + 1)
    return True


def tail(text: str, lines: int = FALLBACK_LINES, max_bytes: int = FALLBACK_BYTES) -> str:
    kept = "\n".join(text.splitlines()[-lines:])
    data = kept.encode()
    if len(data) > max_bytes:
        data = data[-max_bytes:]
    return data.decode(errors="replace")


def termination_message(file_text: str, log_text: str, policy: str, exit_code: int) -> str:
    """What the kubelet puts in state.terminated.message (FallbackToLogsOnError on failure)."""
    message = file_text.encode()[:MESSAGE_LIMIT].decode(errors="ignore")
    if not message.strip() and policy == "FallbackToLogsOnError" and exit_code != 0:
        message = tail(log_text)
    return message


def run_identity(pod: Obj, container: Obj, default_uid: int) -> tuple[int, int, list[int]]:
    """(uid, gid, groups): runAsUser/runAsGroup, else OpenShift's arbitrary UID with gid 0."""
    pod_sc = (pod.get("spec") or {}).get("securityContext") or {}
    sc = container.get("securityContext") or {}
    uid = sc.get("runAsUser", pod_sc.get("runAsUser", default_uid))
    gid = sc.get("runAsGroup", pod_sc.get("runAsGroup", 0))
    non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot", False))
    if non_root and int(uid) == 0:
        raise PodSpecError("container has runAsNonRoot and image will run as root")
    groups = {0, *(int(g) for g in pod_sc.get("supplementalGroups") or [])}
    if pod_sc.get("fsGroup") is not None:
        groups.add(int(pod_sc["fsGroup"]))
    return int(uid), int(gid), sorted(groups)


def kubelet_env(pod: Obj, host: str, port: int) -> dict[str, str]:
    """What every container gets before its own env: the API server and the pod's hostname."""
    name = (pod.get("metadata") or {}).get("name", "")
    hostname = (pod.get("spec") or {}).get("hostname") or name
    return {
        "PATH": DEFAULT_PATH,
        "HOSTNAME": str(hostname),
        "KUBERNETES_SERVICE_HOST": host,
        "KUBERNETES_SERVICE_PORT": str(port),
        "KUBERNETES_SERVICE_PORT_HTTPS": str(port),
        "KUBERNETES_PORT": f"tcp://{host}:{port}",
        "KUBERNETES_PORT_443_TCP": f"tcp://{host}:{port}",
        "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
        "KUBERNETES_PORT_443_TCP_PORT": str(port),
        "KUBERNETES_PORT_443_TCP_ADDR": host,
    }
