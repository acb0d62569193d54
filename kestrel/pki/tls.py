"""TLS contexts: the server's (client certificate required, CRL checked) and a client's.

Used by the server's TLS listeners, PED's pusher, the tests and the benchmarks. Bad files raise
`BadInput("PATH: reason")` naming the file at fault (unreadable, not PEM, key/certificate
mismatch, encrypted key) rather than a bare OpenSSL code. TLS 1.2 is the floor everywhere.
"""

from __future__ import annotations

import os
import re
import ssl
from pathlib import Path
from typing import Any

from kestrel.errors import BadInput, NotFound
from kestrel.pki.paths import paths

PathLike = str | os.PathLike[str]


def _no_password() -> bytes:
    """An encrypted key fails to load instead of prompting on the terminal."""
    return b""


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise NotFound(f"{path}: no such file")
    if not path.is_file():  # a directory, a FIFO (open() would block), a device
        raise BadInput(f"{path}: cannot read (not a regular file)")
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as exc:
        raise BadInput(f"{path}: cannot read ({exc.strerror or type(exc).__name__})") from None


def _reason(exc: ssl.SSLError) -> str:
    text = str(getattr(exc, "reason", None) or exc.strerror or exc)
    return re.sub(r"\s*\(_ssl\.c:\d+\)", "", text)[:120]


def _load_chain(ctx: ssl.SSLContext, cert: Path, key: Path) -> None:
    """Certificate and key into `ctx`, blaming the right file when one is bad."""
    _check_readable(cert)
    _check_readable(key)
    try:  # parse the certificate on its own, so a bad one is not blamed on the key
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_verify_locations(cafile=str(cert))
    except ssl.SSLError as exc:
        raise BadInput(f"{cert}: not a usable certificate (PEM) ({_reason(exc)})") from None
    try:
        ctx.load_cert_chain(str(cert), str(key), password=_no_password)
    except ssl.SSLError as exc:
        why = _reason(exc)
        if "MISMATCH" in why:
            raise BadInput(f"{key}: private key does not match certificate {cert} ({why})") from None
        raise BadInput(f"{key}: not a usable unencrypted private key (PEM) ({why})") from None


def _load_ca(ctx: ssl.SSLContext, ca: Path) -> None:
    _check_readable(ca)
    try:
        ctx.load_verify_locations(cafile=str(ca))
    except ssl.SSLError as exc:
        raise BadInput(f"{ca}: not a usable CA certificate (PEM) ({_reason(exc)})") from None


def server_context(ca: PathLike, cert: PathLike, key: PathLike, crl: PathLike | None = None) -> ssl.SSLContext:
    """TLS 1.2+ server context that requires a client certificate signed by `ca` and not revoked.

    The revocation list is `crl`, or else `crl.pem` next to `ca` when it exists (`kestrel certs
    revoke` writes it there); it is read once, so a revocation takes effect on restart.
    """
    ca, cert, key = Path(ca), Path(cert), Path(key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    _load_ca(ctx, ca)
    _load_chain(ctx, cert, key)
    crl_path = Path(crl) if crl is not None else ca.with_name("crl.pem")
    if crl_path.is_file():
        _check_readable(crl_path)
        try:
            ctx.load_verify_locations(cafile=str(crl_path))
        except ssl.SSLError as exc:
            raise BadInput(f"{crl_path}: not a usable certificate revocation list (PEM) ({_reason(exc)})") from None
        ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    return ctx


def server_ssl_context(data_dir: PathLike) -> ssl.SSLContext:
    """`server_context` on a data dir's files (`<data>/certs/{ca,server}.pem`, `server.key`, `crl.pem`)."""
    p = paths(data_dir)
    return server_context(p.ca_cert, p.server_cert, p.server_key, p.crl)


def pem_client_context(
    ca: PathLike, cert: PathLike | None = None, key: PathLike | None = None, *, check_hostname: bool = True,
) -> ssl.SSLContext:
    """TLS 1.2+ client context trusting `ca`, presenting `cert`/`key` when given."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = check_hostname
    _load_ca(ctx, Path(ca))
    if cert is not None and key is not None:
        _load_chain(ctx, Path(cert), Path(key))
    return ctx


def client_ssl_context(data_dir: PathLike, name: str | None, *, check_hostname: bool = True) -> ssl.SSLContext:
    """Client context trusting a data dir's CA, presenting client `name`'s cert (None: no cert)."""
    p = paths(data_dir)
    c = p.client(name) if name is not None else None
    return pem_client_context(p.ca_cert, c.cert if c else None, c.key if c else None,
                              check_hostname=check_hostname)


def common_name(peercert: dict[str, Any] | None) -> str | None:
    """Subject CN of a verified peer certificate (`getpeercert()`), or None (the server maps CN -> groups)."""
    for rdn in (peercert or {}).get("subject", ()):
        for k, v in rdn:
            if k == "commonName":
                return str(v)
    return None
