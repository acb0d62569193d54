"""`kestrel certs revoke|list` and `client --package`: a revoked client cert is refused in a real TLS
handshake (OpenSSL checks our CRL), other clients still get in; the ATAK data package is a zip whose
manifest lists its files and whose .pref (XML) holds the connect string and the .p12 files."""

from __future__ import annotations

import argparse
import stat
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12

from kestrel import pki as certs
from kestrel.errors import BadInput
from kestrel.pki import cli as pki_cli
from kestrel.pki import crl
from kestrel.pki.tls import server_context
from kestrel.server.config import ListenerConfig
from tests.test_server_certs import OneShotServer, _refused, _talk
from tests.test_server_support import Client, make_config, run, sa, server_running, uid_of


def _cli(argv: list[str]) -> Any:
    parser = argparse.ArgumentParser(prog="kestrel")
    pki_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture()
def pki(tmp_path: Path) -> Path:
    d = tmp_path / "pki"
    certs.init(d)
    for n in ("alice", "bob", "carol"):
        certs.issue_client(d, n)
    return d


def _serial(d: Path, name: str) -> int:
    return x509.load_pem_x509_certificate(certs.paths(d).client(name).cert.read_bytes()).serial_number


def _accepted(server_ctx: Any, d: Path, name: str) -> None:
    srv = OneShotServer(server_ctx)
    assert _talk(srv.port, certs.client_ssl_context(d, name)) == f"hello {name}".encode()
    srv.join()
    assert srv.error is None


def test_revoked_client_is_refused_others_accepted(pki: Path) -> None:
    p = certs.paths(pki)
    _accepted(certs.server_ssl_context(pki), pki, "alice")  # before: alice gets in
    assert crl.revoke(pki, "alice") == [_serial(pki, "alice")]
    for make in (lambda: certs.server_ssl_context(pki),
                 lambda: server_context(p.ca_cert, p.server_cert, p.server_key)):
        srv = _refused(make(), certs.client_ssl_context(pki, "alice"))
        assert "revoked" in str(srv.error).lower()
        _accepted(make(), pki, "bob")
    # a second revoke keeps alice on the re-signed CRL and adds carol; bob still gets in
    assert crl.revoke(pki, "carol") == [_serial(pki, "carol")]
    ctx = server_context(p.ca_cert, p.server_cert, p.server_key)
    assert "revoked" in str(_refused(ctx, certs.client_ssl_context(pki, "alice")).error).lower()
    ctx = server_context(p.ca_cert, p.server_cert, p.server_key)
    assert "revoked" in str(_refused(ctx, certs.client_ssl_context(pki, "carol")).error).lower()
    _accepted(server_context(p.ca_cert, p.server_cert, p.server_key), pki, "bob")


def test_crl_is_signed_by_ca_and_lasts(pki: Path) -> None:
    old = _serial(pki, "alice")
    certs.issue_client(pki, "alice", force=True)  # re-issued (e.g. a new phone): both certs get revoked
    assert set(crl.revoke(pki, "alice")) == {old, _serial(pki, "alice")}
    assert crl.revoke(pki, "alice") == []  # nothing new, CRL re-signed
    p = certs.paths(pki)
    ca = x509.load_pem_x509_certificate(p.ca_cert.read_bytes())
    lst = x509.load_pem_x509_crl(p.crl.read_bytes())
    assert lst.is_signature_valid(ca.public_key()) and lst.issuer == ca.subject
    assert {r.serial_number for r in lst} == {old, _serial(pki, "alice")}
    assert lst.next_update_utc is not None and lst.last_update_utc is not None
    assert (lst.next_update_utc - lst.last_update_utc).days >= 3000
    assert lst.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 2
    rows = {(r.name, r.serial): r.revoked for r in crl.issued(pki)}
    assert rows[("alice", old)] and rows[("alice", _serial(pki, "alice"))]
    assert not rows[("bob", _serial(pki, "bob"))] and len(rows) == 4
    certs.init(pki, force=True)  # a new CA drops the old CRL (the old CA signed it)
    assert not p.crl.exists() and crl.issued(pki) == []


