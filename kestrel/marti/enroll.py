"""Certificate enrollment as ATAK, WinTAK and pytak-style tools do it against TAK Server.

1. `GET /Marti/api/tls/config` (Basic auth): the RDNs a CSR must carry besides CN
   (`<nameEntries><nameEntry name="O" value="Kestrel"/>`).
2. `POST /Marti/api/tls/signClient/v2?clientUid=…&version=…` with the CSR (headerless base64 as ATAK
   sends it, or PEM): the signed certificate and the CA chain, headerless base64 (64-column lines,
   as TAK Server's `certToPEM(cert, false)`), as XML `<enrollment><signedCert>…</signedCert><ca>…</ca>
   </enrollment>` with nothing between the children (ATAK reads every child as a certificate) when
   `Accept` asks for application/xml, as JSON `{"signedCert": …, "ca0": …}` when `Accept` is absent,
   empty, `*/*` or application/json (TAK Server's order of tests), else 400.
3. `POST /Marti/api/tls/signClient` (v1, ATAK <= 4.6): the same as a PKCS#12 store with password
   `atakatak` and certificate entries `signedCert`, `ca0`….

The CSR's CN must be the Basic-auth user and its other RDNs exactly the configured name entries,
else 500, as TAK Server's signClient answers for any CSR it does not sign (ATAK shows it as a failed
enrollment); the body says why. The signature of the CSR is checked.
Issued certificates are recorded like `kestrel certs client` ones (`kestrel certs list/revoke`).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

from kestrel import pki
from kestrel.marti.message import HttpError, Response
from kestrel.pki.ca import p12_encryption

P12_PASSWORD = "atakatak"  # TAK Server's DEFAULT_PASSWORD for signClient v1
NAME_ENTRIES: tuple[tuple[str, str], ...] = (("O", "Kestrel"),)  # what `kestrel certs` puts beside CN
MAX_CSR = 64 * 1024
_OID_NAMES = {"CN": "2.5.4.3", "O": "2.5.4.10", "OU": "2.5.4.11", "C": "2.5.4.6", "ST": "2.5.4.8",
              "L": "2.5.4.7", "E": "1.2.840.113549.1.9.1"}


def tls_config_xml(entries: tuple[tuple[str, str], ...] = NAME_ENTRIES) -> bytes:
    """TAK Server's JAXB rendering of `CertificateConfig` under root `ns2:certificateConfig`."""
    from xml.sax.saxutils import quoteattr

    items = "".join(f"<nameEntry name={quoteattr(n)} value={quoteattr(v)}/>" for n, v in entries)
    return ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            '<ns2:certificateConfig xmlns="http://bbn.com/marti/xml/config" xmlns:ns2="com.bbn.marti.config">'
            f"<nameEntries>{items}</nameEntries></ns2:certificateConfig>").encode()


def bare_b64(der: bytes) -> str:
    """Headerless base64 in 64-column lines, no trailing newline (TAK's `certToPEM(c, false)`)."""
    enc = base64.b64encode(der).decode()
    return "\n".join(enc[i:i + 64] for i in range(0, len(enc), 64))


def parse_csr(body: bytes) -> Any:
    """A CSR from headerless base64, PEM, or DER; 400 when it is none of these or badly signed."""
    from cryptography import x509

    if len(body) > MAX_CSR:
        raise HttpError(413, "CSR too large")
    if body[:1] == b"\x30":  # DER
        der = body
    else:
        text = re.sub(rb"-----(BEGIN|END)[A-Z ]*-----", b"", body)
        try:
            der = base64.b64decode(b"".join(text.split()), validate=True)
        except (binascii.Error, ValueError):
            raise HttpError(500, "the body is not a base64 or PEM certificate signing request") from None
    try:
        csr = x509.load_der_x509_csr(der)
    except ValueError:
        raise HttpError(500, "the body is not a certificate signing request") from None
    if not csr.is_signature_valid:
        raise HttpError(500, "the CSR's signature does not match its key")
    return csr


