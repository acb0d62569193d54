"""MISB ST 1607 Amend / Segment local sets inside ST 0601 (tags 100, 101): items of the parent set."""

from __future__ import annotations

from . import st0601
from .localset import SetSpec

SPEC = SetSpec("ST1607", b"", st0601.TABLE, finish=st0601.SPEC.finish, arrange=st0601.SPEC.arrange)
