"""Kestrel's own errors: library code raises these, only the CLI turns them into exit codes.

Every message is one line that names the file, port, key or name at fault and what to do about
it; the CLI prints `kestrel: error: MESSAGE` on stderr and exits with `exit_code` (2 for all of
them: the user can fix the input). Each class is also the matching built-in (`ValueError`,
`LookupError`), so callers that catch those keep working. Nothing here imports anything of
Kestrel: every package may import it.
"""

from __future__ import annotations


class KestrelError(Exception):
    """Base of every error the CLI reports as one line (never a traceback)."""

    exit_code = 2


class BadInput(KestrelError, ValueError):
    """Unusable input: a file that is not what it should be, a bad flag or config value."""


class NotFound(BadInput, LookupError):
    """Something named does not exist: a file, a client certificate, a CA, a run folder."""


class Conflict(BadInput):
    """Doing it would replace or clash with something that exists (a CA, a client, a used port)."""


class PortInUse(Conflict):
    """A listening port is taken; the message names the port and the flag that changes it."""

    def __init__(self, port: int, flag: str, host: str = "127.0.0.1") -> None:
        super().__init__(f"port {port} on {host} is already in use (another program listens there); "
                         f"choose another port with {flag}")
        self.port, self.flag, self.host = port, flag, host
