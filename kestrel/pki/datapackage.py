"""ATAK connection data package: `kestrel certs client NAME --package --host H` writes `clients/NAME.zip`.

A TAK "data package" (mission package v2) is a zip with `MANIFEST/manifest.xml` listing its entries
and, here, a `.pref` file that ATAK imports as preferences: one `cot_streams` server entry
(`connectString0 = H:PORT:ssl`) and, in `com.atakmap.app_preferences`, where the trust store and the
client `.p12` are (`caLocation`, `certificateLocation`) and their passwords. Importing the zip in
ATAK (Import > Local SD, or open it from a file manager) sets up the TLS connection in one step.

The zip holds the client's private key and its password: it is written 0600 like a key and must be
handed over like one. The passwords are never printed. Pure `build()` (bytes in, bytes out) plus
`write()` for the files under `<data>/certs`.
"""

from __future__ import annotations

import io
import os
import uuid
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

from kestrel.errors import BadInput
from kestrel.pki.ca import load_ca, truststore
from kestrel.pki.paths import check_hostnames, check_name, paths, write_file

PREF_ENTRY = "certs/config.pref"
TRUSTSTORE = "truststore-root.p12"


def _pref(name: str, host: str, port: int, password: str) -> bytes:
    """ATAK preferences: one SSL server and the two .p12 files (ATAK resolves `cert/FILE` in the package)."""
    root = ET.Element("preferences")
    streams = ET.SubElement(root, "preference", version="1", name="cot_streams")
    app = ET.SubElement(root, "preference", version="1", name="com.atakmap.app_preferences")
    entries = [
        (streams, "count", "Integer", "1"),
        (streams, "description0", "String", f"Kestrel {host}"),
        (streams, "enabled0", "Boolean", "true"),
        (streams, "connectString0", "String", f"{host}:{port}:ssl"),
        (app, "displayServerConnectionWidget", "Boolean", "true"),
        (app, "caLocation", "String", f"cert/{TRUSTSTORE}"),
        (app, "caPassword", "String", password),
        (app, "certificateLocation", "String", f"cert/{name}.p12"),
        (app, "clientPassword", "String", password),
    ]
    for parent, key, cls, value in entries:
        ET.SubElement(parent, "entry", {"key": key, "class": f"class java.lang.{cls}"}).text = value
    return b"<?xml version='1.0' standalone='yes'?>\n" + ET.tostring(root, encoding="utf-8")


def _manifest(name: str, host: str, entries: list[str]) -> bytes:
    root = ET.Element("MissionPackageManifest", version="2")
    conf = ET.SubElement(root, "Configuration")
    uid = uuid.uuid5(uuid.NAMESPACE_URL, f"kestrel:{host}:{name}")  # re-issuing replaces, not duplicates
    for key, value in (("uid", str(uid)), ("name", f"{name}.zip"), ("onReceiveDelete", "true")):
        ET.SubElement(conf, "Parameter", name=key, value=value)
    contents = ET.SubElement(root, "Contents")
    for e in entries:
        ET.SubElement(contents, "Content", ignore="false", zipEntry=e)
    return b"<?xml version='1.0' encoding='UTF-8'?>\n" + ET.tostring(root, encoding="utf-8")


def build(name: str, host: str, port: int, client_p12: bytes, truststore_p12: bytes, password: str) -> bytes:
    """The data package zip for client `name` connecting to `host:port` over TLS."""
    check_name(name)
    (host,) = check_hostnames([host])
    if not 0 < port < 65536:
        raise BadInput(f"--port: {port} is not a TCP port")
    files = {
        PREF_ENTRY: _pref(name, host, port, password),
        f"certs/{TRUSTSTORE}": truststore_p12,
        f"certs/{name}.p12": client_p12,
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("MANIFEST/manifest.xml", _manifest(name, host, list(files)))
        for entry, data in files.items():
            z.writestr(entry, data)
    return buf.getvalue()


def write(data_dir: str | os.PathLike[str], name: str, host: str, port: int, password: str) -> Path:
    """Write `clients/NAME.zip` (0600) from the client's `.p12` (made with `password`)."""
    p = paths(data_dir)
    c = p.client(name)
    ca_cert, _ = load_ca(p)
    # a trust store with the same password as the client .p12: the pref has room for one of each
    zipped = build(name, host, port, c.p12.read_bytes(), truststore(ca_cert, password), password)
    out = c.p12.with_suffix(".zip")
    write_file(out, zipped, private=True)
    return out
