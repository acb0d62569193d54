"""The data dir: one server at a time (an exclusive lock naming its holder), and what it publishes.

Goal: two `kestrel serve` on one `--data` would both write `kestrel.db` and lose each other's
picture; the second must stop at once with a message naming the first (its pid). The lock is an
advisory `flock` on `<data>/kestrel.lock`, released by the kernel when the process dies (no stale
lock to clean after a crash). The file also says where the running server's metrics are
(`kestrel serve --status` reads it). Worst case: one small file read/write at start.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, TextIO

from kestrel.errors import BadInput

LOCK_NAME = "kestrel.lock"


class DataDirError(BadInput):
    """The data dir cannot be used; the message names the path and what to do."""


def prepare(data_dir: Path) -> None:
    """Create the data dir, or say clearly why it cannot be one (a file, no permission)."""
    if data_dir.exists() and not data_dir.is_dir():
        raise DataDirError(f"{data_dir}: is a file, not a directory (--data names the server's data directory)")
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataDirError(f"{data_dir}: cannot create the data directory ({exc.strerror or exc})") from None


class DataDirLock:
    """Held for the server's lifetime; `release()` (idempotent) unlocks and empties the file."""

    def __init__(self, path: Path, f: TextIO) -> None:
        self.path, self._f = path, f
        self.info: dict[str, Any] = {"pid": os.getpid()}

    @classmethod
    def acquire(cls, data_dir: Path) -> DataDirLock:
        path = data_dir / LOCK_NAME
        try:
            f = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held open while the server runs
        except OSError as exc:
            raise DataDirError(f"{path}: cannot open the lock file ({exc.strerror or exc})") from None
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no lock
            return cls(path, f)
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = read_info(data_dir).get("pid", "unknown")
            f.close()
            raise DataDirError(
                f"{data_dir}: in use by another kestrel server (pid {holder}); stop it or give this one "
                f"another --data directory"
            ) from None
        lock = cls(path, f)
        lock.write()
        return lock

    def write(self, **info: Any) -> None:
        """Record facts about the running server (pid, metrics address) in the lock file."""
        self.info.update(info)
        f = self._f
        f.seek(0)
        f.truncate()
        f.write(json.dumps(self.info) + "\n")
        f.flush()

    def release(self) -> None:
        if self._f.closed:
            return
        with contextlib.suppress(OSError):
            self._f.seek(0)
            self._f.truncate()
        self._f.close()  # closing drops the flock


def read_info(data_dir: Path) -> dict[str, Any]:
    """What the running server wrote into its lock file ({} when none or unreadable)."""
    try:
        text = (data_dir / LOCK_NAME).read_text(encoding="utf-8")
        info = json.loads(text) if text.strip() else {}
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def is_locked(data_dir: Path) -> bool:
    """True when a live process holds the data dir's lock."""
    path = data_dir / LOCK_NAME
    if not path.is_file():
        return False
    try:
        import fcntl
    except ImportError:  # pragma: no cover
        return bool(read_info(data_dir))
    with open(path, "a+", encoding="utf-8") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        return False
