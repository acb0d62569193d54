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
`t-x-d-d` deletes the items it links to. Memory is capped per group: `retained_bytes_per_group`
(accounted as XML + detail bytes + 1 KiB per item) and `max_retained` items; the group's oldest
items go first, so one group cannot evict another's picture.

Writes are access-controlled (a sender is its groups plus, over TLS, its certificate CN, the
"identity"); a refused event is dropped whole (not relayed: clients act on deletes too), counted
and logged at most once per LOG_EVERY:
- replacing or deleting a stored item needs a group shared with the item's sender
  (`dropped_foreign_write`), and the item's identity when it has one (`dropped_identity`);
- a uid held by a connected contact cannot be announced by another connection outside its groups
  or, if that contact is authenticated, by another identity (`dropped_identity`); an
  authenticated identity may claim a uid or callsign that only unauthenticated senders hold;
- a callsign held by an authenticated contact cannot be announced by an unauthenticated one, so
  nobody receives another's direct messages by announcing their callsign (`dropped_identity`);
- `<marti>` without a usable `<dest callsign|uid>` goes to nobody (`dropped_unaddressable`).
Worst cases: a broadcast is O(members of the sender's groups); a join is O(retained items);
eviction O(1) per evicted item.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from kestrel.cot.event import Event
from kestrel.server import detail as detail_mod
from kestrel.server import logs
from kestrel.server.metrics import Metrics
from kestrel.server.store import Row, Store

NOT_RETAINED = ("t-", "b-t-f")  # control (ping, negotiation, delete), chat
DELETE_TYPE = "t-x-d-d"
ITEM_OVERHEAD = 1024  # bytes accounted per retained item beyond its XML and detail (objects, dicts)


class Peer(Protocol):
    id: int
    groups: frozenset[str]

    @property
    def format(self) -> str: ...

    def send(self, data: bytes, key: str | None = None) -> bool: ...


Encoder = Callable[[str, Event], bytes]


@dataclass(slots=True, weakref_slot=True)  # weakref: a joiner's pending snapshot must not keep evicted items alive
class Retained:
    event: Event
    groups: frozenset[str]
    wire: dict[str, bytes] = field(default_factory=dict)  # format -> encoded bytes (lazy cache)
    owner: str | None = None  # certificate CN of the sender (None: unauthenticated)
    size: int = 0  # bytes accounted against each of its groups

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
        *,
        retained_bytes_per_group: int = 64 << 20,
        metrics: Metrics | None = None,
    ) -> None:
        self._encode = encode
        self._store = store
        self._max_retained = max_retained
        self._max_bytes = retained_bytes_per_group
        self._clock = clock
        self.metrics = metrics if metrics is not None else Metrics()
        self.group_bytes: dict[str, int] = {}  # group -> bytes of its retained items
        self._group_items: dict[str, dict[str, None]] = {}  # group -> its retained uids, oldest first
        self.peers: dict[int, Peer] = {}
        self._members: dict[str, dict[int, Peer]] = {}  # group -> peers in it
        self.contacts: dict[str, Contact] = {}  # uid -> contact
        self._by_callsign: dict[str, set[str]] = {}  # callsign -> uids
        self._uids_of: dict[int, set[str]] = {}  # peer id -> its contact uids
        self.retained: dict[str, Retained] = {}  # uid -> latest retained event
        self.stats = Stats()
        # Cluster hook (kestrel.cluster): sees every accepted event posted here, before it changes
        # any state, so it can be published to the other processes and sites; it may return the
        # encodings it made ({format: bytes}, as `encode` would make them). None: one process.
        self.tap: Callable[[Event, frozenset[str], detail_mod.Addressing, str | None],
                           dict[str, bytes] | None] | None = None
        self._remote = False  # routing an event another process accepted (its checks were done there)
        self._remote_identity: str | None = None
        self._remote_wire: dict[str, bytes] | None = None

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
        if getattr(peer, "identity", None) is not None:
            # An authenticated identity claims its callsign: unauthenticated holders lose it.
            for other in list(self._by_callsign.get(callsign, ())):
                c = self.contacts[other]
                holder = self.peers.get(c.peer_id)
                if c.peer_id != peer.id and (holder is None or getattr(holder, "identity", None) is None):
                    self._drop_contact(c)
        self.contacts[uid] = Contact(uid, callsign, peer.id)
        self._by_callsign.setdefault(callsign, set()).add(uid)
        self._uids_of.setdefault(peer.id, set()).add(uid)
        if old is None or old.callsign != callsign:
            logs.info("contact", peer=peer.id, uid=uid, callsign=callsign, was=old.callsign if old else None)

    def _drop_contact(self, contact: Contact) -> None:
        self.contacts.pop(contact.uid, None)
        self._unindex(contact)
        self._uids_of.get(contact.peer_id, set()).discard(contact.uid)

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
            self.metrics.inc("dropped_unreadable")
            if n <= 10 or n % 1000 == 0:  # a hostile sender must not flood the log
                logs.warning("route.unreadable", uid=event.uid, type=event.type, reason=addr.unreadable,
                             sender=sender.id if sender is not None else "udp", count=n)
            return 0
        identity: str | None = getattr(sender, "identity", None) if not self._remote else self._remote_identity
        refused = None if self._remote else self._check_write(event.uid, sender, groups, identity)
        if refused is None and is_delete and not self._remote:
            for uid in addr.link_uids:
                refused = self._check_write(uid, sender, groups, identity, item_only=True)
                if refused is not None:
                    break
        is_contact = sender is not None and addr.callsign and event.type.startswith("a-") and not addr.parent_link
        if refused is None and is_contact and sender is not None and addr.callsign:
            refused = self._check_callsign(addr.callsign, sender, identity)
        if refused is not None:
            self._refuse(refused, event, sender)
            return 0
        if addr.marti and not addr.addressed:
            self._refuse("dropped_unaddressable", event, sender)
            return 0
        seed = self._remote_wire  # encodings made already (by the tap, or by the posting process)
        if self.tap is not None and not self._remote:
            seed = self.tap(event, groups, addr, identity)
        if is_contact and sender is not None and addr.callsign:
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
            item = self._retain(event, groups, identity, seed)
            if item is not None:
                wire = item.wire  # share the encodings with the retained copy (encode once)
                key = event.uid
            recipients = self._broadcast(sender, groups, self._echo_of(event) if sender is None else None)
        if seed:
            wire.update(seed)
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

    # -- write access ----------------------------------------------------------------------------

    def _check_write(self, uid: str, sender: Peer | None, groups: frozenset[str], identity: str | None,
                     item_only: bool = False) -> str | None:
        """Why `sender` may not write (replace, delete, announce) `uid`, or None when it may."""
        item = self.retained.get(uid)
        if item is not None:
            if item.owner is not None and item.owner != identity:
                return "dropped_identity"
            if item.groups.isdisjoint(groups) and not (identity is not None and item.owner is None):
                return "dropped_foreign_write"
        if item_only:
            return None
        contact = self.contacts.get(uid)
        if contact is not None and (sender is None or contact.peer_id != sender.id):
            holder = self.peers.get(contact.peer_id)
            if holder is not None:
                held_by: str | None = getattr(holder, "identity", None)
                if held_by is not None and held_by != identity:
                    return "dropped_identity"
                if holder.groups.isdisjoint(groups) and not (identity is not None and held_by is None):
                    return "dropped_identity"
        return None

    def _check_callsign(self, callsign: str, sender: Peer, identity: str | None) -> str | None:
        """An unauthenticated sender may not announce a callsign an authenticated contact holds."""
        if identity is not None:
            return None
        for uid in self._by_callsign.get(callsign, ()):
            contact = self.contacts[uid]
            holder = self.peers.get(contact.peer_id)
            if contact.peer_id != sender.id and holder is not None and getattr(holder, "identity", None):
                return "dropped_identity"
        return None

    def _refuse(self, reason: str, event: Event, sender: Peer | None) -> None:
        self.metrics.inc(reason)
        self.metrics.limited_warning(f"route.{reason}", uid=logs.short(event.uid), type=logs.short(event.type),
                                     sender=sender.id if sender is not None else "udp")

    def _echo_of(self, event: Event) -> int | None:
        """The streaming peer whose own event came back over UDP (ATAK sends SA on both)."""
        contact = self.contacts.get(event.uid)
        return contact.peer_id if contact is not None else None

    def route_remote(self, event: Event, groups: frozenset[str], identity: str | None = None,
                     encoded: dict[str, bytes] | None = None) -> int:
        """Deliver an event another process or site accepted (its write checks ran there): as from
        UDP, keeping the sender's identity as the item's owner, and never tapped again. `encoded`:
        {format: bytes} the posting process made with the same encoder (not made again here)."""
        self._remote, self._remote_identity, self._remote_wire = True, identity, encoded
        try:
            return self.route(event, None, groups)
        finally:
            self._remote, self._remote_identity, self._remote_wire = False, None, None

    def _encode_or_skip(self, fmt: str, event: Event) -> bytes:
        """Encoded bytes, or b"" when this event cannot be written in `fmt` (logged, skipped)."""
        try:
            return self._encode(fmt, event)
        except ValueError as exc:  # CotError: e.g. a time before 1970 has no protobuf form
            self.stats.unencodable += 1
            logs.warning("route.unencodable", uid=event.uid, type=event.type, format=fmt, reason=str(exc))
            return b""

    def _broadcast(self, sender: Peer | None, groups: frozenset[str], exclude: int | None = None) -> Iterator[Peer]:
        sender_id = sender.id if sender is not None else (exclude if exclude is not None else -1)
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

    def _retain(self, event: Event, groups: frozenset[str], owner: str | None = None,
                seed: dict[str, bytes] | None = None) -> Retained | None:
        if event.type.startswith(NOT_RETAINED) or event.stale <= int(self._clock() * 1000):
            return None
        self._forget(event.uid, persist=False)  # re-insert: order is "last written"
        item = Retained(event, groups, wire=dict(seed) if seed else {}, owner=owner)  # not encoded twice
        xml = item.encoded("xml", self._encode)
        item.size = len(xml) + len(event.detail) + ITEM_OVERHEAD
        if self._store is not None:  # before _add: an item evicted at once is deleted again
            self._store.put(Row(event.uid, event.type, event.stale, groups, xml, owner))
        self._add(item)
        return item if event.uid in self.retained else None

    def _add(self, item: Retained) -> None:
        """Account `item` in each of its groups, then evict those groups' oldest items over budget."""
        uid = item.event.uid
        self.retained[uid] = item
        for g in item.groups:
            self._group_items.setdefault(g, {})[uid] = None
            self.group_bytes[g] = self.group_bytes.get(g, 0) + item.size
        for g in item.groups:
            uids = self._group_items.get(g)
            while uids and (self.group_bytes.get(g, 0) > self._max_bytes or len(uids) > self._max_retained):
                self._forget(next(iter(uids)))
                self.stats.retained_dropped += 1
                self.metrics.inc("retained_evicted")

    def _forget(self, uid: str, persist: bool = True) -> None:
        item = self.retained.pop(uid, None)
        if item is None:
            return
        for g in item.groups:
            uids = self._group_items.get(g)
            if uids is not None:
                uids.pop(uid, None)
                left = self.group_bytes[g] = self.group_bytes.get(g, 0) - item.size
                if not uids:
                    del self._group_items[g]
                    del self.group_bytes[g]
                elif left < 0:  # pragma: no cover - accounting bug guard
                    self.group_bytes[g] = 0
        if persist and self._store is not None:
            self._store.delete(uid)

    def restore(self, item: Retained) -> None:
        """Put back a retained item read from the store at start-up (not re-persisted)."""
        self._forget(item.event.uid, persist=False)
        if not item.size:
            item.size = len(item.encoded("xml", self._encode)) + len(item.event.detail) + ITEM_OVERHEAD
        self._add(item)

    def expire(self) -> int:
        """Drop stale retained items. O(retained)."""
        now_ms = int(self._clock() * 1000)
        stale = [uid for uid, r in self.retained.items() if r.event.stale <= now_ms]
        for uid in stale:
            self._forget(uid)
        return len(stale)
