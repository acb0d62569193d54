"""Certificate enrollment end to end, as ATAK's CertificateEnrollmentClient and pytak-style tools do it.

ATAK: `GET /Marti/api/tls/config` with Basic auth, reads every `nameEntry` (name, value), builds a
CSR with CN = the user plus those RDNs, `POST /Marti/api/tls/signClient/v2?clientUid=…&version=…`
with `Accept: application/xml`, `Content-Type: application/octet-stream` and the CSR as headerless
base64, then reads every child of `<enrollment>` as a base64 certificate. Tools send PEM and read
JSON (`signedCert`, `ca0`…). ATAK <= 4.6 calls `signClient` (v1) and opens a PKCS#12 store
(password atakatak, aliases signedCert, ca0…). The issued certificate then opens 8089 and 8443.
"""

from __future__ import annotations

import base64
import json
import ssl
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from kestrel import pki as certs
from kestrel.cli import main
from kestrel.pki.crl import issued
from tests.marti_support import arequest, basic, ca_context, marti_running
from tests.test_server_support import Client, eventually, run, sa

NS = "{http://bbn.com/marti/xml/config}"


def _add_user(data: Path, name: str, password: str, *groups: str) -> None:
    pw = data / f".{name}.pw"
    pw.write_text(password + "\n")
    args = ["users", "add", name, "--password-file", str(pw), "--data", str(data)]
    if groups:
        args += ["--group", *groups]
    assert main(args) == 0


def _csr(cn: str, entries: list[tuple[str, str]], key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | None = None):
    key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
    oids = {"O": NameOID.ORGANIZATION_NAME, "OU": NameOID.ORGANIZATIONAL_UNIT_NAME}
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]
                     + [x509.NameAttribute(oids[n], v) for n, v in entries])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return key, csr


def _bare(csr: x509.CertificateSigningRequest) -> bytes:
    """ATAK's form: base64 of the DER, no PEM header."""
    return base64.b64encode(csr.public_bytes(serialization.Encoding.DER))


def test_atak_enrollment_then_streaming_with_the_issued_cert(tmp_path: Path) -> None:
    _add_user(tmp_path, "alice", "s3cret-pw", "Blue")
    _add_user(tmp_path, "bob", "bobs-pw", "Red")

    async def scenario() -> None:
        async with marti_running(tmp_path, tls=True) as r:
            ca = ca_context(tmp_path)  # ATAK trusts the server's CA (from the quick-connect or truststore)
            auth = {"Authorization": basic("alice", "s3cret-pw")}
            # tls/config: needs Basic auth; a wrong password is 401 (ATAK: "bad credentials")
            assert (await arequest(r.enroll, "GET", "/Marti/api/tls/config", tls=ca)).status == 401
            bad = await arequest(r.enroll, "GET", "/Marti/api/tls/config", tls=ca,
                                 headers={"Authorization": basic("alice", "nope")})
            assert bad.status == 401 and "Basic" in (bad.header("www-authenticate") or "")
            assert r.server.metrics.get("refused_http_auth") == 1
            cfg = await arequest(r.enroll, "GET", "/Marti/api/tls/config", tls=ca, headers=auth)
            assert cfg.status == 200
            root = ET.fromstring(cfg.body)
            entries = [(e.get("name"), e.get("value")) for e in root.iter(f"{NS}nameEntry")]
            assert entries == [("O", "Kestrel")]
            # v2, as ATAK sends it
            key, csr = _csr("alice", entries)  # type: ignore[arg-type]
            rep = await arequest(
                r.enroll, "POST", "/Marti/api/tls/signClient/v2?clientUid=ANDROID-0123&version=4.10.0", _bare(csr),
                {**auth, "Accept": "application/xml", "Content-Type": "application/octet-stream"}, tls=ca)
            assert rep.status == 200 and rep.header("content-type") == "application/xml"
            enrollment = ET.fromstring(rep.body)
            assert enrollment.tag == "enrollment" and enrollment.text is None
            children = list(enrollment)
            assert [c.tag for c in children] == ["signedCert", "ca"] and all(c.tail is None for c in children)
            got = [x509.load_der_x509_certificate(base64.b64decode(c.text or "")) for c in children]
            signed, ca_cert = got
            assert signed.subject == csr.subject and signed.public_key() == csr.public_key()
            assert ca_cert.subject == x509.load_pem_x509_certificate(certs.paths(tmp_path).ca_cert.read_bytes()).subject
            assert not any(b"BEGIN" in (c.text or "").encode() for c in children)  # headerless
            assert [i.name for i in issued(tmp_path)] == ["alice"]  # `kestrel certs list` shows it

            # the issued certificate opens 8089 (pytak) with alice's groups, and 8443
            (tmp_path / "alice.pem").write_bytes(signed.public_bytes(serialization.Encoding.PEM))
            (tmp_path / "alice.key").write_bytes(key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()))
            tls_env = {"PYTAK_TLS_CLIENT_CERT": str(tmp_path / "alice.pem"),
                       "PYTAK_TLS_CLIENT_KEY": str(tmp_path / "alice.key"),
                       "PYTAK_TLS_CLIENT_CAFILE": str(certs.paths(tmp_path).ca_cert)}
            c = await Client.connect(f"tls://127.0.0.1:{r.server.ports['tls']}", **tls_env)
            await c.send(sa("ANDROID-0123", "ALICE"))
            await eventually(lambda: "ANDROID-0123" in r.server.router.contacts)
            (session,) = [s for s in r.server.sessions if s.cert_cn == "alice"]
            assert session.groups == {"Blue"}  # groups of an enrolled user follow the user
            mine = ca_context(tmp_path)
            mine.load_cert_chain(tmp_path / "alice.pem", tmp_path / "alice.key")
            g = await arequest(r.https, "GET", "/Marti/api/groups/all", tls=mine)
            assert {d["name"] for d in json.loads(g.body)["data"]} == {"Blue"}
            eps = json.loads((await arequest(r.https, "GET", "/Marti/api/clientEndPoints", tls=mine)).body)["data"]
            assert [(e["callsign"], e["username"]) for e in eps] == [("ALICE", "alice")]
            await c.close()

    run(scenario())
    # `kestrel certs revoke alice` covers the enrolled certificate; after a restart 8443 refuses it
    assert main(["certs", "revoke", "alice", "--data", str(tmp_path)]) == 0
    assert [(i.name, i.revoked) for i in issued(tmp_path)] == [("alice", True)]

    async def after_restart() -> None:
        async with marti_running(tmp_path, tls=True) as r:
            mine = ca_context(tmp_path)
            mine.load_cert_chain(tmp_path / "alice.pem", tmp_path / "alice.key")
            with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
                await arequest(r.https, "GET", "/Marti/api/version", tls=mine)

    run(after_restart())