def check_csr(csr: Any, user: str, entries: tuple[tuple[str, str], ...] = NAME_ENTRIES) -> None:
    """CN must be `user`, the other RDNs exactly `entries` (TAK's validateCSR, CN compared exactly)."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    attrs = [(a.oid.dotted_string, a.value) for a in csr.subject]
    cns = [v for oid, v in attrs if oid == _OID_NAMES["CN"]]
    if len(cns) != 1:
        raise HttpError(500, "CSR validation failed: it needs exactly one CN")
    if cns[0] != user:
        raise HttpError(500, f"CSR validation failed: CN {cns[0][:64]!r} is not the signed-in user {user!r}")
    want = sorted((_OID_NAMES.get(n.upper(), n), v) for n, v in entries)
    have = sorted((oid, str(v)) for oid, v in attrs if oid != _OID_NAMES["CN"])
    if have != want:
        names = ", ".join(f"{n}={v}" for n, v in entries)
        raise HttpError(500, f"CSR validation failed: its name must be CN={user}, {names} (see /Marti/api/tls/config)")
    key = csr.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise HttpError(500, "CSR validation failed: RSA keys need at least 2048 bits")
    elif not (isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in ("secp256r1", "secp384r1")):
        raise HttpError(500, "CSR validation failed: use an RSA (>= 2048 bits) or P-256/P-384 key")


def sign(data_dir: Path, csr: Any, user: str) -> tuple[Any, list[Any]]:
    """Sign `csr` with the data dir's CA as a client certificate; record it for list/revoke."""
    p = pki.paths(data_dir)
    if not p.has_ca():
        raise HttpError(503, "no CA on this server (run: kestrel certs init)")
    ca_cert, _ = pki.load_ca(p)
    cert = pki.sign_client(data_dir, user, csr.public_key(), subject=csr.subject)
    return cert, [ca_cert]


def _der(cert: Any) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return bytes(cert.public_bytes(Encoding.DER))


def v2_response(cert: Any, chain: list[Any], accept: str | None) -> Response:
    """TAK Server's signClientCertV2 answer for this `Accept` header."""
    a = (accept or "").lower()
    if accept is None or "*/*" in a or "application/json" in a or not a:
        obj = {"signedCert": bare_b64(_der(cert))}
        for i, ca in enumerate(chain):
            obj[f"ca{i}"] = bare_b64(_der(ca))
        return Response(200, json.dumps(obj, indent=2).encode(), "application/json")
    if "application/xml" in a:
        parts = ['<?xml version="1.0" encoding="UTF-8"?><enrollment>',
                 f"<signedCert>{bare_b64(_der(cert))}</signedCert>"]
        parts += [f"<ca>{bare_b64(_der(ca))}</ca>" for ca in chain]
        parts.append("</enrollment>")
        return Response(200, "".join(parts).encode(), "application/xml")
    raise HttpError(400, "Accept must allow application/json or application/xml")


def v1_response(cert: Any, chain: list[Any]) -> Response:
    """PKCS#12 with certificate entries `signedCert`, `ca0`… (password `atakatak`), as v1 answers."""
    from cryptography.hazmat.primitives.serialization import pkcs12

    entries = [pkcs12.PKCS12Certificate(cert, b"signedCert")]
    entries += [pkcs12.PKCS12Certificate(ca, f"ca{i}".encode()) for i, ca in enumerate(chain)]
    data = pkcs12.serialize_java_truststore(entries, p12_encryption(P12_PASSWORD))
    return Response(200, bytes(data), "application/octet-stream")


def enrollment_profile(data_dir: Path) -> Response:
    """`GET /Marti/api/tls/profile/enrollment`: the files an admin put in
    `<data>/profiles/enrollment/` as a data package (ATAK imports it after enrolling), else 204."""
    d = data_dir / "profiles" / "enrollment"
    files = sorted(f for f in d.iterdir() if f.is_file() and not f.name.startswith(".")) if d.is_dir() else []
    if not files:
        return Response(204)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        contents = "".join(f'<Content ignore="false" zipEntry="{f.name}"/>' for f in files)
        z.writestr("MANIFEST/manifest.xml",
                   '<MissionPackageManifest version="2"><Configuration>'
                   '<Parameter name="uid" value="kestrel-enrollment-profile"/>'
                   '<Parameter name="name" value="enrollment-profile.zip"/>'
                   '<Parameter name="onReceiveImport" value="true"/><Parameter name="onReceiveDelete" value="true"/>'
                   f"</Configuration><Contents>{contents}</Contents></MissionPackageManifest>")
        for f in files:
            z.write(f, f.name)
    return Response(200, buf.getvalue(), "application/zip",
                    [("Content-Disposition", 'attachment; filename="enrollment-profile.zip"')])


def enroll_link(host: str, user: str | None = None, password: str | None = None) -> str:
    """ATAK's quick-connect link (also the text of its enrollment QR code)."""
    from urllib.parse import quote

    link = f"tak://com.atakmap.app/enroll?host={quote(host, safe='.:-[]')}"
    if user:
        link += f"&username={quote(user, safe='')}"
    if password:
        link += f"&token={quote(password, safe='')}"
    return link
