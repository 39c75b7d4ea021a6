"""A local Citus cluster: a coordinator and its workers, each an embedded
cluster (dataarch.pgserver) on its own port, talking over 127.0.0.1. The
tests' Citus tier and `dataarch bench --citus` run on it; a real deployment
gets Citus from its packages or the citusdata/citus image (compose.citus.yaml).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from dataarch.errors import Failure
from dataarch.pgserver import Cluster, find_bindir

INSTALL_HINT = (
    "Citus is not installed for this PostgreSQL server: run ../shared/tools/install-citus"
    " as root (it builds the vendored release), or install Citus's own package"
)
# Every node: reachable from the others over TCP, the extension preloaded,
# and two-phase commit for the coordinator's distributed transactions.
_NODE_SETTINGS = (
    "listen_addresses = 'localhost'\n"
    "shared_preload_libraries = 'citus'\n"
    "max_prepared_transactions = 100\n"
)


class CitusError(Failure):
    """The local Citus cluster cannot be made; the message says why."""


def citus_installed() -> bool:
    """True when the local server can load Citus (Debian's layout: bindir/../lib)."""
    bindir = find_bindir()
    return bindir is not None and (bindir.parent / "lib" / "citus.so").exists()


def free_ports(count: int, start: int = 9700) -> int:
    """The first of `count` consecutive ports free on 127.0.0.1, from `start`."""
    for base in range(start, start + 2000, count):
        if all(_port_free(base + i) for i in range(count)):
            return base
    raise CitusError(f"no {count} consecutive free ports from {start}")


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


@dataclass(frozen=True)
class Placement:
    """Where a node runs, when not on this host's loopback: in network
    namespace `netns`, listening on `address` (and its own loopback),
    reached by the other nodes at `reached_at` (host, port): its address, or
    a proxy's in front of it. `network` is trusted."""

    netns: str
    address: str
    reached_at: tuple[str, int]
    network: str


@dataclass
class CitusCluster:
    """A coordinator (the first node) and `workers` workers under `root`;
    on 127.0.0.1, or each node as `placements` says (bench/netns.py)."""

    root: Path
    base_port: int
    workers: int = 2
    placements: list[Placement] | None = None

    @property
    def nodes(self) -> list[Cluster]:
        return [
            Cluster(
                self.root / f"node{i}",
                port=self.base_port + i,
                durable=False,
                trust_loopback=True,
                netns=self.placements[i].netns if self.placements else None,
                trusted_network=self.placements[i].network if self.placements else None,
            )
            for i in range(self.workers + 1)
        ]

    def reached_at(self, node: int) -> tuple[str, int]:
        """The host and port the other nodes connect to node `node` at."""
        if self.placements:
            return self.placements[node].reached_at
        return "localhost", self.base_port + node

    @property
    def coordinator(self) -> Cluster:
        return self.nodes[0]

    def start(self) -> None:
        if not citus_installed():
            raise CitusError(INSTALL_HINT)
        for i, node in enumerate(self.nodes):
            if not node.is_initialized():
                node.init()
                node._append_conf(_NODE_SETTINGS)
                if self.placements:
                    address = self.placements[i].address
                    node._append_conf(f"listen_addresses = 'localhost, {address}'\n")
            node.start()

    def create_database(self, dbname: str) -> str:
        """An empty database with Citus on every node, the workers registered
        with the coordinator; returns the coordinator's URL for it."""
        for node in self.nodes:
            with psycopg.connect(node.conninfo(), autocommit=True) as conn:
                conn.execute(
                    sql.SQL("drop database if exists {} with (force)").format(
                        sql.Identifier(dbname)
                    )
                )
                conn.execute(sql.SQL("create database {}").format(sql.Identifier(dbname)))
            with psycopg.connect(node.conninfo(dbname), autocommit=True) as conn:
                conn.execute("create extension citus")
        with psycopg.connect(self.coordinator.conninfo(dbname), autocommit=True) as conn:
            conn.execute("select citus_set_coordinator_host(%s, %s)", self.reached_at(0))
            for worker in range(1, self.workers + 1):
                conn.execute("select citus_add_node(%s, %s)", self.reached_at(worker))
        return self.coordinator.url(dbname)

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()

    def destroy(self) -> None:
        for node in reversed(self.nodes):
            node.destroy()
