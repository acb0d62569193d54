"""Revoking client certificates (an X.509 v2 CRL, RFC 5280) and listing what was issued.

`revoke(NAME)` puts every cert ever issued to NAME (from the index) on `<data>/certs/crl.pem`,
re-signed by the CA with next-update CRL_DAYS ahead: an expired CRL would make OpenSSL refuse every
client. TLS listeners load it at start (`VERIFY_CRL_CHECK_LEAF`), so a revocation takes effect on
restart. `issued()` lists every cert with its revoked flag; `usable_clients()` names the clients
whose current certificate would get in (what help texts may recommend).
Worst case O(issued certs) per call; both files are tiny and written atomically.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature

from kestrel.errors import NotFound
from kestrel.pki.ca import load_ca, pem
from kestrel.pki.index import rows
from kestrel.pki.paths import CertPaths, check_name, paths, write_file

CRL_DAYS = 3650  # as long as the CA lives


@dataclass(frozen=True, slots=True)
class Issued:
    name: str
    serial: int
    not_after: dt.datetime
    revoked: bool


def _current_crl(p: CertPaths, ca_cert: Any) -> Any:
    """The CRL on disk if our CA signed it, else None (a CRL of a replaced CA is dropped)."""
    from cryptography import x509

    if not p.crl.is_file():
        return None
    try:
        crl = x509.load_pem_x509_crl(p.crl.read_bytes())
    except ValueError:
        return None
    if crl.issuer != ca_cert.subject or not crl.is_signature_valid(ca_cert.public_key()):
        return None
    return crl


def revoked_serials(p: CertPaths) -> set[int]:
    """Serials on the current CRL (empty without a CA or a CRL)."""
    from cryptography import x509

    if not (p.crl.is_file() and p.ca_cert.is_file()):
        return set()
    crl = _current_crl(p, x509.load_pem_x509_certificate(p.ca_cert.read_bytes()))
    return {r.serial_number for r in crl} if crl is not None else set()


def issued(data_dir: str | os.PathLike[str]) -> list[Issued]:
    """Every issued client cert, oldest first, with whether the CRL revokes it."""
    p = paths(data_dir)
    revoked = revoked_serials(p)
    return [Issued(n, s, t, s in revoked) for s, n, t in rows(p)]


def usable_clients(p: CertPaths) -> list[str]:
    """Names whose current `clients/NAME.pem` our CA signed, not revoked and not expired (sorted)."""
    from cryptography import x509

    if not (p.clients.is_dir() and p.ca_cert.is_file()):
        return []
    try:
        ca = x509.load_pem_x509_certificate(p.ca_cert.read_bytes())
    except ValueError:
        return []
    revoked = revoked_serials(p)
    now = dt.datetime.now(dt.UTC)
    out: list[str] = []
    for f in sorted(p.clients.glob("*.pem")):
        try:
            cert = x509.load_pem_x509_certificate(f.read_bytes())
            cert.verify_directly_issued_by(ca)
        except (OSError, ValueError, TypeError, InvalidSignature):
            continue
        if cert.serial_number not in revoked and cert.not_valid_after_utc > now and f.with_suffix(".key").is_file():
            out.append(f.stem)
    return out


def revoke(data_dir: str | os.PathLike[str], name: str) -> list[int]:
    """Add every cert issued to `name` to the CRL and re-sign it; returns the serials newly revoked.

    Raises NotFound (no CA, or no cert was ever issued to `name`) or BadInput (bad name).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    check_name(name)
    p = paths(data_dir)
    ca_cert, ca_key = load_ca(p)
    serials = [s for s, n, _ in rows(p) if n == name]
    if not serials:
        raise NotFound(f"{name}: no client certificate of that name was issued in {p.dir}")
    old = _current_crl(p, ca_cert)
    entries = list(old) if old is not None else []
    done = {r.serial_number for r in entries}
    now = dt.datetime.now(dt.UTC)
    new = [s for s in dict.fromkeys(serials) if s not in done]
    for s in new:
        entries.append(x509.RevokedCertificateBuilder().serial_number(s).revocation_date(now).build())
    number = 1
    if old is not None:
        try:
            number = old.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number + 1
        except x509.ExtensionNotFound:
            pass
    b = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - dt.timedelta(hours=1))  # tolerate small clock skew, as for certs
        .next_update(now + dt.timedelta(days=CRL_DAYS))
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    for e in entries:
        b = b.add_revoked_certificate(e)
    write_file(p.crl, pem(b.sign(ca_key, hashes.SHA256())), private=False)
    return new
