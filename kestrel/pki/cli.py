"""`kestrel certs init|client|revoke|list`: thin handlers over kestrel.pki.

Errors are `kestrel.errors` types raised by the library (or here for flags); the top-level CLI
prints them as one line on stderr and exits 2. Keys and passwords are never printed.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from kestrel.errors import BadInput
from kestrel.pki.paths import DEFAULT_DATA, DEFAULT_PASSWORD


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("certs", help="create the CA, server and client certificates for TLS")
    sub = p.add_subparsers(dest="certs_command", required=True)

    pi = sub.add_parser("init", help="create the CA and the server certificate under DATA/certs")
    _data_arg(pi)
    pi.add_argument(
        "--hostname", action="extend", nargs="+", default=[], metavar="H",
        help="extra DNS names or IP addresses for the server cert (localhost and 127.0.0.1 are always in)",
    )
    g = pi.add_mutually_exclusive_group()
    g.add_argument("--force", action="store_true", help="replace an existing CA (every old client cert stops working)")
    g.add_argument("--server-only", action="store_true",
                   help="keep the existing CA, re-issue only the server certificate (e.g. new --hostname)")
    _password_args(pi, "truststore-root.p12")
    pi.set_defaults(func=_cmd_init)

    pc = sub.add_parser("client", help="issue a client certificate (PEM + .p12) signed by the CA")
    pc.add_argument("name", help="client name, also the certificate CN that groups are configured by")
    _data_arg(pc)
    _password_args(pc, "NAME.p12")
    pc.add_argument("--force", action="store_true",
                    help="re-issue an existing client (new key; the old cert stays valid until revoked)")
    pc.add_argument("--package", action="store_true",
                    help="also write clients/NAME.zip, an ATAK data package that sets up the TLS connection")
    pc.add_argument("--host", help="with --package: the server address ATAK connects to (required)")
    pc.add_argument("--port", type=int, default=8089, help="with --package: the TLS port (default 8089)")
    pc.set_defaults(func=_cmd_client)

    pr = sub.add_parser("revoke", help="revoke NAME's client certificates (CRL; takes effect on server restart)")
    pr.add_argument("name", help="client name given to `kestrel certs client`")
    _data_arg(pr)
    pr.set_defaults(func=_cmd_revoke)

    pl = sub.add_parser("list", help="list issued client certificates: name, serial, expiry, revoked")
    _data_arg(pl)
    pl.set_defaults(func=_cmd_list)


def _data_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="data dir (default ./kestrel-data)")


def _password_args(p: argparse.ArgumentParser, what: str) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--password", help=f"password of {what} (default: TAK's usual '{DEFAULT_PASSWORD}')")
    g.add_argument("--password-file", type=Path, help="read that password from the first line of a file")


def _password(args: argparse.Namespace) -> str:
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


def _os_error(exc: OSError, data: Path) -> BadInput:
    return BadInput(f"{exc.filename or data}: {exc.strerror or exc}")


def _cmd_init(args: argparse.Namespace) -> int:
    from kestrel.pki.ca import init

    try:
        p, new_ca = init(args.data, args.hostname, force=args.force, server_only=args.server_only,
                         password=_password(args))
    except BadInput as exc:
        if str(exc).startswith("bad hostname"):
            raise BadInput(f"--hostname: {exc}") from None
        raise
    except OSError as exc:
        raise _os_error(exc, args.data) from None
    print(f"{'created' if new_ca else 'kept existing'} CA: {p.ca_cert}")
    print(f"server certificate: {p.server_cert} (key {p.server_key}, mode 0600)")
    print(f"ATAK trust store: {p.truststore}")
    print(f"next: kestrel certs client NAME --data {args.data}")
    return 0


def _cmd_client(args: argparse.Namespace) -> int:
    from kestrel.pki import datapackage
    from kestrel.pki.ca import issue_client
    from kestrel.pki.paths import check_hostnames, check_name, paths

    check_name(args.name)
    if args.package and not args.host:
        raise BadInput("--package: also give --host, the address ATAK connects to")
    if args.package:
        try:
            check_hostnames([args.host])
        except BadInput as exc:
            raise BadInput(f"--host: {exc}") from None
        if not 0 < args.port < 65536:
            raise BadInput(f"--port: {args.port} is not a TCP port")
    password = _password(args)
    try:
        c = issue_client(args.data, args.name, password=password, force=args.force)
    except OSError as exc:
        raise _os_error(exc, args.data) from None
    p = paths(args.data)
    print(f"client certificate: {c.cert} (key {c.key}, mode 0600)")
    print(f"PKCS#12 for ATAK/iTAK/WinTAK: {c.p12} (with the CA; trust store {p.truststore})")
    print(f"pytak: PYTAK_TLS_CLIENT_CERT={c.cert} PYTAK_TLS_CLIENT_KEY={c.key} PYTAK_TLS_CLIENT_CAFILE={p.ca_cert}")
    if args.package:
        z = datapackage.write(args.data, args.name, args.host, args.port, password)
        print(f"ATAK data package: {z} (mode 0600; server {args.host}:{args.port}:ssl; holds the key and password)")
    return 0


def _cmd_revoke(args: argparse.Namespace) -> int:
    from kestrel.pki.crl import revoke
    from kestrel.pki.paths import paths

    try:
        new = revoke(args.data, args.name)
    except OSError as exc:
        raise _os_error(exc, args.data) from None
    what = ", ".join(f"{s:x}" for s in new) if new else "nothing new (already revoked)"
    print(f"revoked {args.name}: {what}; CRL {paths(args.data).crl}")
    print("restart `kestrel serve` for TLS listeners to load it")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from kestrel.pki.crl import issued

    try:
        rows = issued(args.data)
    except OSError as exc:
        raise _os_error(exc, args.data) from None
    print(f"{'name':<20} {'serial':<40} {'expires':<10} revoked")
    for r in rows:
        print(f"{r.name:<20} {r.serial:<40x} {r.not_after.date().isoformat():<10} {'yes' if r.revoked else 'no'}")
    return 0
