"""A TCP proxy that holds every chunk of bytes for a fixed time each way:
network latency, where the kernel's netem qdisc does not exist (these
machines). The namespace model (bench/netns.py) puts one in front of each
Citus worker.

    python -m bench.delay_proxy LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT DELAY_MS

It prints "ready" once it listens. Bytes keep their order; a chunk read at t
is written at t + delay (or later, when the other side reads slowly)."""

from __future__ import annotations

import asyncio
import sys


async def _carry(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Copy reader to writer, each chunk `delay` seconds after it arrived."""
    loop = asyncio.get_running_loop()
    held: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def send() -> None:
        while True:
            due, data = await held.get()
            if not data:  # the reading side ended
                break
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(send())
    try:
        while data := await reader.read(1 << 16):
            held.put_nowait((loop.time() + delay, data))
    except ConnectionError:
        pass
    held.put_nowait((0.0, b""))
    try:
        await sender
        writer.close()
    except ConnectionError:
        pass


async def serve(listen: tuple[str, int], target: tuple[str, int], delay: float) -> None:
    async def connected(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(*target)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(_carry(client_r, server_w, delay), _carry(server_r, client_w, delay))

    server = await asyncio.start_server(connected, *listen)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str]) -> int:
    if len(argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    listen_host, listen_port, target_host, target_port, delay_ms = argv
    asyncio.run(
        serve(
            (listen_host, int(listen_port)),
            (target_host, int(target_port)),
            float(delay_ms) / 1000,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
