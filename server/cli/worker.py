"""``drylocal worker``: this machine joins a drylocal cluster as a Ray node that lends its devices; and the head
that ``drylocal serve --cluster`` starts beside the API (engine/cluster)."""

from __future__ import annotations

import argparse
from typing import Callable

from engine import Settings

__all__ = ("add_parser", "start_cluster")


def _devices(settings: Settings, names: str | None) -> tuple[list[str], str | None]:
    """The devices to lend (``--devices``, else those drylocal would drive here) and the CUDA indices among them."""
    if names:
        devices = [name.strip() for name in names.split(",") if name.strip()]
    else:
        from engine.devices import probe_devices

        devices = [budget.device for budget in probe_devices(settings)]
    gpus = [d.split(":", 1)[1] if ":" in d else "0" for d in devices if d.startswith("cuda")]
    return devices, ",".join(gpus) if gpus else None


def start_cluster(settings: Settings, host: str, port: int, devices: str | None = None) -> Callable:
    """Start the Ray head here, lending this machine's devices, join it as the driver, and return the
    ``workers`` seam for Engine.open: one proxy per device actor, on every node (engine/cluster/pool.py)."""
    from engine.cluster.ray_node import connect, join_command, start_node, token_path

    lent, visible = _devices(settings, devices)
    gpus = len(visible.split(",")) if visible else 0
    start_node(host=host, port=port, devices=len(lent), gpus=gpus, home=settings.home, head=True, visible_gpus=visible)
    connect(f"{host}:{port}", settings.home)
    # Only now: Ray reads the auth mode from the environment when first imported, which connect has just set.
    from engine.cluster.pool import ClusterPool

    print(f"drylocal: Ray head on {host}:{port}, lending {', '.join(lent)}. To add a machine, copy "
          f"{token_path(settings.home)} to the same place under its DRYLOCAL_HOME, pull the models there, and run:",
          flush=True)
    print(f"    {join_command(host, port)}", flush=True)
    return ClusterPool().workers_for


def worker(args: argparse.Namespace) -> int:
    from engine.cluster.ray_node import start_node

    from model_registry.embedded import provision_embedded

    settings = Settings.load()
    settings.ensure_dirs()
    # As serve does: the models the installed packages ship are ready here without a pull.
    for slug, path in provision_embedded(settings.models_dir, skip=settings.embedded_skip).items():
        print(f"drylocal: {slug} ready from packaged weights ({path})", flush=True)
    lent, visible = _devices(settings, args.devices)
    gpus = len(visible.split(",")) if visible else 0
    print(f"drylocal: joining {args.address} as {args.host}, lending {', '.join(lent)}", flush=True)
    node = start_node(host=args.host, devices=len(lent), gpus=gpus, home=settings.home, head=False,
                      address=args.address, visible_gpus=visible)
    try:
        return node.wait()
    except KeyboardInterrupt:
        node.terminate()
        return node.wait()


def add_parser(commands) -> None:
    parser = commands.add_parser("worker", help="join a drylocal cluster (serve --cluster) as a node lending its devices")
    parser.add_argument("--address", required=True, help="the head's HOST:PORT, as serve --cluster printed it")
    parser.add_argument("--host", default="127.0.0.1", help="this node's address on the cluster's private network")
    parser.add_argument("--devices", help="the devices to lend, comma-separated (cuda:0,cuda:1); default: all")
    parser.set_defaults(func=worker)
