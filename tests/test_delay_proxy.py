"""The delaying TCP proxy of the namespace model (bench/delay_proxy.py):
every byte arrives, in order, and never sooner than the delay each way."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dataarch.citus import free_ports

PROJECT = Path(__file__).resolve().parent.parent
DELAY_MS = 5.0


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A server on 127.0.0.1 that sends back what it reads, one client at a time."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return  # closed
            with client:
                while data := client.recv(1 << 16):
                    client.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1]
    server.close()


@pytest.fixture
def proxy_port(echo_port: int) -> Iterator[int]:
    port = free_ports(1, start=9600)
    proxy = subprocess.Popen(
        [sys.executable, "-m", "bench.delay_proxy", "127.0.0.1", str(port), "127.0.0.1",
         str(echo_port), str(DELAY_MS)],
        cwd=PROJECT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert select.select([proxy.stdout], [], [], 30)[0], "the proxy never said it listens"
    assert proxy.stdout.readline().strip() == "ready"
    yield port
    proxy.terminate()
    proxy.wait(timeout=10)


def test_every_byte_arrives_in_order(proxy_port: int) -> None:
    sent = os.urandom(3 << 20)
    received = bytearray()
    with socket.create_connection(("127.0.0.1", proxy_port), timeout=60) as conn:
        writer = threading.Thread(target=conn.sendall, args=(sent,))
        writer.start()
        while len(received) < len(sent):
            received += conn.recv(1 << 16)
        writer.join()
    assert bytes(received) == sent


def test_a_round_trip_takes_at_least_the_delay_each_way(proxy_port: int) -> None:
    with socket.create_connection(("127.0.0.1", proxy_port), timeout=60) as conn:
        for _ in range(5):
            start = time.perf_counter()
            conn.sendall(b"ping")
            assert conn.recv(16) == b"ping"
            assert time.perf_counter() - start >= 2 * DELAY_MS / 1000
