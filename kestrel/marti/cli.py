"""`kestrel users add|list|remove` and `kestrel certs enroll-link`."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any

DEFAULT_DATA = Path("kestrel-data")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("users", help="users for ATAK enrollment (HTTP Basic auth) and their groups")
    sub = p.add_subparsers(dest="users_command", required=True)
    pa = sub.add_parser("add", help="add a user (or set a new password and groups)")
    pa.add_argument("name", help="user name: also the CN of the certificates this user enrolls")
    pa.add_argument("--password-file", type=Path, metavar="F",
                    help="read the password from the first line of F (default: ask on the terminal)")
    pa.add_argument("--group", action="extend", nargs="+", default=[], metavar="G",
                    help="groups of this user (and of the certificates it enrolls); default: the default groups")
    pa.add_argument("--data", type=Path, default=DEFAULT_DATA, help="data dir (default ./kestrel-data)")
    pa.set_defaults(func=_cmd_add)
    pl = sub.add_parser("list", help="list users and their groups (never passwords)")
    pl.add_argument("--data", type=Path, default=DEFAULT_DATA, help="data dir (default ./kestrel-data)")
    pl.set_defaults(func=_cmd_list)
    pr = sub.add_parser("remove", help="remove a user (certificates it enrolled stay valid: revoke them)")
    pr.add_argument("name")
    pr.add_argument("--data", type=Path, default=DEFAULT_DATA, help="data dir (default ./kestrel-data)")
    pr.set_defaults(func=_cmd_remove)

    serve = subparsers.choices.get("serve")  # `kestrel serve`: the Marti listeners start with it
    if serve is not None:
        for flag, default, what in (("--http-port", 8080, "plain HTTP Marti API (data packages, video)"),
                                    ("--https-port", 8443, "HTTPS Marti API with client certificates"),
                                    ("--enroll-port", 8446, "HTTPS certificate enrollment (Basic auth)")):
            serve.add_argument(flag, type=_port_or_off, metavar="P", help=f"{what} (default {default}; 'off' disables)")
        from kestrel.server import cli as server_cli

        server_cli.EXTENSIONS["marti"] = _extension

    certs = subparsers.choices.get("certs")  # `kestrel certs`, registered by kestrel.pki.cli
    certs_sub = next((a for a in getattr(certs, "_actions", ()) if isinstance(a, argparse._SubParsersAction)), None)
    if certs_sub is not None:
        pe = certs_sub.add_parser("enroll-link", help="print ATAK's tak:// quick-connect (QR code) link for enrollment")
        pe.add_argument("--host", required=True, help="the server address ATAK connects to")
        pe.add_argument("--user", help="pre-fill this user name")
        pe.add_argument("--password-file", type=Path, metavar="F",
                        help="also put the user's password (first line of F) in the link: one tap, but hand it over like a password")
        pe.set_defaults(func=_cmd_enroll_link)


def _port_or_off(value: str) -> int | str:
    if value == "off":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number or 'off'") from None


def _extension(cfg: Any, args: argparse.Namespace) -> Any:
    """The Marti API for `kestrel serve`: flags over the [marti] table. Raises ConfigError."""
    from kestrel.marti import config as marti_config
    from kestrel.marti.service import Marti

    for kind in ("http", "https", "enroll"):
        value = getattr(args, f"{kind}_port", None)
        if value is not None:
            cfg.marti[f"{kind}_port"] = value
    return Marti(marti_config.parse(cfg, str(getattr(args, "config", None) or "config")))


def _read_password(path: Path | None, confirm: bool) -> str:
    from kestrel.errors import BadInput

    if path is not None:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise BadInput(f"{path}: {exc.strerror}") from None
        pw = lines[0] if lines else ""
        if not pw:
            raise BadInput(f"{path}: the first line (the password) is empty")
        return pw
    if not sys.stdin.isatty():
        raise BadInput("--password-file: no terminal to ask the password on; give a file")
    pw = getpass.getpass("password: ")
    if confirm and getpass.getpass("again: ") != pw:
        raise BadInput("the two passwords differ")
    if not pw:
        raise BadInput("the password must not be empty")
    return pw


def _cmd_add(args: argparse.Namespace) -> int:
    from kestrel.errors import BadInput
    from kestrel.marti.users import UserError, Users, check_name

    try:
        check_name(args.name)
        pw = _read_password(args.password_file, confirm=True)
        new = Users(args.data).add(args.name, pw, tuple(args.group))
    except UserError as exc:
        raise BadInput(str(exc)) from None
    except OSError as exc:
        raise BadInput(f"{exc.filename or args.data}: {exc.strerror or exc}") from None
    groups = ", ".join(args.group) or "the default groups"
    print(f"{'added' if new else 'updated'} user {args.name} (groups: {groups}); ATAK enrolls on port 8446")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from kestrel.errors import BadInput
    from kestrel.marti.users import UserError, Users

    try:
        users = Users(args.data).all()
    except UserError as exc:
        raise BadInput(str(exc)) from None
    print(f"{'name':<24} groups")
    for u in users:
        print(f"{u.name:<24} {', '.join(u.groups) or '(default)'}")
    return 0


def _cmd_remove(args: argparse.Namespace) -> int:
    from kestrel.errors import BadInput
    from kestrel.marti.users import UserError, Users

    try:
        gone = Users(args.data).remove(args.name)
    except UserError as exc:
        raise BadInput(str(exc)) from None
    if not gone:
        raise BadInput(f"no user named {args.name!r} in {Users(args.data).path}")
    print(f"removed user {args.name}; revoke its certificates with: kestrel certs revoke {args.name}")
    return 0


def _cmd_enroll_link(args: argparse.Namespace) -> int:
    from kestrel.errors import BadInput
    from kestrel.marti.enroll import enroll_link
    from kestrel.pki.paths import check_hostnames

    try:
        check_hostnames([args.host])
    except ValueError as exc:
        raise BadInput(f"--host: {exc}") from None
    pw = _read_password(args.password_file, confirm=False) if args.password_file else None
    print(enroll_link(args.host, args.user, pw))
    return 0
