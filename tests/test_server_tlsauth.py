"""Mutual TLS: a client without a certificate, or with one from another CA, is refused at the
handshake; clients with good certificates keep talking; groups follow the certificate CN."""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import ssl
from pathlib import Path

import pytest

from kestrel import pki as certs
from kestrel.server.config import ListenerConfig
from kestrel.server.listeners import ASYNCIO_TLS_READ_BUFFER
from tests.test_server_support import Client, make_config, run, sa, server_running, uid_of


def _pytak_tls(pki: Path, name: str) -> dict[str, str]:
    c = certs.paths(pki).client(name)
    return {"PYTAK_TLS_CLIENT_CERT": str(c.cert), "PYTAK_TLS_CLIENT_KEY": str(c.key),
            "PYTAK_TLS_CLIENT_CAFILE": str(certs.paths(pki).ca_cert)}


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_only_clients_with_our_ca_certs_get_in(loop: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pki, other = tmp_path / "pki", tmp_path / "other"
    certs.init(pki)
    certs.init(other)
    for n in ("alice", "bob"):
        certs.issue_client(pki, n)
    certs.issue_client(other, "mallory")  # same kind of cert, wrong CA
    p = certs.paths(pki)
    cfg = make_config(tmp_path / "data", ListenerConfig("tls", "tls", "127.0.0.1", 0),
                      tls_ca=p.ca_cert, tls_cert=p.server_cert, tls_key=p.server_key)

    async def refused(port: int, ctx: ssl.SSLContext) -> None:
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost")
        except (ssl.SSLError, ConnectionError):
            return  # refused during the handshake
        # TLS 1.3: the client may finish first; the server's alert then arrives as a read error/EOF.
        with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
            data = await asyncio.wait_for(r.read(1), 5)
            if not data:
                raise ConnectionResetError
        w.close()

    async def scenario() -> None:
        async with server_running(cfg) as server:
            port = server.ports["tls"]
            url = f"tls://127.0.0.1:{port}"
            a = await Client.connect(url, **_pytak_tls(pki, "alice"))
            b = await Client.connect(url, **_pytak_tls(pki, "bob"))
            no_cert = ssl.create_default_context(cafile=str(p.ca_cert))
            await refused(port, no_cert)
            wrong_ca = ssl.create_default_context(cafile=str(p.ca_cert))
            m = certs.paths(other).client("mallory")
            wrong_ca.load_cert_chain(m.cert, m.key)
            await refused(port, wrong_ca)
            await a.send(sa("A-uid", "ALICE"))
            await b.recv_until(lambda e: uid_of(e) == "A-uid")
            assert {s.cert_cn for s in server.sessions} == {"alice", "bob"}
            assert asyncio.sslproto.SSLProtocol.max_size == ASYNCIO_TLS_READ_BUFFER  # 256 KiB -> 32 KiB

    run(scenario(), loop=loop)
    refusals = [r.getMessage() for r in caplog.records if "event=client.tls_refused" in r.getMessage()]
    assert len(refusals) == 2, refusals
