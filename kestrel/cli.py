"""`kestrel` command line: parses arguments and hands off; no logic lives here.

Each package owns its sub-commands in its own `cli.py` with a `register(subparsers)` function,
so the packages can grow independently. Heavy imports (video, numpy) happen inside the handlers,
so `kestrel --help` and `kestrel serve` start fast.

Only this module turns errors into exit codes: library code raises `kestrel.errors` types, and
every `KestrelError` becomes one line `kestrel: error: ...` on stderr naming the file, port or key,
exit code 2. 0 ok, 1 anything else (a command's own failure), 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from kestrel.errors import BadInput, KestrelError

__all__ = ["BadInput", "build_parser", "main"]  # BadInput: moved to kestrel.errors, kept for old callers

# (module, attribute) of every sub-command group's register function.
_GROUPS: tuple[str, ...] = (
    "kestrel.server.cli",
    "kestrel.pki.cli",
    "kestrel.marti.cli",  # after pki.cli: adds `certs enroll-link`
    "kestrel.fmv.cli",
    "kestrel.ped.cli",
    "kestrel.workbench.cli",
    "kestrel.demo",
)


def build_parser() -> argparse.ArgumentParser:
    from importlib.metadata import PackageNotFoundError, version

    parser = argparse.ArgumentParser(prog="kestrel", description="Kestrel: drone video (PED) and a TAK-compatible server (TEN) on one laptop.")
    try:
        ver = version("kestrel")
    except PackageNotFoundError:  # running from a source tree that was never installed
        ver = "unknown"
    parser.add_argument("--version", action="version", version=f"kestrel {ver}")
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
    except KestrelError as exc:
        print(f"kestrel: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
