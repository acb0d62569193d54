"""Certificates for TLS with client-certificate auth: a small private CA, the server cert, client certs.

`kestrel certs init` makes `<data>/certs/{ca,server}.{pem,key}` and `truststore-root.p12`;
`kestrel certs client NAME` makes `<data>/certs/clients/NAME.{pem,key,p12}` (and with `--package`
an ATAK data package `NAME.zip`, see `datapackage`); `kestrel certs revoke NAME` puts NAME's certs on
the CRL `<data>/certs/crl.pem` and `kestrel certs list` shows what was issued (see `crl`). The `.p12` holds the
client key, its cert and the CA (what ATAK/iTAK/WinTAK import), `truststore-root.p12` holds only the
CA (ATAK's "trust store"). Both use TAK tooling's default password unless one is given.

Goals: works out of the box with pytak, ATAK and `ssl`; private keys are written 0600 and atomically
(never a half-written key), and neither keys nor passwords are ever printed or logged.
RSA-2048 keys and SHA-256 signatures, as TAK Server's own scripts make them; PKCS#12 files use the
legacy 3DES/SHA-1 encryption because older Android and iOS key stores cannot open AES ones.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import re
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_PASSWORD = "atakatak"  # what TAK Server's makeCert scripts and ATAK docs use
DEFAULT_DATA = Path("kestrel-data")
CA_DAYS, SERVER_DAYS, CLIENT_DAYS = 3650, 825, 825
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # also a safe file name


@dataclass(frozen=True, slots=True)
class ClientPaths:
    cert: Path
    key: Path
    p12: Path


@dataclass(frozen=True, slots=True)
class CertPaths:
    """Where every certificate file of a data dir lives (nothing is created by asking)."""

    dir: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    truststore: Path
    clients: Path

    def client(self, name: str) -> ClientPaths:
        check_name(name)
        return ClientPaths(
            self.clients / f"{name}.pem", self.clients / f"{name}.key", self.clients / f"{name}.p12"
        )

    @property
    def crl(self) -> Path:
        """The revocation list (only once something was revoked); TLS listeners load it at start."""
        return self.dir / "crl.pem"

    @property
    def index(self) -> Path:
        """One line per issued client cert: serial (hex), name, expiry."""
        return self.dir / "issued.tsv"

    def has_ca(self) -> bool:
        return self.ca_cert.is_file() and self.ca_key.is_file()

    def has_server(self) -> bool:
        """True when a TLS listener can start: CA, server cert and server key all exist."""
        return self.ca_cert.is_file() and self.server_cert.is_file() and self.server_key.is_file()


def paths(data_dir: str | os.PathLike[str]) -> CertPaths:
    d = Path(data_dir) / "certs"
    return CertPaths(
        dir=d, ca_cert=d / "ca.pem", ca_key=d / "ca.key", server_cert=d / "server.pem",
        server_key=d / "server.key", truststore=d / "truststore-root.p12", clients=d / "clients",
    )


def check_name(name: str) -> str:
    """A client name becomes a file name and the cert CN: letters, digits, '.', '_', '-' only."""
    if not _NAME_RE.match(name):
        raise ValueError(
            f"bad client name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


# ---------------------------------------------------------------------------------------------
# TLS contexts (used by the server, the tests and the benchmark)


def server_ssl_context(data_dir: str | os.PathLike[str]) -> ssl.SSLContext:
    """TLS 1.2+ server context that requires a client certificate signed by our CA and not
    revoked: the listener's own context builder on the data dir's files."""
    from kestrel.server.listeners import tls_context

    p = paths(data_dir)
    return tls_context(p.ca_cert, p.server_cert, p.server_key, p.crl)


def pem_client_context(
    ca: str | os.PathLike[str], cert: str | os.PathLike[str] | None = None,
    key: str | os.PathLike[str] | None = None, *, check_hostname: bool = True,
) -> ssl.SSLContext:
    """TLS 1.2+ client context trusting `ca`, presenting `cert`/`key` when given."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = check_hostname
    ctx.load_verify_locations(cafile=str(ca))
    if cert is not None and key is not None:
        ctx.load_cert_chain(cert, key)
    return ctx


