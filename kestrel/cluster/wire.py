"""What an event looks like on NATS (pure: no I/O). See docs/cluster.md for the subject map.

Subjects, per site (streams capturing the same subjects across a leaf node would each store
everything, so every site has its own):
- `kst.<site>.s.<key(uid, groups)>`: the stored picture; stream `KESTREL_<site>` keeps one message
  per subject (`max_msgs_per_subject=1`: the latest SA of a contact, the latest state of a marker or
  shape, or the deletion that removed it) and drops it at its stale time (per-message `Nats-TTL`).
  One subject per uid and sender's groups, as the router keeps them (a uid used in two groups is
  two items); a write or deletion that replaces an item of other groups is published on that
  item's subject too (receivers apply each numbered message once).
- `kst.<site>.l`: live only (chat, direct messages, anything not retained); core NATS, not stored;
  every process subscribes `kst.*.l`, so live traffic crosses leaf nodes while the link is up.
- `kst.<site>.lh`: live traffic of held groups (`--hold-groups`): this site's processes only.
- `kst.status`: `kestrel serve --status` asks, every process answers (crosses leaf nodes).
- `kst.replay`: after a cut (an edge's link back, a process back on its NATS) a process asks every
  process to publish its live messages since a time again; receivers drop the ones they had.

Payload: TAK protocol v1 (a serialized TakMessage, about half the bytes of XML), or CoT XML
(`K-Fmt: xml`) for the rare event protobuf cannot carry, and on one machine (`--workers`, no site
link: our XML encoder is ~5x cheaper in Python and loopback bytes are free). A site link always
sends protobuf. Headers: `K-Groups` (the sender's groups), `K-Origin` (the site
where a client posted it), `K-Src` + `K-Seq` (who numbered it: a process `n:<hex>` with its own
counter, or a site `@<site>` with its stream sequence): a receiver applies each (src, seq) once and
in order, whatever JetStream redelivers. Worst case: O(len(event)) per message.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

from kestrel.cot.event import Event
from kestrel.cot.proto import decode_payload, encode_payload
from kestrel.cot.xml import encode_event, parse_event

URL_FILE = "cluster.url"  # in the data dir: written by --workers, read by --status
SITE_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
STATUS_SUBJECT = "kst.status"
REPLAY_SUBJECT = "kst.replay"  # {"since": unix seconds}: every process publishes its live messages since then again
H_GROUPS, H_ORIGIN, H_SRC, H_SEQ, H_FMT, H_TTL = "K-Groups", "K-Origin", "K-Src", "K-Seq", "K-Fmt", "Nats-TTL"
H_ID = "K-Id"  # the sender's certificate identity (owner of what it posts), when it has one
MAX_TTL_S = 7 * 24 * 3600  # a deletion is kept at most this long (it must outlive a cut link)


def check_site(name: str) -> str:
    if not SITE_RE.match(name):
        raise ValueError(f"site name {name!r}: use 1-32 letters, digits, '-' or '_'")
    return name


def stream_name(site: str) -> str:
    return f"KESTREL_{site}"


def stored_filter(site: str) -> str:
    return f"kst.{site}.s.>"


def key(uid: str) -> str:
    """A subject token for any uid (uids may hold '.', '*', '>' or spaces)."""
    return hashlib.sha1(uid.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def stored_subject(site: str, uid: str, groups: frozenset[str] | None = None) -> str:
    """The subject of the retained item `uid` stored by a sender in `groups` (None: by uid only)."""
    return f"kst.{site}.s.{key(uid if groups is None else uid + chr(0) + chr(10).join(sorted(groups)))}"


def live_subject(site: str) -> str:
    return f"kst.{site}.l"


def held_subject(site: str) -> str:
    return f"kst.{site}.lh"


LIVE_ALL_SITES = "kst.*.l"


def origin_of_subject(subject: str) -> str:
    """`kst.<site>.…` -> site."""
    return subject.split(".", 2)[1]


@dataclass(slots=True)
class Envelope:
    event: Event
    groups: frozenset[str]
    origin: str  # site where a client posted it
    src: str  # numbering source: "n:<process>" or "@<site>"
    seq: int
    identity: str | None = None


def encode_groups(groups: frozenset[str]) -> str:
    return ",".join(quote(g, safe="") for g in sorted(groups))


def decode_groups(text: str) -> frozenset[str]:
    return frozenset(unquote(g) for g in text.split(",") if g)


def ttl_seconds(stale_ms: int, now_ms: int) -> int:
    """Seconds a stored message lives: until the event's stale time (at least 1 s)."""
    return max(1, min(MAX_TTL_S, -(-(stale_ms - now_ms) // 1000)))


def payload_of(event: Event, fmt: str) -> tuple[bytes, str]:
    """(payload, its format): `fmt` "proto" falls back to "xml" for what protobuf cannot carry."""
    if fmt == "proto":
        try:
            return encode_payload(event), "proto"
        except ValueError:  # e.g. a time before 1970: protobuf cannot carry it, XML can
            pass
    return encode_event(event), "xml"  # with the prolog: byte for byte what an XML client gets


def xml_seed(payload: bytes, headers: dict[str, str] | None) -> dict[str, bytes] | None:
    """An XML payload is byte for byte `encode_for("xml", event)`: the router sends it as it is."""
    return {"xml": payload} if headers and headers.get(H_FMT) == "xml" else None


def event_of(payload: bytes, headers: dict[str, str]) -> Event:
    return parse_event(payload) if headers.get(H_FMT) == "xml" else decode_payload(payload)


def encode(env: Envelope, *, ttl_s: int | None = None, fmt: str = "xml") -> tuple[bytes, dict[str, str]]:
    """Envelope -> (payload, headers). `ttl_s`: set `Nats-TTL` (stored subjects only)."""
    headers = {H_GROUPS: encode_groups(env.groups), H_ORIGIN: env.origin, H_SRC: env.src, H_SEQ: str(env.seq)}
    payload, used = payload_of(env.event, fmt)
    if used == "xml":
        headers[H_FMT] = "xml"
    if env.identity is not None:
        headers[H_ID] = quote(env.identity, safe="")
    if ttl_s is not None:
        headers[H_TTL] = str(ttl_s)
    return payload, headers


def numbering(headers: dict[str, str] | None) -> tuple[str, int]:
    """(K-Src, K-Seq) of a message, without decoding it. ValueError if missing."""
    h = headers or {}
    try:
        return h[H_SRC], int(h[H_SEQ])
    except (KeyError, ValueError) as exc:
        raise ValueError(f"missing or bad numbering header ({exc})") from None


def decode(payload: bytes, headers: dict[str, str] | None) -> Envelope:
    """(payload, headers) -> Envelope. ValueError (CotError) on anything malformed."""
    h = headers or {}
    try:
        src, seq = h[H_SRC], int(h[H_SEQ])
        origin, groups = h[H_ORIGIN], decode_groups(h[H_GROUPS])
    except (KeyError, ValueError) as exc:
        raise ValueError(f"missing or bad Kestrel header ({exc})") from None
    if not groups:
        raise ValueError("message without groups")
    event = event_of(payload, h)
    identity = unquote(h[H_ID]) if H_ID in h else None
    return Envelope(event, groups, origin, src, seq, identity)
