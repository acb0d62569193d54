"""`kestrel` command line: parses arguments and hands off; no logic lives here.

Each package owns its sub-commands in its own `cli.py` with a `register(subparsers)` function,
so the packages can grow independently. Heavy imports (video, numpy) happen inside the handlers,
so `kestrel --help` and `kestrel serve` start fast.

Exit codes: 0 ok, 2 bad input (a one-line reason on stderr naming the file), 1 anything else.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# (module, attribute) of every sub-command group's register function.
_GROUPS: tuple[str, ...] = (
    "kestrel.server.cli",
    "kestrel.marti.cli",  # after server.cli: adds `certs enroll-link`
    "kestrel.fmv.cli",
    "kestrel.ped.cli",
    "kestrel.workbench.cli",
    "kestrel.demo",
)


class BadInput(Exception):
    """Raised by handlers for bad user input; printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kestrel", description="Kestrel: drone video (PED) and a TAK-compatible server (TEN) on one laptop.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in _GROUPS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a package still being written
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc = args.func(args)
    except BadInput as exc:
        print(f"kestrel: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
