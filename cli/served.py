"""`dataarch serve` as a child process on a free port: what the benchmark and
the end-to-end tests talk to over real HTTP."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

SERVE = ("-m", "cli", "serve")  # Python's arguments that start dataarch serve


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    env: Mapping[str, str],
    *,
    ready: tuple[int, ...] = (200,),
    cwd: Path | None = None,
    log: Path | None = None,
    command: Sequence[str] = SERVE,
) -> tuple[subprocess.Popen, str]:
    """Start the server (`command`, Python's arguments before --port) and
    return (process, base URL) once /health answers with a status in
    `ready`; raise with the server's output if it never does.
    The output goes to a file, not a pipe: a pipe nobody reads would block a
    server that logs a lot; to `log` when given (kept), else to a temporary
    file deleted with the process. The caller stops the process."""
    port = free_port()
    # outlives this function, so no `with`: it closes when the caller drops proc
    output = (
        log.open("w+b")  # noqa: SIM115 - closed with the process, as below
        if log
        else tempfile.NamedTemporaryFile(prefix=f"dataarch-serve-{port}-", suffix=".log")  # noqa: SIM115
    )
    proc = subprocess.Popen(
        [sys.executable, *command, "--port", str(port)],
        env=dict(env), cwd=cwd, stdout=output, stderr=subprocess.STDOUT,
    )  # fmt: skip
    proc.output = output  # type: ignore[attr-defined]  # closed (and deleted) with proc
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code in ready:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    output.seek(0)
    raise RuntimeError(f"python {' '.join(command)} did not start: {output.read().decode()}")
