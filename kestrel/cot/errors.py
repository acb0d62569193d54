"""Errors of the CoT core.

Goal: one exception type for "this input is not a valid CoT event / TAK message" (`CotError`), and one
small record (`ProtocolError`) a connection hands back instead of raising, so the I/O shell can count,
log and decide (skip one event, or close the connection) without try/except around every call.
"""

from __future__ import annotations

from dataclasses import dataclass


class CotError(ValueError):
    """Invalid CoT XML, TAK protobuf or framing. The message says what was wrong, in one line."""


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """A problem on one connection. `fatal=False`: one bad event was skipped and counted, the stream
    goes on. `fatal=True`: the stream cannot continue (cap exceeded, framing lost); close it."""

    reason: str
    fatal: bool = False
