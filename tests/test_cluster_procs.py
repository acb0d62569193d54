"""Real `kestrel serve` processes: `--workers 2` (shared ports, its own nats-server, clean shutdown) and
`--cluster` processes, one killed with SIGKILL mid-stream: no stored item is lost."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from kestrel.cluster.natsd import free_port
from kestrel.cluster.status import gather
from tests.cluster_support import NEEDS_NATS, natsd
from tests.test_cluster import marker
from tests.test_server_support import Client, run, sa, uid_of

pytestmark = NEEDS_NATS
READY = b"Kestrel TAK server is up"
STARTUP = 120.0  # seconds a process may take to be up (imports on a loaded 2-core machine are slow)
NO_HTTP = ("--http-port", "off", "--https-port", "off", "--enroll-port", "off")  # the Marti API is not under test


async def start_serve(*args: str, ready_lines: int = 1) -> asyncio.subprocess.Process:
    """`kestrel serve ARGS`; returns once it printed its ready line `ready_lines` times (workers)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kestrel", "serve", *args, *NO_HTTP,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    seen = 0
    try:
        while seen < ready_lines:
            line = await asyncio.wait_for(proc.stdout.readline(), STARTUP)
            assert line, f"kestrel serve {' '.join(args)} exited with {await proc.wait()}"
            seen += line.startswith(READY)
    except BaseException:  # not up in time: stop it (a supervisor stops its workers and nats-server)
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 30)
        raise
    return proc


async def stop(proc: asyncio.subprocess.Process, sig: int = signal.SIGTERM) -> int:
    if proc.returncode is None:
        proc.send_signal(sig)
    return await asyncio.wait_for(proc.wait(), 30)


def test_workers_share_ports_and_stop_cleanly(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "data"

    async def scenario() -> None:
        sup = await start_serve("--workers", "2", "--tcp-port", str(port), "--data", str(data), ready_lines=2)
        try:
            clients = [await Client.connect(f"tcp://127.0.0.1:{port}") for _ in range(12)]
            for i, c in enumerate(clients):
                await c.send(sa(f"uid-{i}", f"C{i}"))
            for i, c in enumerate(clients):  # everyone sees everyone else, whichever process it is on
                want = {f"uid-{j}" for j in range(len(clients)) if j != i}
                seen: set[str] = set()
                while not want <= seen:
                    seen.add(uid_of(await c.recv_events(10)))
            # A survey answers what replies within its window: on a loaded machine ask again (bounded).
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60
            while True:
                status = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "kestrel", "serve", "--status", "--data", str(data),
                    stdout=asyncio.subprocess.PIPE)
                out, _ = await asyncio.wait_for(status.communicate(), 30)
                rows = out.decode().splitlines()
                assert status.returncode == 0 and rows[0].split()[:3] == ["site", "process", "pid"], rows
                if len(rows) == 3 or loop.time() > deadline:
                    break
            assert len(rows) == 3 and all(r.split()[0] == "kestrel" and " up " in r for r in rows[1:]), rows
            url = (data / "cluster.url").read_text().strip()
            replies = await gather(url, 1.0)
            while len(replies) < 2 and loop.time() < deadline:
                replies = await gather(url, 2.0)
            assert len(replies) == 2 and {r["site"] for r in replies} == {"kestrel"}
            assert sum(r["clients"] for r in replies) == 12
            assert all(r["clients"] > 0 for r in replies), replies  # the kernel spread them (p = 1 - 2**-11)
            for c in clients:
                await c.close()
        finally:
            rc = await stop(sup)
        assert rc == 0
        assert not (data / "cluster.url").exists()

    run(scenario(), timeout=280)


def test_killed_process_loses_no_stored_item(tmp_path: Path) -> None:
    with natsd(tmp_path) as nd:

        async def scenario() -> None:
            pa, pb = free_port(), free_port()
            common = ("--cluster", nd.url, "--site", "s1")
            a = await start_serve("--tcp-port", str(pa), "--data", str(tmp_path / "a"), *common)
            try:
                b = await start_serve("--tcp-port", str(pb), "--data", str(tmp_path / "b"), *common)
            except BaseException:
                await stop(a)
                raise
            try:
                writer = await Client.connect(f"tcp://127.0.0.1:{pa}")
                watcher = await Client.connect(f"tcp://127.0.0.1:{pb}")
                seen: set[str] = set()

                async def collect() -> None:
                    while True:
                        ev = await watcher.recv_events(60)
                        if ev.get("type") == "b-m-p-s-m":
                            seen.add(uid_of(ev))

                collector = asyncio.create_task(collect())
                # Stream markers into A; kill A (SIGKILL) once B has relayed 30 of them, mid-stream.
                for sent in range(5000):
                    await writer.send(marker(f"m-{sent:04d}"))
                    await asyncio.sleep(0)
                    if len(seen) >= 30:
                        break
                assert len(seen) >= 30
                os.kill(a.pid, signal.SIGKILL)
                await a.wait()
                # Everything B relayed, and everything in the site stream, is in the picture of a newcomer
                # on B and of A restarted (which replays the stream before it listens).
                a2 = await start_serve("--tcp-port", str(pa), "--data", str(tmp_path / "a"), *common)
                try:
                    for port in (pb, pa):
                        newcomer = await Client.connect(f"tcp://127.0.0.1:{port}")
                        got = await newcomer.recv_until(lambda ev: ev.get("type") == "t-x-takp-v", 10)
                        uids = [uid_of(e) for e in got[:-1]]
                        assert len(uids) == len(set(uids))
                        assert seen <= set(uids), sorted(seen - set(uids))
                        assert all(u.startswith("m-") for u in uids)
                finally:
                    await stop(a2)
                collector.cancel()
            finally:
                await stop(b)
                if a.returncode is None:
                    await stop(a)

        run(scenario(), timeout=280)