def test_v2_json_and_v1_pkcs12_and_refusals(tmp_path: Path) -> None:
    _add_user(tmp_path, "alice", "s3cret-pw")
    _add_user(tmp_path, "bob", "bobs-pw")

    async def scenario() -> None:
        async with marti_running(tmp_path, tls=True) as r:
            ca = ca_context(tmp_path)
            auth = {"Authorization": basic("alice", "s3cret-pw")}
            _, csr = _csr("alice", [("O", "Kestrel")], ec.generate_private_key(ec.SECP256R1()))
            pem = csr.public_bytes(serialization.Encoding.PEM)
            for accept in (None, "*/*", "application/json"):
                hdrs = {**auth, "Content-Type": "text/plain"} | ({"Accept": accept} if accept else {})
                rep = await arequest(r.enroll, "POST", "/Marti/api/tls/signClient/v2?clientUid=LINUX&version=5.2",
                                     pem, hdrs, tls=ca)
                assert rep.status == 200 and rep.header("content-type") == "application/json", accept
                obj = json.loads(rep.body)
                assert list(obj) == ["signedCert", "ca0"]
                cert = x509.load_der_x509_certificate(base64.b64decode(obj["signedCert"]))
                assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "alice"
            rep = await arequest(r.enroll, "POST", "/Marti/api/tls/signClient/v2", pem,
                                 {**auth, "Accept": "image/png"}, tls=ca)
            assert rep.status == 400
            # v1 (ATAK <= 4.6): a PKCS#12 store, password atakatak, entries signedCert and ca0
            rep = await arequest(r.enroll, "POST", "/Marti/api/tls/signClient?clientUid=ANDROID-9", _bare(csr),
                                 {**auth, "Content-Type": "application/octet-stream"}, tls=ca)
            assert rep.status == 200 and rep.header("content-type") == "application/octet-stream"
            store = pkcs12.load_pkcs12(rep.body, b"atakatak")
            names = [c.friendly_name for c in store.additional_certs]
            assert names == [b"signedCert", b"ca0"] and store.key is None
            n_issued = len(issued(tmp_path))
            # refusals: nothing is signed or recorded
            _, bobs = _csr("bob", [("O", "Kestrel")])
            rep = await arequest(r.enroll, "POST", "/Marti/api/tls/signClient/v2", _bare(bobs), auth, tls=ca)
            assert rep.status == 500 and b"not the signed-in user" in rep.body  # a CSR for another user
            _, wrong_rdn = _csr("alice", [("O", "Other")])
            assert (await arequest(r.enroll, "POST", "/Marti/api/tls/signClient/v2", _bare(wrong_rdn), auth,
                                   tls=ca)).status == 500
            assert (await arequest(r.enroll, "POST", "/Marti/api/tls/signClient/v2", b"not a csr", auth,
                                   tls=ca)).status == 500
            assert (await arequest(r.enroll, "POST", "/Marti/api/tls/signClient/v2", _bare(csr),
                                   {"Authorization": basic("alice", "wrong")}, tls=ca)).status == 401
            assert (await arequest(r.enroll, "POST", "/Marti/api/tls/signClient/v2", _bare(csr),
                                   {"Authorization": basic("mallory", "x")}, tls=ca)).status == 401
            assert len(issued(tmp_path)) == n_issued
            # a hand-broken users file: 500 naming the cause in the log, nothing signed, the server goes on
            good = (tmp_path / "users.json").read_text()
            (tmp_path / "users.json").write_text("{not json")
            assert (await arequest(r.enroll, "POST", "/Marti/api/tls/signClient/v2", _bare(csr), auth,
                                   tls=ca)).status == 500
            (tmp_path / "users.json").write_text(good)
            assert (await arequest(r.enroll, "GET", "/Marti/api/tls/config", headers=auth, tls=ca)).status == 200
            assert len(issued(tmp_path)) == n_issued
            # enrollment is not offered over plain HTTP (the password would travel in clear)
            assert (await arequest(r.http, "GET", "/Marti/api/tls/config", headers=auth)).status == 403
            # no enrollment profile configured: 204; with files: a data package
            prof = await arequest(r.enroll, "GET", "/Marti/api/tls/profile/enrollment?clientUid=ANDROID-9",
                                  headers=auth, tls=ca)
            assert prof.status == 204
            d = tmp_path / "profiles" / "enrollment"
            d.mkdir(parents=True)
            (d / "prefs.pref").write_text("<preferences/>")
            prof = await arequest(r.enroll, "GET", "/Marti/api/tls/profile/enrollment?clientUid=ANDROID-9",
                                  headers=auth, tls=ca)
            assert prof.status == 200 and prof.body[:2] == b"PK"
            # 8443 without a client certificate: the handshake is refused
            with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
                await arequest(r.https, "GET", "/Marti/api/version", tls=ca)

    run(scenario())


