"""Revoking client certificates (an X.509 v2 CRL, RFC 5280) for our small CA: `kestrel certs revoke|list`.

Every client cert `kestrel certs client` issues is recorded in `<data>/certs/issued.tsv` (serial,
name, expiry), so `revoke NAME` can shut out every cert ever issued to NAME (also a lost device's
older one after a re-issue). The CRL `<data>/certs/crl.pem` is re-signed by the CA on each revoke,
with next-update CRL_DAYS ahead: an expired CRL would make OpenSSL refuse every client. TLS
listeners load it at start (`VERIFY_CRL_CHECK_LEAF`), so a revocation takes effect on restart.
Worst case O(issued certs) per call; both files are tiny and written atomically.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature

from kestrel.server.certs import CertPaths, _load_ca, _pem, _write, check_name, paths

CRL_DAYS = 3650  # as long as the CA lives


@dataclass(frozen=True, slots=True)
class Issued:
    name: str
    serial: int
    not_after: dt.datetime
    revoked: bool


def record_issued(p: CertPaths, name: str, cert: Any) -> None:
    """Append one issued client cert to the index (called by `certs.issue_client`)."""
    old = p.index.read_bytes() if p.index.is_file() else b""
    line = f"{cert.serial_number:x}\t{name}\t{cert.not_valid_after_utc.isoformat()}\n"
    _write(p.index, old + line.encode(), private=False)


def _rows(p: CertPaths) -> list[tuple[int, str, dt.datetime]]:
    """(serial, name, expiry) of every issued client cert; a malformed index line is skipped."""
    from cryptography import x509

    rows: list[tuple[int, str, dt.datetime]] = []
    if p.index.is_file():
        for line in p.index.read_text(errors="replace").splitlines():
            parts = line.split("\t")
            if len(parts) != 3:
                continue
            try:
                rows.append((int(parts[0], 16), check_name(parts[1]), dt.datetime.fromisoformat(parts[2])))
            except ValueError:
                continue
    known = {r[0] for r in rows}
    if p.clients.is_dir() and p.ca_cert.is_file():  # issued before the index existed: the current PEM
        ca = x509.load_pem_x509_certificate(p.ca_cert.read_bytes())
        for pem in sorted(p.clients.glob("*.pem")):
            try:
                cert = x509.load_pem_x509_certificate(pem.read_bytes())
                cert.verify_directly_issued_by(ca)  # not a leftover of a replaced CA
            except (ValueError, TypeError, InvalidSignature):
                continue
            if cert.serial_number not in known:
                rows.append((cert.serial_number, pem.stem, cert.not_valid_after_utc))
    return rows


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


def issued(data_dir: str | os.PathLike[str]) -> list[Issued]:
    """Every issued client cert, oldest first, with whether the CRL revokes it."""
    from cryptography import x509

    p = paths(data_dir)
    revoked: set[int] = set()
    if p.crl.is_file() and p.ca_cert.is_file():
        crl = _current_crl(p, x509.load_pem_x509_certificate(p.ca_cert.read_bytes()))
        revoked = {r.serial_number for r in crl} if crl is not None else set()
    return [Issued(n, s, t, s in revoked) for s, n, t in _rows(p)]


def revoke(data_dir: str | os.PathLike[str], name: str) -> list[int]:
    """Add every cert issued to `name` to the CRL and re-sign it; returns the serials newly revoked.

    Raises FileNotFoundError (no CA) or LookupError (no cert was ever issued to `name`).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    check_name(name)
    p = paths(data_dir)
    if not p.has_ca():
        raise FileNotFoundError(f"{p.ca_cert}: no CA yet; run `kestrel certs init` first")
    serials = [s for s, n, _ in _rows(p) if n == name]
    if not serials:
        raise LookupError(f"{name}: no client certificate of that name was issued in {p.dir}")
    ca_cert, ca_key = _load_ca(p)
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
    _write(p.crl, _pem(b.sign(ca_key, hashes.SHA256())), private=False)
    return new
