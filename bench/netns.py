"""The namespace model of a Citus cluster on machines of their own (issue
29): each node in a network namespace of its own, all joined by veth pairs
to a bridge in one more namespace (a switch), and a delaying TCP proxy
(bench/delay_proxy.py) in front of each worker, since these kernels have no
netem qdisc. Root only; every namespace is this run's own and goes with it.
Clients still reach the coordinator through its unix socket (a file, which
namespaces do not separate); the nodes reach each other over the model.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dataarch.citus import Placement

PROJECT = Path(__file__).resolve().parent.parent

NETWORK = "10.231.0.0/24"
PROXY_OFFSET = 100  # a worker's proxy listens on its port plus this


class ModelError(RuntimeError):
    """The namespace model cannot be built here; the message says why."""


def available() -> str | None:
    """None when the model can be built, else why not."""
    if os.geteuid() != 0:
        return "the namespace model needs root (ip netns)"
    if not shutil.which("ip"):
        return "the namespace model needs the ip command (Debian's iproute2)"
    return None


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise ModelError(f"ip {' '.join(args)}: {done.stderr.strip()}")


@contextmanager
def namespace_model(nodes: int, base_port: int, delay_ms: float) -> Iterator[list[Placement]]:
    """`nodes` namespaces (the coordinator first), each node's placement;
    a worker is reached through a proxy adding `delay_ms` each way."""
    if why := available():
        raise ModelError(why)
    tag = f"da{os.getpid()}"
    switch, names = f"{tag}sw", [f"{tag}n{i}" for i in range(nodes)]
    proxies: list[subprocess.Popen] = []
    made: list[str] = []
    try:
        for ns in [switch, *names]:
            _ip("netns", "add", ns)
            made.append(ns)
        _ip("-n", switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", switch, "link", "set", "br0", "up")
        placements = []
        for i, ns in enumerate(names):
            address = f"10.231.0.{10 + i}"
            _ip("link", "add", "eth0", "netns", ns, "type", "veth",
                "peer", "name", f"p{i}", "netns", switch)  # fmt: skip
            _ip("-n", switch, "link", "set", f"p{i}", "master", "br0", "up")
            _ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            port = base_port + i
            reached = (address, port)
            if i > 0:  # a worker: through its proxy
                reached = (address, port + PROXY_OFFSET)
                proxies.append(_start_proxy(ns, reached, ("127.0.0.1", port), delay_ms))
            placements.append(Placement(ns, address, reached, NETWORK))
        yield placements
    finally:
        for proxy in proxies:
            proxy.terminate()
            proxy.wait(timeout=10)
        for ns in reversed(made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _start_proxy(
    ns: str, listen: tuple[str, int], target: tuple[str, int], delay_ms: float
) -> subprocess.Popen:
    argv = [sys.executable, "-m", "bench.delay_proxy", listen[0], str(listen[1]),
            target[0], str(target[1]), str(delay_ms)]  # fmt: skip
    proxy = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, cwd=PROJECT)  # fmt: skip
    # it says "ready" once it listens: waited for 30 s at most
    said = select.select([proxy.stdout], [], [], 30)[0] and proxy.stdout.readline().strip()
    if said != "ready":
        proxy.kill()
        raise ModelError(f"the delay proxy in {ns} did not say it listens within 30 s: {said}")
    return proxy
