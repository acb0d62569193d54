"""Where the certificate files of a data dir live, name rules, and the one safe file writer.

No cryptography here: every other pki module (and the server's config) can import this cheaply.
Private files are written 0600 and atomically (temp file + rename), never half-written.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from kestrel.errors import BadInput

DEFAULT_PASSWORD = "atakatak"  # what TAK Server's makeCert scripts and ATAK docs use
DEFAULT_DATA = Path("kestrel-data")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # also a safe file name


@dataclass(frozen=True, slots=True)
class ClientPaths:
    name: str
    cert: Path
    key: Path
    p12: Path

    @property
    def package(self) -> Path:
        """The ATAK data package `NAME.zip` (only with `certs client --package`)."""
        return self.p12.with_suffix(".zip")

    def exists(self) -> bool:
        return self.cert.is_file() or self.key.is_file() or self.p12.is_file()


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
        d = self.clients
        return ClientPaths(name, d / f"{name}.pem", d / f"{name}.key", d / f"{name}.p12")

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


def in_dir(certs_dir: str | os.PathLike[str]) -> CertPaths:
    """The layout inside a certificate folder (`<data>/certs`)."""
    d = Path(certs_dir)
    return CertPaths(
        dir=d, ca_cert=d / "ca.pem", ca_key=d / "ca.key", server_cert=d / "server.pem",
        server_key=d / "server.key", truststore=d / "truststore-root.p12", clients=d / "clients",
    )


def paths(data_dir: str | os.PathLike[str]) -> CertPaths:
    """The layout of a Kestrel data dir's certificates: `<data>/certs/...`."""
    return in_dir(Path(data_dir) / "certs")


def check_name(name: str) -> str:
    """A client name becomes a file name and the cert CN: letters, digits, '.', '_', '-' only."""
    if not _NAME_RE.match(name):
        raise BadInput(
            f"bad client name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


def check_hostnames(hostnames: Iterable[str]) -> list[str]:
    """DNS names or IP addresses for a server cert or a data package, stripped and de-duplicated."""
    out: list[str] = []
    for h in hostnames:
        h = h.strip()
        ok = bool(h) and len(h) <= 253 and re.fullmatch(r"[A-Za-z0-9.:*_-]+", h) is not None
        if not ok:
            raise BadInput(f"bad hostname {h!r}")
        if h not in out:
            out.append(h)
    return out


def mkdir_private(d: Path) -> None:
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)


def write_file(path: Path, data: bytes, *, private: bool) -> None:
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
