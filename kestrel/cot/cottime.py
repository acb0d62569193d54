"""CoT timestamps: ISO-8601 text <-> integer milliseconds since the Unix epoch (UTC).

Goal: exact and fast (no datetime objects on the hot path); the encoder always writes
`YYYY-MM-DDTHH:MM:SS.mmmZ`. The parser accepts `Z`, a numeric offset, or no zone (taken as UTC) and any
number of fraction digits (truncated to milliseconds, the resolution of `Event`).
Worst case: O(len(text)); one regex match per timestamp.
"""

from __future__ import annotations

import re

from kestrel.cot.errors import CotError

_ISO = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:[.,](\d+))?(?:([Zz])|([+-])(\d\d):?(\d\d))?"
)
MIN_MS = -62135596800000  # 0001-01-01T00:00:00.000Z
MAX_MS = 253402300799999  # 9999-12-31T23:59:59.999Z
_MDAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _leap(y: int) -> bool:
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 for a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _civil_from_days(z: int) -> tuple[int, int, int]:
    z += 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    return yoe + era * 400 + (m <= 2), m, d


def parse_time(text: str) -> int:
    """ISO-8601 CoT time -> ms since epoch. Raises CotError on anything else."""
    if len(text) == 24 and text[23] == "Z" and text[19] == "." and text[10] == "T":  # the usual form
        try:
            y, mo, d = int(text[0:4]), int(text[5:7]), int(text[8:10])
            hh, mi, ss, ms = int(text[11:13]), int(text[14:16]), int(text[17:19]), int(text[20:23])
        except ValueError:
            pass
        else:
            if (y > 0 and text[4] == text[7] == "-" and text[13] == text[16] == ":" and text[:19].isascii()
                    and text[0:4].isdigit() and 1 <= mo <= 12 and hh < 24 and mi < 60 and ss <= 60
                    and 1 <= d <= (29 if mo == 2 and _leap(y) else _MDAYS[mo - 1])
                    and text[20:23].isdigit() and text[5:7].isdigit() and text[8:10].isdigit()
                    and text[11:13].isdigit() and text[14:16].isdigit() and text[17:19].isdigit()):
                return (((_days_from_civil(y, mo, d) * 24 + hh) * 60 + mi) * 60 + ss) * 1000 + ms
    m = _ISO.fullmatch(text.strip())
    if m is None:
        raise CotError(f"bad CoT time {text[:40]!r}")
    y, mo, d, hh, mi, ss = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    if not (1 <= mo <= 12 and 1 <= d <= (29 if mo == 2 and _leap(y) else _MDAYS[mo - 1])):
        raise CotError(f"bad CoT date {text[:40]!r}")
    if hh > 23 or mi > 59 or ss > 60:  # 60: a leap second, carried into the next minute
        raise CotError(f"bad CoT time of day {text[:40]!r}")
    frac = m.group(7)
    ms = int((frac + "00")[:3]) if frac else 0
    total = (((_days_from_civil(y, mo, d) * 24 + hh) * 60 + mi) * 60 + ss) * 1000 + ms
    if m.group(9):
        off = (int(m.group(10)) * 60 + int(m.group(11))) * 60_000
        total -= off if m.group(9) == "+" else -off
    if not MIN_MS <= total <= MAX_MS:
        raise CotError(f"CoT time outside years 1..9999: {text[:40]!r}")
    return total


def format_time(ms: int) -> str:
    """ms since epoch -> `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC). CotError outside years 1..9999."""
    if not MIN_MS <= ms <= MAX_MS:
        raise CotError(f"time {ms} ms is outside years 1..9999")
    days, rem = divmod(int(ms), 86_400_000)
    y, mo, d = _civil_from_days(days)
    sec, milli = divmod(rem, 1000)
    hh, sec = divmod(sec, 3600)
    mi, ss = divmod(sec, 60)
    return f"{y:04d}-{mo:02d}-{d:02d}T{hh:02d}:{mi:02d}:{ss:02d}.{milli:03d}Z"
