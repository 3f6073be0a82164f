"""python -m devcluster.sim --kubeconfig PATH [--knobs FILE] [--kubelet | --kubelet-only] ...

One background process: the simulated operators (OLM, Maistra, Kiali, OpenShift projects) and,
with --kubelet, the process kubelet too; --kubelet-only runs just the kubelet. It runs until
SIGTERM/SIGINT, then removes its webhook configurations and fails the pods it runs with
DisruptionTarget. Readiness: --ready-file is written, and `ready` is set in the ConfigMap
devcluster-system/devcluster-sim-status (or devcluster-kubelet-status).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import uuid
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import yaml

from devcluster.sim import podspec
from devcluster.sim.kube import Kube

if TYPE_CHECKING:
    from devcluster.sim.kubelet import Kubelet
    from devcluster.sim.service import StatusBoard


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m devcluster.sim", description=__doc__.split("\n\n")[1]
    )
    p.add_argument("--kubeconfig", required=True, type=Path)
    p.add_argument(
        "--knobs",
        type=Path,
        default=os.environ.get("DEVCLUSTER_SIM_KNOBS") or None,
        help="knobs YAML file, re-read when it changes (default $DEVCLUSTER_SIM_KNOBS)",
    )
    p.add_argument(
        "--profile",
        default=os.environ.get("DEVCLUSTER_SIM_PROFILE", "fast"),
        choices=["fast", "realistic", "instant"],
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--kubelet", action="store_true", help="also run the process kubelet")
    mode.add_argument("--kubelet-only", action="store_true", help="run only the process kubelet")
    p.add_argument(
        "--namespace",
        action="append",
        default=[],
        help="namespace whose pods the kubelet runs (repeatable; default: all)",
    )
    p.add_argument("--node-name", default="devcluster-kubelet")
    p.add_argument("--kubelet-root", type=Path, help="per-pod directories (default: a temp dir)")
    p.add_argument("--image-map", type=Path, help="YAML {image-glob: [entrypoint argv]}")
    p.add_argument("--max-pods", type=int, default=110)
    p.add_argument("--run-as-uid", type=int, default=1000770000)
    p.add_argument("--ready-file", type=Path)
    p.add_argument("--state-dir", type=Path, help="webhook certificates (default: a temp dir)")
    p.add_argument("--instance-id", default=uuid.uuid4().hex[:12])
    p.add_argument("--log-level", default=os.environ.get("DEVCLUSTER_SIM_LOG", "INFO"))
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s",
    )
    log = logging.getLogger("devcluster.sim")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    from devcluster.sim.service import KnobsSource, Simulators, StatusBoard, kubelet_status_name

    kube = Kube(args.kubeconfig)
    own_state = args.state_dir is None
    state_dir = args.state_dir or Path(tempfile.mkdtemp(prefix="devcluster-sim-"))
    sims: Simulators | None = None
    kubelet: Kubelet | None = None
    try:
        if not args.kubelet_only:
            sims = Simulators(
                kube, KnobsSource(args.knobs, args.profile), state_dir, args.instance_id
            )
            sims.start()
            log.info("simulators ready (%s)", ", ".join(c.name for c in sims.controllers))
        if args.kubelet or args.kubelet_only:
            kubelet = start_kubelet(args, kube, stop)
        if args.ready_file:
            info = {"instance": args.instance_id, "pid": os.getpid()}
            if sims and sims.webhook:
                info["webhook_port"] = sims.webhook.port
            args.ready_file.write_text(json.dumps(info) + "\n")
        stop.wait()
        log.info("stopping")
        return 0
    finally:
        if kubelet is not None:
            kubelet.stop()
            try:
                StatusBoard(kube, kubelet_status_name(args.node_name)).set(
                    ready=None, **{"stats.json": json.dumps(kubelet.summary())}
                )
            except Exception as exc:
                log.warning("kubelet status: %s", exc)
        if sims is not None:
            sims.stop()
        if args.ready_file:
            args.ready_file.unlink(missing_ok=True)
        if own_state:
            shutil.rmtree(state_dir, ignore_errors=True)
        kube.close()


def start_kubelet(args: argparse.Namespace, kube: Kube, stop: threading.Event) -> Kubelet:
    from devcluster.sim.kubelet import Kubelet
    from devcluster.sim.service import StatusBoard, ensure_namespace, kubelet_status_name

    images = podspec.ImageMap.default(Path(sys.executable).parent)
    if args.image_map:
        mapping = yaml.safe_load(args.image_map.read_text()) or {}
        images = podspec.ImageMap.from_mapping(mapping, images)
    version = kube.request("GET", "/version").get("gitVersion", "v0.0.0")
    kubelet = Kubelet(
        kube,
        node_name=args.node_name,
        namespaces=args.namespace,
        root=args.kubelet_root,
        images=images,
        max_pods=args.max_pods,
        default_uid=args.run_as_uid,
        kubelet_version=version,
        instance=args.instance_id,
    )
    kubelet.start()
    ensure_namespace(kube, "devcluster-system")
    board = StatusBoard(kube, kubelet_status_name(args.node_name))
    board.set(
        ready=args.instance_id,
        node=args.node_name,
        namespaces=",".join(args.namespace) or "*",
        **{"stats.json": json.dumps(kubelet.summary(), sort_keys=True)},
    )
    threading.Thread(
        target=_publish_kubelet_stats, args=(kubelet, board, stop), daemon=True
    ).start()
    where = ", ".join(args.namespace) or "all namespaces"
    logging.getLogger("devcluster.sim").info(
        "kubelet ready: node %s, pods in %s", args.node_name, where
    )
    return kubelet


def _publish_kubelet_stats(kubelet: Kubelet, board: StatusBoard, stop: threading.Event) -> None:
    last = ""
    while not stop.wait(5.0):
        try:
            text = json.dumps(kubelet.summary(), sort_keys=True)
            if text != last:
                board.set(**{"stats.json": text})
                last = text
        except Exception as exc:
            logging.getLogger("devcluster.sim").warning("kubelet stats: %s", exc)


if __name__ == "__main__":
    sys.exit(main())