def client_ssl_context(
    data_dir: str | os.PathLike[str], name: str | None, *, check_hostname: bool = True
) -> ssl.SSLContext:
    """Client context trusting our CA, presenting client `name`'s cert (None: no cert)."""
    p = paths(data_dir)
    c = p.client(name) if name is not None else None
    return pem_client_context(p.ca_cert, c.cert if c else None, c.key if c else None,
                              check_hostname=check_hostname)


def common_name(peercert: dict[str, Any] | None) -> str | None:
    """The subject CN of `getpeercert()`, or None (the listener's reading, which maps CN -> groups)."""
    from kestrel.server.listeners import common_name as listener_cn

    return listener_cn(peercert)


# ---------------------------------------------------------------------------------------------
# Creating certificates


def init(
    data_dir: str | os.PathLike[str], hostnames: Sequence[str] = (), *,
    force: bool = False, password: str = DEFAULT_PASSWORD,
) -> tuple[CertPaths, bool]:
    """Create the CA (kept if it exists, unless `force`) and (re)issue the server cert.

    The server cert is always re-issued so new `hostnames` take effect; keeping the CA keeps every
    issued client cert valid. Returns (paths, whether a new CA was made).
    """
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    p = paths(data_dir)
    names = _check_hostnames(hostnames)
    _mkdir_private(p.dir)
    new_ca = force or not p.has_ca()
    if new_ca:
        ca_key = _new_key()
        ca_cert = _build(_subject("Kestrel CA"), ca_key, ca_key, None, CA_DAYS, ca=True, eku=None)
        _write(p.ca_key, _pem(ca_key), private=True)
        _write(p.ca_cert, _pem(ca_cert), private=False)
        p.crl.unlink(missing_ok=True)  # signed by the old CA: OpenSSL would refuse every client
        p.index.unlink(missing_ok=True)  # certs of the old CA no longer get in anyway
    ca_cert, ca_key = _load_ca(p)
    if new_ca or not p.truststore.is_file():
        _write(p.truststore, _truststore(ca_cert, password), private=False)
    san: list[x509.GeneralName] = []
    for h in ("localhost", "127.0.0.1", *names):
        gn = _general_name(h)
        if gn not in san:
            san.append(gn)
    key = _new_key()
    cert = _build(
        _subject(names[0] if names else "localhost"), key, ca_key, ca_cert, SERVER_DAYS,
        ca=False, eku=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH], san=san,
    )
    _write(p.server_key, _pem(key), private=True)
    _write(p.server_cert, _pem(cert), private=False)
    return p, new_ca


def issue_client(
    data_dir: str | os.PathLike[str], name: str, *, password: str = DEFAULT_PASSWORD
) -> ClientPaths:
    """Issue client cert CN=`name` (the server maps CN -> groups) and its PEM files and `.p12`."""
    from cryptography.hazmat.primitives.serialization import pkcs12
    from cryptography.x509.oid import ExtendedKeyUsageOID

    p = paths(data_dir)
    c = p.client(name)
    if not p.has_ca():
        raise FileNotFoundError(f"{p.ca_cert}: no CA yet; run `kestrel certs init` first")
    if not password:
        raise ValueError("the PKCS#12 password must not be empty")
    ca_cert, ca_key = _load_ca(p)
    _mkdir_private(p.clients)
    key = _new_key()
    cert = _build(_subject(name), key, ca_key, ca_cert, CLIENT_DAYS, ca=False, eku=[ExtendedKeyUsageOID.CLIENT_AUTH])
    p12 = pkcs12.serialize_key_and_certificates(
        name.encode(), key, cert, [ca_cert], _p12_encryption(password)
    )
    _write(c.key, _pem(key), private=True)
    _write(c.cert, _pem(cert), private=False)
    _write(c.p12, p12, private=True)
    from kestrel.server.crl import record_issued

    record_issued(p, name, cert)
    return c


# ---------------------------------------------------------------------------------------------
# helpers


def _new_key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _subject(cn: str) -> Any:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Kestrel"), x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    )


