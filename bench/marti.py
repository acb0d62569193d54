"""Marti HTTP API benchmark: upload and download MB/s and small requests/s, beside a plain static
file server measured in the same run. One command, prints a table.

    .venv/bin/python bench/marti.py [--mb 64] [--rounds 5] [--conns 8] [--requests 4000]

Servers (each a subprocess on free loopback ports, plain HTTP, keep-alive):
  kestrel   `python -m kestrel serve` (its 8080-style listener): `POST /Marti/sync/missionupload`
            (multipart `assetfile`, SHA-256 computed, stored by hash), `GET /Marti/sync/content`,
            `GET /Marti/api/version`
  baseline  the standard library's `http.server` (ThreadingHTTPServer + SimpleHTTPRequestHandler)
            serving the same file, with a POST handler that hashes (SHA-256) and writes the body to
            disk: the same work without the API
The client (this process, asyncio, raw sockets) is the same for both. Medians of `--rounds`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BOUNDARY = "----KestrelBench0123456789"

BASELINE = textwrap.dedent('''
    import hashlib, os, sys
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class H(SimpleHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def log_message(self, *a):
            pass
        def do_POST(self):
            n = int(self.headers["Content-Length"])
            sha = hashlib.sha256()
            with open(os.path.join(sys.argv[2], "upload.bin"), "wb") as f:
                while n:
                    chunk = self.rfile.read(min(n, 1 << 16))
                    n -= len(chunk)
                    sha.update(chunk)
                    f.write(chunk)
            body = sha.hexdigest().encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    os.chdir(sys.argv[2])
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
''')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"port {port} did not open")


class Conn:
    """One keep-alive HTTP/1.1 connection; reads responses by Content-Length."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.r, self.w = reader, writer

    @classmethod
    async def open(cls, port: int) -> Conn:
        r, w = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        return cls(r, w)

    async def request(self, head: bytes, body: bytes | memoryview = b"") -> tuple[int, int]:
        self.w.write(head)
        if body:
            view = memoryview(body)
            for i in range(0, len(view), 1 << 20):
                self.w.write(view[i:i + (1 << 20)])
                await self.w.drain()
        await self.w.drain()
        status_line = await self.r.readline()
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.r.readline()
            if line in (b"\r\n", b""):
                break
            k, _, v = line.decode().partition(":")
            if k.lower() == "content-length":
                length = int(v)
        left = length
        while left:
            chunk = await self.r.read(min(left, 1 << 20))
            if not chunk:
                raise ConnectionError("closed mid-body")
            left -= len(chunk)
        return status, length

    def close(self) -> None:
        self.w.close()


async def upload(port: int, path: str, data: bytes, multipart: bool) -> float:
    if multipart:
        pre = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"assetfile\"; filename=\"b.zip\"\r\n"
               "Content-Type: application/zip\r\n\r\n").encode()
        post = f"\r\n--{BOUNDARY}--\r\n".encode()
        body = pre + data + post
        ctype = f"multipart/form-data; boundary={BOUNDARY}"
    else:
        body, ctype = data, "application/octet-stream"
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    c = await Conn.open(port)
    t0 = time.perf_counter()
    status, _ = await c.request(head, body)
    dt = time.perf_counter() - t0
    c.close()
    assert status == 200, status
    return len(data) / dt / 1e6


async def download(port: int, path: str, size: int) -> float:
    c = await Conn.open(port)
    t0 = time.perf_counter()
    status, n = await c.request(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    dt = time.perf_counter() - t0
    c.close()
    assert status == 200 and n == size, (status, n)
    return size / dt / 1e6


async def small(port: int, path: str, conns: int, total: int) -> float:
    head = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    cs = [await Conn.open(port) for _ in range(conns)]
    per = total // conns

    async def worker(c: Conn) -> None:
        for _ in range(per):
            status, _ = await c.request(head)
            assert status == 200, status

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in cs))
    dt = time.perf_counter() - t0
    for c in cs:
        c.close()
    return per * conns / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=64, help="file size in MB (default 64)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--conns", type=int, default=8)
    ap.add_argument("--requests", type=int, default=4000)
    a = ap.parse_args()
    data = os.urandom(a.mb * 1_000_000)
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        (t / "static").mkdir()
        (t / "static" / "file.bin").write_bytes(data)
        (t / "static" / "version.txt").write_bytes(b"TAK Server 5.2-RELEASE-0 (Kestrel 0.1.0)")
        kport, tport, bport = free_port(), free_port(), free_port()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        (t / "k.toml").write_text(f"[marti]\nmax_file_mb = {a.mb * 2}\nquota_mb = {a.mb * 4}\n")
        kes = subprocess.Popen(
            [sys.executable, "-m", "kestrel", "serve", "--data", str(t / "data"), "--tcp-port", str(tport),
             "--http-port", str(kport), "--https-port", "off", "--enroll-port", "off", "--log-level", "warning",
             "--config", str(t / "k.toml")],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        base = subprocess.Popen([sys.executable, "-c", BASELINE, str(bport), str(t / "static")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(kport, kes)
            wait_port(bport, base)
            rows = asyncio.run(_measure(a, data, kport, bport))
        finally:
            for p in (kes, base):
                p.terminate()
                p.wait(timeout=10)
    print(f"\nMarti HTTP API vs the standard library's http.server, {a.mb} MB file, medians of {a.rounds} "
          f"rounds, {a.conns} connections x {a.requests // a.conns} small requests (loopback, shared 2-core machine)\n")
    print(f"| {'measure':<22} | {'kestrel':>10} | {'baseline':>10} | {'ratio':>6} |")
    print(f"|{'-' * 24}|{'-' * 12}|{'-' * 12}|{'-' * 8}|")
    for name, k, b in rows:
        print(f"| {name:<22} | {k:>10.1f} | {b:>10.1f} | {k / b:>6.2f} |")


async def _measure(a: argparse.Namespace, data: bytes, kport: int, bport: int) -> list[tuple[str, float, float]]:
    import hashlib

    sha = hashlib.sha256(data).hexdigest()
    up_k, up_b, dn_k, dn_b, rq_k, rq_b = ([] for _ in range(6))
    # The first kestrel upload stores the file; later rounds store the same bytes again (one blob).
    for _ in range(a.rounds):
        up_k.append(await upload(kport, "/Marti/sync/missionupload?filename=b.zip&creatorUid=bench", data, True))
        up_b.append(await upload(bport, "/upload", data, False))
        dn_k.append(await download(kport, f"/Marti/sync/content?hash={sha}", len(data)))
        dn_b.append(await download(bport, "/file.bin", len(data)))
        rq_k.append(await small(kport, "/Marti/api/version", a.conns, a.requests))
        rq_b.append(await small(bport, "/version.txt", a.conns, a.requests))
    med = statistics.median
    return [("upload MB/s", med(up_k), med(up_b)), ("download MB/s", med(dn_k), med(dn_b)),
            ("small GET requests/s", med(rq_k), med(rq_b))]


if __name__ == "__main__":
    main()
