"""Stand-in CoT relay for `bench/fanout.py`: the least a TAK server can do on the streaming path.

It splits the TCP stream after each `</event>` and writes every complete event to every other
connection; no parsing, groups, store or pings. The fanout benchmark runs the same load against it
as its baseline, so the ratio says what Kestrel's real work costs above a trivial relay in the same
language and event loop. O(n) in bytes received; a connection whose pending event exceeds 1 MiB is
dropped. Run: `python bench/_relay.py PORT` (127.0.0.1 only).
"""

from __future__ import annotations

import asyncio
import signal
import sys

END = b"</event>"
CAP = 1 << 20


class Relay(asyncio.Protocol):
    peers: set[Relay] = set()

    def __init__(self) -> None:
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        Relay.peers.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        Relay.peers.discard(self)

    def data_received(self, data: bytes) -> None:
        # Only the new bytes (plus the last len(END)-1 of the old) are searched: never rescans.
        start = max(0, len(self.buf) - len(END) + 1)
        self.buf += data
        end = self.buf.rfind(END, start)
        if end < 0:
            if len(self.buf) > CAP and self.transport is not None:
                self.transport.abort()
            return
        end += len(END)
        out, self.buf = self.buf[:end], self.buf[end:]
        for peer in Relay.peers:
            if peer is not self and peer.transport is not None:
                peer.transport.write(out)


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Relay, "127.0.0.1", port, backlog=1024)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    try:
        import uvloop
    except ImportError:
        asyncio.run(main(int(sys.argv[1])))
    else:
        uvloop.run(main(int(sys.argv[1])))