def test_cli_revoke_list_and_bad_input(pki: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = str(pki)
    assert _cli(["certs", "revoke", "bob", "--data", d]) == 0
    assert "restart" in capsys.readouterr().out
    assert _cli(["certs", "list", "--data", d]) == 0
    out = capsys.readouterr().out.splitlines()
    table = {line.split()[0]: line.split() for line in out[1:]}
    assert table["bob"][1] == f"{_serial(pki, 'bob'):x}" and table["bob"][3] == "yes"
    assert table["alice"][3] == "no" and set(table) == {"alice", "bob", "carol"}
    with pytest.raises(BadInput, match="nobody: no client certificate"):
        _cli(["certs", "revoke", "nobody", "--data", d])
    with pytest.raises(BadInput, match="bad client name"):
        _cli(["certs", "revoke", "../x", "--data", d])
    with pytest.raises(BadInput, match="certs init"):
        _cli(["certs", "revoke", "bob", "--data", str(pki.parent / "empty")])


def test_bad_crl_file_is_named(pki: Path) -> None:
    p = certs.paths(pki)
    p.crl.write_text("not a crl\n")
    with pytest.raises(BadInput, match="crl.pem: not a usable certificate revocation list"):
        server_context(p.ca_cert, p.server_cert, p.server_key)


def test_in_process_server_refuses_revoked_client(pki: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    crl.revoke(pki, "carol")
    p = certs.paths(pki)
    cfg = make_config(tmp_path / "data", ListenerConfig("tls", "tls", "127.0.0.1", 0),
                      tls_ca=p.ca_cert, tls_cert=p.server_cert, tls_key=p.server_key)

    def pytak_tls(name: str) -> dict[str, str]:
        c = p.client(name)
        return {"PYTAK_TLS_CLIENT_CERT": str(c.cert), "PYTAK_TLS_CLIENT_KEY": str(c.key),
                "PYTAK_TLS_CLIENT_CAFILE": str(p.ca_cert)}

    async def scenario() -> None:
        import asyncio
        import ssl

        async with server_running(cfg) as server:
            url = f"tls://127.0.0.1:{server.ports['tls']}"
            a = await Client.connect(url, **pytak_tls("alice"))
            b = await Client.connect(url, **pytak_tls("bob"))
            ctx = certs.client_ssl_context(pki, "carol")
            try:
                r, w = await asyncio.open_connection("127.0.0.1", server.ports["tls"], ssl=ctx,
                                                     server_hostname="localhost")
            except (ssl.SSLError, ConnectionError):
                pass  # refused during the handshake
            else:  # TLS 1.3: the server's alert arrives on the first read
                with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
                    if not await asyncio.wait_for(r.read(1), 5):
                        raise ConnectionResetError
                w.close()
            await a.send(sa("A-uid", "ALICE"))
            await b.recv_until(lambda e: uid_of(e) == "A-uid")
            assert {s.cert_cn for s in server.sessions} == {"alice", "bob"}

    run(scenario())
    refusals = [r.getMessage() for r in caplog.records if "event=client.tls_refused" in r.getMessage()]
    assert len(refusals) == 1 and "revoked" in refusals[0], refusals


def test_data_package(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = str(tmp_path)
    assert _cli(["certs", "init", "--data", d]) == 0
    assert _cli(["certs", "client", "dave", "--data", d, "--package", "--host", "tak.example.org",
                 "--password", "pw-dave-1"]) == 0
    out = capsys.readouterr()
    assert "pw-dave-1" not in out.out + out.err and "dave.zip" in out.out
    zpath = certs.paths(d).clients / "dave.zip"
    assert stat.S_IMODE(zpath.stat().st_mode) == 0o600
    with zipfile.ZipFile(zpath) as z:
        names = set(z.namelist())
        manifest = ET.fromstring(z.read("MANIFEST/manifest.xml"))
        listed = {c.get("zipEntry") for c in manifest.iter("Content")}
        assert manifest.tag == "MissionPackageManifest" and manifest.get("version") == "2"
        assert listed == names - {"MANIFEST/manifest.xml"} and len(listed) == 3
        params = {e.get("name"): e.get("value") for e in manifest.iter("Parameter")}
        assert params["name"] == "dave.zip" and params["uid"]
        pref_name = next(n for n in listed if n and n.endswith(".pref"))
        pref = ET.fromstring(z.read(pref_name))
        entries = {(pr.get("name"), e.get("key")): e.text for pr in pref.iter("preference") for e in pr.iter("entry")}
        assert entries[("cot_streams", "connectString0")] == "tak.example.org:8089:ssl"
        assert entries[("cot_streams", "count")] == "1"
        app = "com.atakmap.app_preferences"
        ca_file, client_file = entries[(app, "caLocation")], entries[(app, "certificateLocation")]
        by_base = {Path(n).name: n for n in names}
        assert ca_file and client_file and {Path(ca_file).name, Path(client_file).name} <= set(by_base)
        assert entries[(app, "clientPassword")] == entries[(app, "caPassword")] == "pw-dave-1"
        key, cert, _ = pkcs12.load_key_and_certificates(z.read(by_base[Path(client_file).name]), b"pw-dave-1")
        assert key is not None and cert is not None
        ts = pkcs12.load_pkcs12(z.read(by_base[Path(ca_file).name]), b"pw-dave-1")
        ca = x509.load_pem_x509_certificate(certs.paths(d).ca_cert.read_bytes())
        assert ts.key is None and [c.certificate for c in ts.additional_certs] == [ca]
    with pytest.raises(BadInput, match="--host"):
        _cli(["certs", "client", "erin", "--data", d, "--package"])
    with pytest.raises(BadInput, match="--port"):
        _cli(["certs", "client", "erin", "--data", d, "--package", "--host", "h", "--port", "0"])


def test_revoke_without_index_uses_client_pem(pki: Path) -> None:
    """Certs issued before `issued.tsv` existed are found from `clients/NAME.pem`."""
    certs.paths(pki).index.unlink()
    assert crl.revoke(pki, "bob") == [_serial(pki, "bob")]
    assert {r.name: r.revoked for r in crl.issued(pki)} == {"alice": False, "bob": True, "carol": False}
