"""The record of issued client certificates: `<data>/certs/issued.tsv` (serial hex, name, expiry).

Every client cert the CA signs is appended here, so `crl.revoke(NAME)` can shut out every cert ever
issued to NAME (also a lost device's older one after a re-issue). Worst case O(issued certs) per
call; the file is tiny and rewritten atomically.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from cryptography.exceptions import InvalidSignature

from kestrel.errors import BadInput
from kestrel.pki.paths import CertPaths, check_name, write_file


def record_issued(p: CertPaths, name: str, cert: Any) -> None:
    """Append one issued client cert (an `x509.Certificate`) to the index."""
    old = p.index.read_bytes() if p.index.is_file() else b""
    line = f"{cert.serial_number:x}\t{name}\t{cert.not_valid_after_utc.isoformat()}\n"
    write_file(p.index, old + line.encode(), private=False)


def rows(p: CertPaths) -> list[tuple[int, str, dt.datetime]]:
    """(serial, name, expiry) of every issued client cert, oldest first; a malformed line is skipped."""
    from cryptography import x509

    out: list[tuple[int, str, dt.datetime]] = []
    if p.index.is_file():
        for line in p.index.read_text(errors="replace").splitlines():
            parts = line.split("\t")
            if len(parts) != 3:
                continue
            try:
                out.append((int(parts[0], 16), check_name(parts[1]), dt.datetime.fromisoformat(parts[2])))
            except (ValueError, BadInput):
                continue
    known = {r[0] for r in out}
    if p.clients.is_dir() and p.ca_cert.is_file():  # issued before the index existed: the current PEM
        ca = x509.load_pem_x509_certificate(p.ca_cert.read_bytes())
        for pem in sorted(p.clients.glob("*.pem")):
            try:
                cert = x509.load_pem_x509_certificate(pem.read_bytes())
                cert.verify_directly_issued_by(ca)  # not a leftover of a replaced CA
            except (ValueError, TypeError, InvalidSignature):
                continue
            if cert.serial_number not in known:
                out.append((cert.serial_number, pem.stem, cert.not_valid_after_utc))
    return out