def test_users_cli_stores_only_salted_hashes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _add_user(tmp_path, "alice", "correct horse", "Blue", "Red")
    _add_user(tmp_path, "bob", "correct horse")
    raw = (tmp_path / "users.json").read_text()
    assert "correct horse" not in raw and raw.count("scrypt:") == 2
    hashes = [u["hash"] for u in json.loads(raw)["users"].values()]
    assert hashes[0] != hashes[1]  # salted: same password, different hashes
    assert (tmp_path / "users.json").stat().st_mode & 0o777 == 0o600
    capsys.readouterr()
    assert main(["users", "list", "--data", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "alice" in out and "Blue, Red" in out and "correct" not in out
    assert main(["users", "remove", "bob", "--data", str(tmp_path)]) == 0
    assert main(["users", "remove", "bob", "--data", str(tmp_path)]) == 2
    assert main(["users", "add", "../evil", "--password-file", str(tmp_path / ".alice.pw"),
                 "--data", str(tmp_path)]) == 2
    capsys.readouterr()
    assert main(["certs", "enroll-link", "--host", "tak.example.org", "--user", "alice"]) == 0
    assert capsys.readouterr().out.strip() == "tak://com.atakmap.app/enroll?host=tak.example.org&username=alice"


def test_kestrel_serve_process_runs_the_marti_api(tmp_path: Path) -> None:
    """The real CLI: `kestrel serve` with the Marti flags, a user from `kestrel users add`, SIGTERM."""
    import os
    import signal
    import socket
    import subprocess
    import sys

    from kestrel import pki
    from tests.marti_support import request

    pki.init(tmp_path)
    _add_user(tmp_path, "alice", "s3cret-pw")

    def free() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    http, https, enroll = free(), free(), free()
    proc = subprocess.Popen(
        [sys.executable, "-m", "kestrel", "serve", "--data", str(tmp_path), "--tcp-port", "0", "--tls-port", "0",
         "--http-port", str(http), "--https-port", str(https), "--enroll-port", str(enroll)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        out = ""
        while "Stop with" not in out:  # the ready banner is printed once every listener is open
            line = proc.stdout.readline()  # type: ignore[union-attr]
            assert line, proc.stderr.read()  # type: ignore[union-attr]
            out += line
        assert f"http://127.0.0.1:{http}" in out and f"https://127.0.0.1:{enroll}" in out
        assert b"TAK Server" in request(http, "GET", "/Marti/api/version").body
        cfg = request(enroll, "GET", "/Marti/api/tls/config", headers={"Authorization": basic("alice", "s3cret-pw")},
                      tls=ca_context(tmp_path))
        assert cfg.status == 200 and b"nameEntry" in cfg.body
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
