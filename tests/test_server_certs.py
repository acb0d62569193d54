"""`kestrel certs`: generated certificates work in real TLS handshakes (Python's ssl/OpenSSL, pytak)
and the PKCS#12 files open with outside loaders (cryptography, pytak, Java keytool when present)."""

from __future__ import annotations

import argparse
import configparser
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from kestrel import pki as certs
from kestrel.errors import BadInput, Conflict
from kestrel.pki import cli as pki_cli

pytestmark = pytest.mark.filterwarnings("ignore:The 'aiohttp' package:UserWarning")  # pytak's import


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("kdata")
    certs.init(d, ["tak.example.org", "10.1.2.3"])
    certs.issue_client(d, "alice")
    certs.issue_client(d, "bob", password="s3cret-pw")
    return d


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second, unrelated CA with its own server and client ("mallory")."""
    d = tmp_path_factory.mktemp("other")
    certs.init(d)
    certs.issue_client(d, "mallory")
    return d


class OneShotServer:
    """Accepts one TLS connection in a thread; records the peer CN or the handshake error."""

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.ctx = ctx
        self.cn: str | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        conn, _ = self.sock.accept()
        conn.settimeout(10)
        try:
            with self.ctx.wrap_socket(conn, server_side=True) as tls:
                self.cn = certs.common_name(tls.getpeercert())
                tls.sendall(f"hello {self.cn}".encode())
                tls.recv(1)  # wait for the client to close
        except (ssl.SSLError, OSError) as exc:
            self.error = exc
        finally:
            self.sock.close()

    def join(self) -> None:
        self.thread.join(10)
        assert not self.thread.is_alive()


def _talk(port: int, ctx: ssl.SSLContext, server_hostname: str = "localhost") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_hostname) as tls:
            return tls.recv(100)


def test_handshake_with_client_cert_gives_cn(data: Path) -> None:
    srv = OneShotServer(certs.server_ssl_context(data))
    assert _talk(srv.port, certs.client_ssl_context(data, "alice")) == b"hello alice"
    srv.join()
    assert srv.error is None and srv.cn == "alice"


@pytest.mark.parametrize("hostname", ["localhost", "127.0.0.1", "tak.example.org", "10.1.2.3"])
def test_server_cert_names(data: Path, hostname: str) -> None:
    srv = OneShotServer(certs.server_ssl_context(data))
    assert _talk(srv.port, certs.client_ssl_context(data, "bob"), hostname) == b"hello bob"
    srv.join()


def test_wrong_server_name_is_refused_by_client(data: Path) -> None:
    srv = OneShotServer(certs.server_ssl_context(data))
    with pytest.raises(ssl.SSLCertVerificationError, match="match|mismatch"):
        _talk(srv.port, certs.client_ssl_context(data, "alice"), "evil.example.org")
    srv.join()


def _refused(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> OneShotServer:
    srv = OneShotServer(server_ctx)
    try:
        got = _talk(srv.port, client_ctx)
    except (ssl.SSLError, OSError):
        got = b""
    srv.join()
    assert got == b"" and srv.cn is None  # the server never said hello
    return srv


def test_client_without_cert_is_refused(data: Path) -> None:
    srv = _refused(certs.server_ssl_context(data), certs.client_ssl_context(data, None))
    assert isinstance(srv.error, ssl.SSLError)
    assert "certificate" in str(srv.error).lower()


def test_client_cert_from_other_ca_is_refused(data: Path, other: Path) -> None:
    ctx = certs.client_ssl_context(data, None)  # trusts our server...
    mallory = certs.paths(other).client("mallory")
    ctx.load_cert_chain(mallory.cert, mallory.key)  # ...but presents a cert from another CA
    srv = _refused(certs.server_ssl_context(data), ctx)
    assert isinstance(srv.error, ssl.SSLError)
    assert "certificate verify failed" in str(srv.error) or "unknown ca" in str(srv.error).lower()


def test_server_from_other_ca_is_refused_by_client(data: Path, other: Path) -> None:
    srv = OneShotServer(certs.server_ssl_context(other))
    with pytest.raises(ssl.SSLCertVerificationError):
        _talk(srv.port, certs.client_ssl_context(data, "alice"))
    srv.join()


def test_server_context_settings(data: Path) -> None:
    ctx = certs.server_ssl_context(data)
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    srv = OneShotServer(ctx)
    old = certs.client_ssl_context(data, "alice")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("DEFAULT:@SECLEVEL=0")  # the client could speak TLS 1.1; the server must refuse
    with pytest.raises((ssl.SSLError, OSError)):
        _talk(srv.port, old)
    srv.join()
    assert "protocol" in str(srv.error).lower()


def test_client_p12_loads_with_default_password(data: Path) -> None:
    c = certs.paths(data).client("alice")
    key, cert, extra = pkcs12.load_key_and_certificates(c.p12.read_bytes(), b"atakatak")
    assert key is not None and cert is not None
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "alice"
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    assert key.public_key().public_bytes(enc, pub) == cert.public_key().public_bytes(enc, pub)
    ca = x509.load_pem_x509_certificate(certs.paths(data).ca_cert.read_bytes())
    assert extra == [ca]
    cert.verify_directly_issued_by(ca)
    assert cert == x509.load_pem_x509_certificate(c.cert.read_bytes())
    with pytest.raises(ValueError):
        pkcs12.load_key_and_certificates(c.p12.read_bytes(), b"wrong")


def test_client_p12_custom_password(data: Path) -> None:
    p12 = certs.paths(data).client("bob").p12.read_bytes()
    key, cert, _ = pkcs12.load_key_and_certificates(p12, b"s3cret-pw")
    assert key is not None and cert is not None
    with pytest.raises(ValueError):
        pkcs12.load_key_and_certificates(p12, b"atakatak")


def test_truststore_holds_only_the_ca(data: Path) -> None:
    p = certs.paths(data)
    ts = pkcs12.load_pkcs12(p.truststore.read_bytes(), b"atakatak")
    assert ts.key is None and ts.cert is None
    ca = x509.load_pem_x509_certificate(p.ca_cert.read_bytes())
    assert [c.certificate for c in ts.additional_certs] == [ca]


@pytest.mark.skipif(shutil.which("keytool") is None, reason="Java keytool not installed")
def test_truststore_is_a_java_trusted_entry(data: Path) -> None:
    """ATAK loads the trust store with Java's PKCS12 KeyStore: it must list a trustedCertEntry."""
    out = subprocess.run(
        ["keytool", "-list", "-storetype", "PKCS12", "-storepass", "atakatak",
         "-keystore", str(certs.paths(data).truststore)],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "trustedCertEntry" in out.stdout
    out = subprocess.run(
        ["keytool", "-list", "-storetype", "PKCS12", "-storepass", "atakatak",
         "-keystore", str(certs.paths(data).client("alice").p12)],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "PrivateKeyEntry" in out.stdout


@pytest.mark.parametrize("use_p12", [False, True])
def test_pytak_tls_context_connects(data: Path, use_p12: bool) -> None:
    """pytak's own TLS setup (hostname and chain verified) with our PEM files or our .p12."""
    from pytak.client_functions import get_ssl_ctx

    p = certs.paths(data)
    c = p.client("alice")
    cfg = configparser.ConfigParser()
    cfg["t"] = {"PYTAK_TLS_CLIENT_CAFILE": str(p.ca_cert)}
    if use_p12:
        cfg["t"].update(PYTAK_TLS_CLIENT_CERT=str(c.p12), PYTAK_TLS_CLIENT_PASSWORD="atakatak")
    else:
        cfg["t"].update(PYTAK_TLS_CLIENT_CERT=str(c.cert), PYTAK_TLS_CLIENT_KEY=str(c.key))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        ctx = get_ssl_ctx(cfg["t"])
    assert not [w for w in seen if "Disabled" in str(w.message)]  # pytak kept verification on
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    srv = OneShotServer(certs.server_ssl_context(data))
    assert _talk(srv.port, ctx) == b"hello alice"
    srv.join()


def test_private_files_are_0600(data: Path) -> None:
    p = certs.paths(data)
    c = p.client("alice")
    for f in (p.ca_key, p.server_key, c.key, c.p12):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    assert stat.S_IMODE(p.dir.stat().st_mode) == 0o700
    assert not list(p.dir.rglob(".*tmp*"))  # no temp files left behind


def test_reinit_keeps_ca_and_clients(tmp_path: Path) -> None:
    certs.init(tmp_path)
    certs.issue_client(tmp_path, "carol")
    ca_before = certs.paths(tmp_path).ca_cert.read_bytes()
    with pytest.raises(Conflict, match=r"ca\.pem: a CA already exists; --force"):
        certs.init(tmp_path, ["extra.example"])
    _, new_ca = certs.init(tmp_path, ["extra.example"], server_only=True)
    assert not new_ca and certs.paths(tmp_path).ca_cert.read_bytes() == ca_before
    srv = OneShotServer(certs.server_ssl_context(tmp_path))
    assert _talk(srv.port, certs.client_ssl_context(tmp_path, "carol"), "extra.example") == b"hello carol"
    srv.join()
    _, new_ca = certs.init(tmp_path, force=True)
    assert new_ca and certs.paths(tmp_path).ca_cert.read_bytes() != ca_before
    _refused(certs.server_ssl_context(tmp_path), certs.client_ssl_context(tmp_path, "carol", check_hostname=False))


def _cli(argv: list[str]) -> Any:
    parser = argparse.ArgumentParser(prog="kestrel")
    pki_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_init_and_client_never_print_secrets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = str(tmp_path)
    assert _cli(["certs", "init", "--data", d, "--hostname", "a.example", "192.168.7.7"]) == 0
    pwfile = tmp_path / "pw.txt"
    pwfile.write_text("hunter2-pw\n")
    assert _cli(["certs", "client", "dave", "--data", d, "--password-file", str(pwfile)]) == 0
    assert _cli(["certs", "client", "erin", "--data", d]) == 0
    out = capsys.readouterr()
    text = out.out + out.err
    assert "PRIVATE KEY" not in text and "hunter2-pw" not in text and "atakatak" not in text
    for f in certs.paths(d).dir.rglob("*.key"):
        assert f.read_text().splitlines()[1] not in text
    p = certs.paths(d)
    key, cert, _ = pkcs12.load_key_and_certificates(p.client("dave").p12.read_bytes(), b"hunter2-pw")
    assert cert is not None and key is not None
    server = x509.load_pem_x509_certificate(p.server_cert.read_bytes())
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost", "a.example"}
    assert {str(i) for i in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "192.168.7.7"}


def test_cli_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="certs init"):
        _cli(["certs", "client", "alice", "--data", str(tmp_path)])  # no CA yet
    assert not (tmp_path / "certs" / "clients").exists()
    certs.init(tmp_path)
    for bad in ["../evil", ".hidden", "a b", "x" * 65]:
        with pytest.raises(BadInput, match="bad client name"):
            _cli(["certs", "client", bad, "--data", str(tmp_path)])
    with pytest.raises(BadInput, match="empty"):
        _cli(["certs", "client", "ok", "--data", str(tmp_path), "--password", ""])
    with pytest.raises(BadInput, match="hostname"):
        _cli(["certs", "init", "--data", str(tmp_path), "--hostname", "bad host"])
    assert not list((tmp_path / "certs").rglob("ok*"))
    afile = tmp_path / "a-file"
    afile.write_text("not a dir")
    with pytest.raises(BadInput, match="a-file"):
        _cli(["certs", "init", "--data", str(afile)])


def test_kestrel_certs_command(tmp_path: Path) -> None:
    """The real entry point: `python -m kestrel certs ...` (exit codes 0 and 2, one-line errors)."""
    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kestrel", "certs", *argv, "--data", str(tmp_path)],
                              capture_output=True, text=True, timeout=120)

    bad = run("client", "alice")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "certs init" in bad.stderr
    assert run("init", "--hostname", "tak.local").returncode == 0
    ok = run("client", "alice")
    assert ok.returncode == 0, ok.stderr
    assert "PRIVATE KEY" not in ok.stdout + ok.stderr and "atakatak" not in ok.stdout + ok.stderr
    assert certs.paths(tmp_path).client("alice").p12.is_file()
    bad = run("client", "../alice")
    assert bad.returncode == 2 and "bad client name" in bad.stderr
