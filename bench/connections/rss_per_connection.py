"""Opens N idle WebSocket connections to a relay on 127.0.0.1:4000, each subscribed to `demo`,
and prints the relay RSS growth per connection. Usage: python3 bench/connections/rss_per_connection.py N RELAY_PID
(needs `pip install websockets`; start the relay with `make run`)."""
import asyncio, sys, websockets, subprocess
async def main(n, pid):
    def rss():
        for l in open(f"/proc/{pid}/status"):
            if l.startswith("VmRSS"): return int(l.split()[1])
    before = rss()
    socks = []
    for i in range(n):
        ws = await websockets.connect("ws://127.0.0.1:4000/v1/socket")
        await ws.send('{"type":"subscribe","ref":1,"channel":"demo"}'); await ws.recv()
        socks.append(ws)
    await asyncio.sleep(1)
    after = rss()
    print(f"{n} connections: RSS {before} -> {after} KiB, {(after-before)/n:.1f} KiB per connection")
    for ws in socks: await ws.close()
asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
