"""Who gets what: groups, `<marti><dest>`, the contact table and the retained picture.

Pure bookkeeping called from the event loop; it never awaits. A peer is anything with an `id`,
`groups`, a `format` ("xml" | "proto") and a non-blocking `send(bytes, key) -> bool` (a session's
bounded outbound queue; `key` is the uid of retained state, which a later message for the same uid
supersedes, else None). Rules, as TAK Server's streaming path does them:

- broadcast: every peer sharing at least one group with the sender, never the sender itself;
- `<marti><dest callsign=…|uid=…>`: only those contacts (still only within shared groups); a
  detail that mentions `marti` but cannot be read goes to nobody (fail closed, `route.unreadable`);
- the contact table maps uid -> callsign -> peer, learned from each peer's own SA
  (`a-*` with `<contact callsign>` and no `<link relation="p-p">`) and follows callsign changes;
- each message is encoded once per wire format, not once per recipient.

Retained (sent to a client when it joins, persisted by `Store` until stale): the latest event per
uid, except pings/control (`t-*`), chat (`b-t-f*`) and addressed (`marti dest`) messages.
`t-x-d-d` deletes the items it links to. Worst cases: a broadcast is O(members of the sender's
groups); a join is O(retained items); memory is capped at `max_retained` items (oldest dropped).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from kestrel.cot.event import Event
from kestrel.server import detail as detail_mod
from kestrel.server import logs
from kestrel.server.store import Row, Store

NOT_RETAINED = ("t-", "b-t-f")  # control (ping, negotiation, delete), chat
DELETE_TYPE = "t-x-d-d"


class Peer(Protocol):
    id: int
    groups: frozenset[str]

    @property
    def format(self) -> str: ...

    def send(self, data: bytes, key: str | None = None) -> bool: ...


Encoder = Callable[[str, Event], bytes]


@dataclass(slots=True)
class Retained:
    event: Event
    groups: frozenset[str]
    wire: dict[str, bytes] = field(default_factory=dict)  # format -> encoded bytes (lazy cache)

    def encoded(self, fmt: str, encode: Encoder) -> bytes:
        data = self.wire.get(fmt)
        if data is None:
            data = self.wire[fmt] = encode(fmt, self.event)
        return data


@dataclass(slots=True)
class Contact:
    uid: str
    callsign: str
    peer_id: int


@dataclass(slots=True)
class Stats:
    routed: int = 0
    delivered: int = 0
    addressed: int = 0
    retained_dropped: int = 0
    unencodable: int = 0
    unreadable: int = 0  # mentioned `marti` but the detail could not be read: delivered to nobody


class Router:
    def __init__(
        self,
        encode: Encoder,
        store: Store | None = None,
        max_retained: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._encode = encode
        self._store = store
        self._max_retained = max_retained
        self._clock = clock
        self.peers: dict[int, Peer] = {}
        self._members: dict[str, dict[int, Peer]] = {}  # group -> peers in it
        self.contacts: dict[str, Contact] = {}  # uid -> contact
        self._by_callsign: dict[str, set[str]] = {}  # callsign -> uids
        self._uids_of: dict[int, set[str]] = {}  # peer id -> its contact uids
        self.retained: dict[str, Retained] = {}  # uid -> latest retained event
        self.stats = Stats()

    def attach_store(self, store: Store) -> None:
        """Persist retained items from now on (the server opens the store at start)."""
        self._store = store

    # -- peers ---------------------------------------------------------------------------------

    def join(self, peer: Peer) -> list[Retained]:
        """Register `peer`; return what it should get first (reachable retained items, SA first)."""
        self.peers[peer.id] = peer
        for g in peer.groups:
            self._members.setdefault(g, {})[peer.id] = peer
        self._uids_of[peer.id] = set()
        now_ms = int(self._clock() * 1000)
        items = [
            r for r in self.retained.values()
            if r.event.stale > now_ms and not r.groups.isdisjoint(peer.groups)
        ]
        items.sort(key=lambda r: not r.event.type.startswith("a-"))  # stable: SA first
        return items

    def leave(self, peer: Peer) -> None:
        """Forget `peer` and its contacts (idempotent)."""
        if self.peers.pop(peer.id, None) is None:
            return
        for g in peer.groups:
            members = self._members.get(g)
            if members is not None:
                members.pop(peer.id, None)
                if not members:
                    del self._members[g]
        for uid in self._uids_of.pop(peer.id, ()):
            contact = self.contacts.pop(uid, None)
            if contact is not None:
                self._unindex(contact)

    def callsign_of(self, peer: Peer) -> str | None:
        for uid in self._uids_of.get(peer.id, ()):
            return self.contacts[uid].callsign
        return None

    def _unindex(self, contact: Contact) -> None:
        uids = self._by_callsign.get(contact.callsign)
        if uids is not None:
            uids.discard(contact.uid)
            if not uids:
                del self._by_callsign[contact.callsign]

    def _learn_contact(self, peer: Peer, uid: str, callsign: str) -> None:
        old = self.contacts.get(uid)
        if old is not None:
            if old.callsign == callsign and old.peer_id == peer.id:
                return
            self._unindex(old)
            self._uids_of.get(old.peer_id, set()).discard(uid)
        self.contacts[uid] = Contact(uid, callsign, peer.id)
        self._by_callsign.setdefault(callsign, set()).add(uid)
        self._uids_of.setdefault(peer.id, set()).add(uid)
        if old is None or old.callsign != callsign:
            logs.info("contact", peer=peer.id, uid=uid, callsign=callsign, was=old.callsign if old else None)

    # -- routing -------------------------------------------------------------------------------

    def route(self, event: Event, sender: Peer | None, groups: frozenset[str]) -> int:
        """Deliver `event` from `sender` (None: a UDP datagram) with the sender's `groups`.

        Returns the number of peers it was queued for.
        """
        self.stats.routed += 1
        is_delete = event.type == DELETE_TYPE
        addr = detail_mod.inspect(event.detail, want_links=is_delete)
        if addr.unreadable is not None:
            # Fail closed: it may be addressed and we cannot tell to whom -> nobody gets it, and it
            # is neither retained nor allowed to change the contact table or delete anything.
            n = self.stats.unreadable = self.stats.unreadable + 1
            if n <= 10 or n % 1000 == 0:  # a hostile sender must not flood the log
                logs.warning("route.unreadable", uid=event.uid, type=event.type, reason=addr.unreadable,
                             sender=sender.id if sender is not None else "udp", count=n)
            return 0
        if sender is not None and addr.callsign and event.type.startswith("a-") and not addr.parent_link:
            self._learn_contact(sender, event.uid, addr.callsign)
        if is_delete:
            for uid in addr.link_uids:
                self._forget(uid)
        wire: dict[str, bytes] = {}
        key: str | None = None  # set for retained state: a newer message with this key supersedes it
        if addr.addressed:
            self.stats.addressed += 1
            recipients: Iterator[Peer] = self._addressed(addr, sender, groups)
        else:
            item = self._retain(event, groups)
            if item is not None:
                wire = item.wire  # share the encodings with the retained copy (encode once)
                key = event.uid
            recipients = self._broadcast(sender, groups)
        n = 0
        for peer in recipients:
            fmt = peer.format
            data = wire.get(fmt)
            if data is None:
                data = wire[fmt] = self._encode_or_skip(fmt, event)
            if data and peer.send(data, key):
                n += 1
        self.stats.delivered += n
        return n

    def _encode_or_skip(self, fmt: str, event: Event) -> bytes:
        """Encoded bytes, or b"" when this event cannot be written in `fmt` (logged, skipped)."""
        try:
            return self._encode(fmt, event)
        except ValueError as exc:  # CotError: e.g. a time before 1970 has no protobuf form
            self.stats.unencodable += 1
            logs.warning("route.unencodable", uid=event.uid, type=event.type, format=fmt, reason=str(exc))
            return b""

    def _broadcast(self, sender: Peer | None, groups: frozenset[str]) -> Iterator[Peer]:
        sender_id = sender.id if sender is not None else -1
        if len(groups) == 1:
            (g,) = groups
            # list(): a send may drop a slow peer (and so mutate the table) mid-iteration.
            for peer in list(self._members.get(g, {}).values()):
                if peer.id != sender_id:
                    yield peer
            return
        seen: set[int] = {sender_id}
        for g in groups:
            for peer in list(self._members.get(g, {}).values()):
                if peer.id not in seen:
                    seen.add(peer.id)
                    yield peer

    def _addressed(self, addr: detail_mod.Addressing, sender: Peer | None, groups: frozenset[str]) -> Iterator[Peer]:
        uids = set(addr.dest_uids)
        for cs in addr.dest_callsigns:
            uids.update(self._by_callsign.get(cs, ()))
        sender_id = sender.id if sender is not None else -1
        seen: set[int] = {sender_id}
        for uid in uids:
            contact = self.contacts.get(uid)
            if contact is None or contact.peer_id in seen:
                continue
            seen.add(contact.peer_id)
            peer = self.peers.get(contact.peer_id)
            if peer is not None and not peer.groups.isdisjoint(groups):
                yield peer

    # -- retained picture ----------------------------------------------------------------------

    def _retain(self, event: Event, groups: frozenset[str]) -> Retained | None:
        if event.type.startswith(NOT_RETAINED) or event.stale <= int(self._clock() * 1000):
            return None
        retained = self.retained
        retained.pop(event.uid, None)  # re-insert: dict order is "last written"
        item = retained[event.uid] = Retained(event, groups)
        if len(retained) > self._max_retained:
            oldest = next(iter(retained))
            self._forget(oldest)
            self.stats.retained_dropped += 1
        if self._store is not None:
            self._store.put(Row(event.uid, event.type, event.stale, groups, item.encoded("xml", self._encode)))
        return item

    def _forget(self, uid: str) -> None:
        if self.retained.pop(uid, None) is not None and self._store is not None:
            self._store.delete(uid)

    def restore(self, item: Retained) -> None:
        """Put back a retained item read from the store at start-up (not re-persisted)."""
        self.retained[item.event.uid] = item

    def expire(self) -> int:
        """Drop stale retained items. O(retained)."""
        now_ms = int(self._clock() * 1000)
        stale = [uid for uid, r in self.retained.items() if r.event.stale <= now_ms]
        for uid in stale:
            self._forget(uid)
        return len(stale)
