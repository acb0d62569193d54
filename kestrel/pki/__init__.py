"""Kestrel's public-key infrastructure: one small CA per data dir, client certificates, the CRL,
ATAK enrollment data packages and TLS contexts. Used by the server, PED's pusher and the CLI.

The API (everything raises `kestrel.errors` types with a one-line message naming the file/name):

    paths(data_dir) -> CertPaths            where ca.pem, server.pem, clients/NAME.* live
    init(data_dir, hostnames, force=, server_only=)   create the CA + server cert (never replaces silently)
    load_ca(paths) -> (cert, key)           the CA as `cryptography` objects
    issue_client(data_dir, name, force=)    new key + cert + .p12 under clients/ (Conflict if it exists)
    sign_client(data_dir, name, public_key) sign someone's public key (CSR enrollment); recorded
    issued(data_dir) -> [Issued]            every issued client cert, with its revoked flag
    revoke(data_dir, name) -> [serial]      put every cert of `name` on the CRL
    usable_clients(paths) -> [name]         clients whose current cert would get in
    datapackage.build/write                 the ATAK data package (zip) for a client
    server_context / server_ssl_context / pem_client_context / client_ssl_context / common_name

Modules stack: paths <- index <- ca <- crl, datapackage; tls needs only paths; cli on top.
"""

from kestrel.pki.ca import init, issue_client, load_ca, sign_client
from kestrel.pki.crl import Issued, issued, revoke, usable_clients
from kestrel.pki.paths import (
    DEFAULT_DATA,
    DEFAULT_PASSWORD,
    CertPaths,
    ClientPaths,
    check_name,
    in_dir,
    paths,
)
from kestrel.pki.tls import (
    client_ssl_context,
    common_name,
    pem_client_context,
    server_context,
    server_ssl_context,
)

__all__ = [
    "DEFAULT_DATA", "DEFAULT_PASSWORD", "CertPaths", "ClientPaths", "Issued", "check_name", "client_ssl_context",
    "common_name", "in_dir", "init", "issue_client", "issued", "load_ca", "paths", "pem_client_context", "revoke",
    "server_context", "server_ssl_context", "sign_client", "usable_clients",
]
