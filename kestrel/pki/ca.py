"""The small private CA: create it, load it, sign the server cert and client certs.

`init` makes `<data>/certs/{ca,server}.{pem,key}` and `truststore-root.p12`; `issue_client` makes
`clients/NAME.{pem,key,p12}`; `sign_client` signs a public key someone else generated (what CSR
enrollment needs: the private key never leaves the device). Every client cert is recorded in the
index (`kestrel.pki.index`) so it can be revoked. The `.p12` holds the client key, its cert and the
CA (what ATAK/iTAK/WinTAK import); `truststore-root.p12` holds only the CA (ATAK's "trust store").

Goals: works out of the box with pytak, ATAK and `ssl`; never replaces a CA or a client silently;
private keys are written 0600 and atomically, and neither keys nor passwords are ever logged.
RSA-2048 keys and SHA-256 signatures, as TAK Server's own scripts make them; PKCS#12 files use
legacy 3DES/SHA-1 encryption because older Android and iOS key stores cannot open AES ones.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from typing import Any

from kestrel.errors import BadInput, Conflict, NotFound
from kestrel.pki.index import record_issued
from kestrel.pki.paths import (
    DEFAULT_PASSWORD,
    CertPaths,
    ClientPaths,
    check_hostnames,
    check_name,
    mkdir_private,
    paths,
    write_file,
)

CA_DAYS, SERVER_DAYS, CLIENT_DAYS = 3650, 825, 825


def init(
    data_dir: str | os.PathLike[str], hostnames: Sequence[str] = (), *,
    force: bool = False, server_only: bool = False, password: str = DEFAULT_PASSWORD,
) -> tuple[CertPaths, bool]:
    """Create the CA and issue the server cert; returns (paths, whether a new CA was made).

    An existing CA is never replaced silently: `force` replaces it (every client cert it issued
    stops working), `server_only` keeps it and re-issues only the server cert (new `hostnames`);
    with neither, an existing CA raises `Conflict` naming ca.pem.
    """
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    p = paths(data_dir)
    names = check_hostnames(hostnames)
    has_ca = p.has_ca()
    if has_ca and not (force or server_only):
        raise Conflict(f"{p.ca_cert}: a CA already exists; --force replaces it (every client certificate it "
                       f"issued stops working), --server-only keeps it and re-issues the server certificate")
    if server_only and not has_ca:
        raise NotFound(f"{p.ca_cert}: no CA to keep; run `kestrel certs init` without --server-only")
    mkdir_private(p.dir)
    new_ca = not has_ca or force
    if new_ca:
        ca_key = new_key()
        ca_cert = _build(_subject("Kestrel CA"), ca_key, ca_key, None, CA_DAYS, ca=True, eku=None)
        write_file(p.ca_key, pem(ca_key), private=True)
        write_file(p.ca_cert, pem(ca_cert), private=False)
        p.crl.unlink(missing_ok=True)  # signed by the old CA: OpenSSL would refuse every client
        p.index.unlink(missing_ok=True)  # certs of the old CA no longer get in anyway
    ca_cert, ca_key = load_ca(p)
    if new_ca or not p.truststore.is_file():
        write_file(p.truststore, truststore(ca_cert, password), private=False)
    san: list[x509.GeneralName] = []
    for h in ("localhost", "127.0.0.1", *names):
        gn = _general_name(h)
        if gn not in san:
            san.append(gn)
    key = new_key()
    cert = _build(
        _subject(names[0] if names else "localhost"), key, ca_key, ca_cert, SERVER_DAYS,
        ca=False, eku=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH], san=san,
    )
    write_file(p.server_key, pem(key), private=True)
    write_file(p.server_cert, pem(cert), private=False)
    return p, new_ca


def load_ca(p: CertPaths) -> tuple[Any, Any]:
    """(CA certificate, CA private key) as `cryptography` objects; NotFound without a CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    if not p.has_ca():
        raise NotFound(f"{p.ca_cert}: no CA yet; run `kestrel certs init --data {p.dir.parent}` first")
    return (
        x509.load_pem_x509_certificate(p.ca_cert.read_bytes()),
        serialization.load_pem_private_key(p.ca_key.read_bytes(), password=None),
    )


