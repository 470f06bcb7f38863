"""Starting, joining and connecting to the Ray cluster, with drylocal's security settings.

- Every Ray process binds the address given (``--node-ip-address``), never all interfaces by default.
- Token authentication is on (``RAY_AUTH_MODE=token``): Ray 2.60 checks a bearer token on its gRPC services; the
  token is a random file in ``$DRYLOCAL_HOME/ray/auth_token`` (mode 0600), which each joining node needs a copy
  of. The dashboard's web UI is off (``--include-dashboard=false``); Ray still runs its dashboard agent, bound
  to the same address.
- Still: anyone who reaches the ports with the token runs code on every node. Keep the cluster on a private
  network (README "Scaling out").
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

__all__ = ("DEVICE_RESOURCE", "connect", "join_command", "security_env", "start_node", "token_path")

DEVICE_RESOURCE = "drylocal_device"
"""The Ray resource a node offers once per device it lends drylocal; an actor holds one."""
NAMESPACE = "drylocal"


def token_path(home: Path) -> Path:
    return home / "ray" / "auth_token"


def security_env(home: Path, create: bool) -> dict[str, str]:
    """The environment Ray processes and drivers need for token authentication; ``create`` makes the token
    (the head) where it does not exist yet, else it must have been copied there (a joining node)."""
    path = token_path(home)
    if not path.exists():
        if not create:
            raise FileNotFoundError(f"{path} is missing: copy it from the head node's data folder")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32))
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(path)}


def start_node(
    *, host: str, devices: int, gpus: int, home: Path, head: bool, port: int = 6379, address: str | None = None,
    visible_gpus: str | None = None,
) -> subprocess.Popen:
    """``ray start --block`` as a child process that dies with this one: the head (on ``host:port``) or a node
    joining ``address``; ``visible_gpus``: the CUDA indices it may lend (``"0,2"``), else all."""
    env = {**os.environ, **security_env(home, create=head)}
    if visible_gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = visible_gpus
    command = [
        str(Path(sys.executable).with_name("ray")), "start", "--block", "--disable-usage-stats",
        f"--node-ip-address={host}", f"--num-gpus={gpus}", f"--resources={json.dumps({DEVICE_RESOURCE: devices})}",
    ]
    if head:
        command += ["--head", f"--port={port}", "--include-dashboard=false"]
    else:
        command += [f"--address={address}"]
    return subprocess.Popen(command, env=env, preexec_fn=_stop_with_parent)


def _stop_with_parent() -> None:
    """In the child, before exec: the kernel sends SIGTERM when the drylocal process dies. ``ray start --block``
    stops the Ray processes it started on SIGTERM; on SIGKILL (engine/process_memory.py's ``die_with_parent``)
    its raylet's agents outlived it."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() == 1:  # the parent died before the call took effect
        os._exit(1)


def connect(address: str, home: Path, timeout: float = 60.0) -> None:
    """This process joins the cluster as its driver (the API process), with the token, retrying until the head
    answers."""
    os.environ.update(security_env(home, create=False))
    import ray

    deadline = time.monotonic() + timeout
    while True:
        try:
            ray.init(address=address, namespace=NAMESPACE, log_to_driver=False)
            return
        except (ConnectionError, RuntimeError):
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def join_command(host: str, port: int) -> str:
    return f"drylocal worker --address {host}:{port} --host <this node's private address> [--devices cuda:0,cuda:1]"
