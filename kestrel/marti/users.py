"""Users for HTTP Basic auth (enrollment on 8446) and their groups: `<data>/users.json` (0600).

`kestrel users add NAME [--password-file F] [--group G…]`, `users list`, `users remove NAME`.
Passwords are stored only as salted scrypt hashes (n=2^14, r=8, p=1, 16-byte salt), never in plain
text; the file is rewritten atomically. A user's groups are also the groups of every certificate
enrolled under that name (CN = user), on 8089 and 8443 alike.

Verifying costs ~50 ms of CPU and 16 MiB by design; the server runs it off the event loop and
remembers a success for `CACHE_SECONDS`, so ATAK's three enrollment requests cost one check.
An unknown user costs the same as a wrong password (no timing oracle for user names).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

FILE_NAME = "users.json"
N, R, P = 1 << 14, 8, 1
CACHE_SECONDS = 300.0
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # also a certificate CN and file name
_DUMMY = f"scrypt:{N}:{R}:{P}:" + base64.b64encode(b"\0" * 16).decode() + ":" + base64.b64encode(b"\0" * 32).decode()


class UserError(ValueError):
    """Bad user name, password or users file; the message says which."""


@dataclass(frozen=True, slots=True)
class User:
    name: str
    groups: tuple[str, ...]
    hash: str


def check_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise UserError(f"bad user name {name!r}: use 1-64 letters, digits, '.', '_' or '-', "
                        "starting with a letter or digit")
    return name


def hash_password(password: str, salt: bytes | None = None) -> str:
    if not password:
        raise UserError("the password must not be empty")
    salt = salt if salt is not None else os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=N, r=R, p=P, dklen=32)
    return f"scrypt:{N}:{R}:{P}:{base64.b64encode(salt).decode()}:{base64.b64encode(digest).decode()}"


def check_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt_b64, digest_b64 = stored.split(":")
        if kind != "scrypt":
            return False
        salt, want = base64.b64decode(salt_b64), base64.b64decode(digest_b64)
        got = hashlib.scrypt(password.encode(), salt=salt, n=int(n), r=int(r), p=int(p), dklen=len(want))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


class Users:
    """The users file; re-read when it changes on disk (so `kestrel users add` needs no restart)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / FILE_NAME
        self._users: dict[str, User] = {}
        self._stamp: tuple[int, int] | None = None
        self._ok: dict[tuple[str, bytes], float] = {}  # (name, sha256(password)) -> verified at

    # -- reading ---------------------------------------------------------------------------------

    def _load(self) -> dict[str, User]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._users, self._stamp = {}, None
            return self._users
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            try:
                raw = json.loads(self.path.read_text(encoding="utf-8"))
                users = {
                    name: User(name, tuple(u.get("groups", ())), str(u["hash"]))
                    for name, u in raw.get("users", {}).items()
                }
            except (OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
                raise UserError(f"{self.path}: not a readable users file ({exc})") from None
            self._users, self._stamp = users, stamp
            self._ok.clear()  # a password or user may have changed
        return self._users

    def get(self, name: str) -> User | None:
        return self._load().get(name)

    def all(self) -> list[User]:
        return sorted(self._load().values(), key=lambda u: u.name)

    def groups_of(self, name: str | None) -> frozenset[str] | None:
        """The user's groups (a certificate CN or Basic-auth name), or None when not a user or
        when the user has no groups of their own (then the listener's default applies)."""
        if not name:
            return None
        try:
            user = self._load().get(name)
        except UserError:
            return None
        return frozenset(user.groups) if user is not None and user.groups else None

    def verify(self, name: str, password: str) -> bool:
        """True when `password` is `name`'s. Slow on purpose (scrypt); call it off the event loop."""
        user = self._load().get(name)
        key = (name, hashlib.sha256(password.encode()).digest())
        now = time.monotonic()
        seen = self._ok.get(key)
        if user is not None and seen is not None and now - seen < CACHE_SECONDS:
            return True
        ok = check_password(password, user.hash if user is not None else _DUMMY) and user is not None
        if ok:
            if len(self._ok) > 10_000:
                self._ok.clear()
            self._ok[key] = now
        return ok

    # -- writing ---------------------------------------------------------------------------------

    def add(self, name: str, password: str, groups: tuple[str, ...] = ()) -> bool:
        """Add or replace a user. Returns True when the user is new."""
        check_name(name)
        for g in groups:
            if not g or any(c in g for c in "\n\r\t"):
                raise UserError(f"bad group name {g!r}")
        users = dict(self._load())
        new = name not in users
        users[name] = User(name, tuple(groups), hash_password(password))
        self._save(users)
        return new

    def remove(self, name: str) -> bool:
        users = dict(self._load())
        if users.pop(name, None) is None:
            return False
        self._save(users)
        return True

    def _save(self, users: dict[str, User]) -> None:
        raw = {"version": 1, "users": {u.name: {"hash": u.hash, "groups": list(u.groups)} for u in users.values()}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(raw, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self._stamp = None
        self._load()
