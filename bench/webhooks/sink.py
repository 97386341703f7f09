#!/usr/bin/env python3
"""Webhook sink for bench/webhooks/run.sh: a keep-alive HTTP/1.1 server (asyncio, stdlib only)
that answers every POST with 200, or with 500 for a random --fail-rate share of requests.
Prints the request count to stderr when stopped (SIGTERM)."""
import argparse
import asyncio
import random
import signal
import sys

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
FAIL = b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\n\r\nfail"


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--fail-rate", type=float, default=0.0)
    args = ap.parse_args()
    counts = {"ok": 0, "fail": 0}
    rng = random.Random(42)

    async def handle(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:].strip())
                if length:
                    await reader.readexactly(length)
                if rng.random() < args.fail_rate:
                    counts["fail"] += 1
                    writer.write(FAIL)
                else:
                    counts["ok"] += 1
                    writer.write(OK)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", args.port, backlog=1024)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    async with server:
        await stop.wait()
    print(f"sink: {counts['ok']} ok, {counts['fail']} failed", file=sys.stderr)


asyncio.run(main())