def _build(
    subject: Any, key: Any, issuer_key: Any, issuer_cert: Any, days: int, *,
    ca: bool, eku: list[Any] | None, san: list[Any] | None = None,
) -> Any:
    """One X.509 v3 cert with the extensions strict verifiers (X509_STRICT) want: SKI, AKI, KU."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    now = dt.datetime.now(dt.UTC)
    pub = key.public_key()
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_cert.subject if issuer_cert is not None else subject)
        .public_key(pub)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))  # tolerate small clock skew on clients
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        # KeyUsage(digital_signature, content_commitment, key_encipherment, data_encipherment,
        #          key_agreement, key_cert_sign, crl_sign, encipher_only, decipher_only)
        .add_extension(x509.KeyUsage(not ca, False, not ca, False, False, ca, ca, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    )
    if eku:
        b = b.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    if san:
        b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _check_hostnames(hostnames: Iterable[str]) -> list[str]:
    out: list[str] = []
    for h in hostnames:
        h = h.strip()
        ok = bool(h) and len(h) <= 253 and re.fullmatch(r"[A-Za-z0-9.:*_-]+", h) is not None
        if not ok:
            raise ValueError(f"bad hostname {h!r}")
        if h not in out:
            out.append(h)
    return out


def _general_name(host: str) -> Any:
    from cryptography import x509

    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _load_ca(p: CertPaths) -> tuple[Any, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    return (
        x509.load_pem_x509_certificate(p.ca_cert.read_bytes()),
        serialization.load_pem_private_key(p.ca_key.read_bytes(), password=None),
    )


def _pem(obj: Any) -> bytes:
    """PEM of a cert, or of an unencrypted private key ("BEGIN RSA PRIVATE KEY": widest support)."""
    from cryptography.hazmat.primitives import serialization as ser

    if hasattr(obj, "private_bytes"):
        return bytes(obj.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.TraditionalOpenSSL, ser.NoEncryption()))
    return bytes(obj.public_bytes(ser.Encoding.PEM))


def _p12_encryption(password: str) -> Any:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.serialization import PrivateFormat, pkcs12

    return (
        PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(50000)
        .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
        .hmac_hash(hashes.SHA1())
        .build(password.encode())
    )


def _truststore(ca_cert: Any, password: str) -> bytes:
    from cryptography.hazmat.primitives.serialization import pkcs12

    # Java-style truststore: the CA marked as a trusted entry (Android/Java keystores need that).
    return bytes(
        pkcs12.serialize_java_truststore(
            [pkcs12.PKCS12Certificate(ca_cert, b"kestrel-ca")], _p12_encryption(password)
        )
    )


def _mkdir_private(d: Path) -> None:
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)


def _write(path: Path, data: bytes, *, private: bool) -> None:
    """Write atomically (temp file + rename); private files are created 0600, never wider."""
    mode = 0o600 if private else 0o644
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------------------------
# CLI: `kestrel certs init|client`


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("certs", help="create the CA, server and client certificates for TLS")
    sub = p.add_subparsers(dest="certs_command", required=True)

    pi = sub.add_parser("init", help="create the CA and the server certificate under DATA/certs")
    pi.add_argument("--data", type=Path, default=DEFAULT_DATA, help="data dir (default ./kestrel-data)")
    pi.add_argument(
        "--hostname", action="extend", nargs="+", default=[], metavar="H",
        help="extra DNS names or IP addresses for the server cert (localhost and 127.0.0.1 are always in)",
    )
    pi.add_argument("--force", action="store_true", help="also replace an existing CA (old client certs stop working)")
    _password_args(pi, "truststore-root.p12")
    pi.set_defaults(func=_cmd_init)

    pc = sub.add_parser("client", help="issue a client certificate (PEM + .p12) signed by the CA")
    pc.add_argument("name", help="client name, also the certificate CN that groups are configured by")
    pc.add_argument("--data", type=Path, default=DEFAULT_DATA, help="data dir (default ./kestrel-data)")
    _password_args(pc, "NAME.p12")
    pc.add_argument("--package", action="store_true",
                    help="also write clients/NAME.zip, an ATAK data package that sets up the TLS connection")
    pc.add_argument("--host", help="with --package: the server address ATAK connects to (required)")
    pc.add_argument("--port", type=int, default=8089, help="with --package: the TLS port (default 8089)")
    pc.set_defaults(func=_cmd_client)

    pr = sub.add_parser("revoke", help="revoke NAME's client certificates (CRL; takes effect on server restart)")
    pr.add_argument("name", help="client name given to `kestrel certs client`")
    pr.add_argument("--data", type=Path, default=DEFAULT_DATA, help="data dir (default ./kestrel-data)")
    pr.set_defaults(func=_cmd_revoke)

    pl = sub.add_parser("list", help="list issued client certificates: name, serial, expiry, revoked")
    pl.add_argument("--data", type=Path, default=DEFAULT_DATA, help="data dir (default ./kestrel-data)")
    pl.set_defaults(func=_cmd_list)


def _password_args(p: argparse.ArgumentParser, what: str) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--password", help=f"password of {what} (default: TAK's usual '{DEFAULT_PASSWORD}')")
    g.add_argument("--password-file", type=Path, help="read that password from the first line of a file")


def _password(args: argparse.Namespace) -> str:
    from kestrel.cli import BadInput

    if args.password_file is not None:
        try:
            lines = args.password_file.read_text().splitlines()
        except OSError as exc:
            raise BadInput(f"{args.password_file}: {exc.strerror}") from None
        pw = lines[0] if lines else ""
    else:
        pw = DEFAULT_PASSWORD if args.password is None else args.password
    if not pw:
        raise BadInput(f"{args.password_file or '--password'}: the password must not be empty")
    return str(pw)


def _cmd_init(args: argparse.Namespace) -> int:
    from kestrel.cli import BadInput

    try:
        p, new_ca = init(args.data, args.hostname, force=args.force, password=_password(args))
    except ValueError as exc:
        raise BadInput(f"--hostname: {exc}") from None
    except OSError as exc:
        raise BadInput(f"{exc.filename or args.data}: {exc.strerror or exc}") from None
    print(f"{'created' if new_ca else 'kept existing'} CA: {p.ca_cert}")
    print(f"server certificate: {p.server_cert} (key {p.server_key}, mode 0600)")
    print(f"ATAK trust store: {p.truststore}")
    print(f"next: kestrel certs client NAME --data {args.data}")
    return 0


def _cmd_client(args: argparse.Namespace) -> int:
    from kestrel.cli import BadInput

    try:
        check_name(args.name)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    if args.package and not args.host:
        raise BadInput("--package: also give --host, the address ATAK connects to")
    if args.package:
        try:
            _check_hostnames([args.host])
        except ValueError as exc:
            raise BadInput(f"--host: {exc}") from None
        if not 0 < args.port < 65536:
            raise BadInput(f"--port: {args.port} is not a TCP port")
    password = _password(args)
    try:
        c = issue_client(args.data, args.name, password=password)
    except FileNotFoundError as exc:
        raise BadInput(str(exc)) from None
    except OSError as exc:
        raise BadInput(f"{exc.filename or args.data}: {exc.strerror or exc}") from None
    p = paths(args.data)
    print(f"client certificate: {c.cert} (key {c.key}, mode 0600)")
    print(f"PKCS#12 for ATAK/iTAK/WinTAK: {c.p12} (with the CA; trust store {p.truststore})")
    print(f"pytak: PYTAK_TLS_CLIENT_CERT={c.cert} PYTAK_TLS_CLIENT_KEY={c.key} PYTAK_TLS_CLIENT_CAFILE={p.ca_cert}")
    if args.package:
        from kestrel.server import datapackage

        z = datapackage.write(args.data, args.name, args.host, args.port, password)
        print(f"ATAK data package: {z} (mode 0600; server {args.host}:{args.port}:ssl; holds the key and password)")
    return 0


def _cmd_revoke(args: argparse.Namespace) -> int:
    from kestrel.cli import BadInput
    from kestrel.server.crl import revoke

    try:
        new = revoke(args.data, args.name)
    except (ValueError, LookupError, FileNotFoundError) as exc:
        raise BadInput(str(exc)) from None
    except OSError as exc:
        raise BadInput(f"{exc.filename or args.data}: {exc.strerror or exc}") from None
    what = ", ".join(f"{s:x}" for s in new) if new else "nothing new (already revoked)"
    print(f"revoked {args.name}: {what}; CRL {paths(args.data).crl}")
    print("restart `kestrel serve` for TLS listeners to load it")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from kestrel.cli import BadInput
    from kestrel.server.crl import issued

    try:
        rows = issued(args.data)
    except OSError as exc:
        raise BadInput(f"{exc.filename or args.data}: {exc.strerror or exc}") from None
    print(f"{'name':<20} {'serial':<40} {'expires':<10} revoked")
    for r in rows:
        print(f"{r.name:<20} {r.serial:<40x} {r.not_after.date().isoformat():<10} {'yes' if r.revoked else 'no'}")
    return 0