def sign_client(data_dir: str | os.PathLike[str], name: str, public_key: Any, *, subject: Any = None,
                days: int = CLIENT_DAYS) -> Any:
    """Sign a client cert for `public_key` (e.g. a CSR's) with the CA and record it under `name`.

    The subject is O=Kestrel, CN=`name`, or `subject` (an `x509.Name`, e.g. the CSR's, whose CN the
    caller checked). Returns the `x509.Certificate`; writes no client files (the caller decides what
    to hand out). The server maps the CN to groups. Raises NotFound (no CA) or BadInput (bad name).
    """
    from cryptography.x509.oid import ExtendedKeyUsageOID

    check_name(name)
    p = paths(data_dir)
    ca_cert, ca_key = load_ca(p)
    cert = _build(subject if subject is not None else _subject(name), public_key, ca_key, ca_cert, days, ca=False,
                  eku=[ExtendedKeyUsageOID.CLIENT_AUTH])
    record_issued(p, name, cert)
    return cert


def issue_client(
    data_dir: str | os.PathLike[str], name: str, *, password: str = DEFAULT_PASSWORD, force: bool = False
) -> ClientPaths:
    """Issue client cert CN=`name` with a new key: `clients/NAME.pem`, `.key` and `.p12`.

    An existing client is not overwritten unless `force` (a re-issue; the old cert stays valid
    until revoked). Raises NotFound (no CA), Conflict (exists), BadInput (bad name, empty password).
    """
    from cryptography.hazmat.primitives.serialization import pkcs12

    p = paths(data_dir)
    c = p.client(name)
    ca_cert, _ = load_ca(p)
    if not password:
        raise BadInput("the PKCS#12 password must not be empty")
    if c.exists() and not force:
        raise Conflict(f"{c.cert}: client {name!r} already exists; --force re-issues it "
                       f"(the old certificate stays valid until `kestrel certs revoke {name}`)")
    mkdir_private(p.clients)
    key = new_key()
    cert = sign_client(data_dir, name, key.public_key())
    p12 = pkcs12.serialize_key_and_certificates(name.encode(), key, cert, [ca_cert], p12_encryption(password))
    write_file(c.key, pem(key), private=True)
    write_file(c.cert, pem(cert), private=False)
    write_file(c.p12, p12, private=True)
    c.package.unlink(missing_ok=True)  # a data package of the old key would no longer match
    return c


# ---------------------------------------------------------------------------------------------
# helpers (also used by crl and datapackage)


def new_key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(obj: Any) -> bytes:
    """PEM of a cert or CRL, or of an unencrypted private key ("BEGIN RSA PRIVATE KEY": widest support)."""
    from cryptography.hazmat.primitives import serialization as ser

    if hasattr(obj, "private_bytes"):
        return bytes(obj.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.TraditionalOpenSSL, ser.NoEncryption()))
    return bytes(obj.public_bytes(ser.Encoding.PEM))


def p12_encryption(password: str) -> Any:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.serialization import PrivateFormat, pkcs12

    return (
        PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(50000)
        .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
        .hmac_hash(hashes.SHA1())
        .build(password.encode())
    )


def truststore(ca_cert: Any, password: str) -> bytes:
    """Java-style truststore: the CA marked as a trusted entry (Android/Java keystores need that)."""
    from cryptography.hazmat.primitives.serialization import pkcs12

    return bytes(
        pkcs12.serialize_java_truststore([pkcs12.PKCS12Certificate(ca_cert, b"kestrel-ca")], p12_encryption(password))
    )


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
    """One X.509 v3 cert with the extensions strict verifiers (X509_STRICT) want: SKI, AKI, KU.

    `key` is the subject's private or public key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    now = dt.datetime.now(dt.UTC)
    pub = key.public_key() if hasattr(key, "public_key") else key
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


def _general_name(host: str) -> Any:
    from cryptography import x509

    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)
