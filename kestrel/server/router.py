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
uid *and sender's groups* (`retained[uid][groups]`), except pings/control (`t-*`), chat (`b-t-f*`)
and addressed (`marti dest`) messages. A write replaces the items of its uid that share a group with
it and leaves the others, so a uid one group uses stays free in another (no squatting); items of one
uid are in pairwise disjoint groups. `t-x-d-d` deletes the linked items that share a group with it. Memory is capped per group: `retained_bytes_per_group`
(accounted as XML + detail bytes + 1 KiB per item) and `max_retained` items; the group's oldest
items go first, so one group cannot evict another's picture.

Writes are access-controlled (a sender is its groups plus, over TLS, its certificate CN, the
"identity"); a refused event is dropped whole (not relayed: clients act on deletes too), counted
and logged at most once per LOG_EVERY:
- a uid an authenticated identity stored (or announces as a connected contact) is bound to it: no
  other identity and no unauthenticated sender may write it, in any group (`dropped_identity`);
- otherwise a write only ever touches its own groups' items of that uid (replace: those sharing a
  group; none shared: a new item beside the others); a delete of a uid stored only in groups the
  sender does not share is refused (`dropped_foreign_write`);
- contacts are scoped the same way (`contacts[uid][peer id]`): one uid may be announced by
  connections in disjoint groups, and a direct message goes to the one(s) sharing a group with its
  sender; an authenticated identity may claim a callsign that only unauthenticated senders hold;
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


Scope = frozenset[str]  # the groups of the sender of a retained item (its visibility)
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
        self._group_items: dict[str, dict[tuple[str, Scope], None]] = {}  # group -> its items, oldest first
        self.peers: dict[int, Peer] = {}
        self._members: dict[str, dict[int, Peer]] = {}  # group -> peers in it
        self.contacts: dict[str, dict[int, Contact]] = {}  # uid -> peer id -> contact
        self._by_callsign: dict[str, set[tuple[str, int]]] = {}  # callsign -> (uid, peer id)
        self._uids_of: dict[int, set[str]] = {}  # peer id -> its contact uids
        self.retained: dict[str, dict[Scope, Retained]] = {}  # uid -> sender's groups -> latest event
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
            r for scopes in self.retained.values() for r in scopes.values()
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
            held = self.contacts.get(uid)
            contact = held.pop(peer.id, None) if held is not None else None
            if held is not None and not held:
                del self.contacts[uid]
            if contact is not None:
                self._unindex(contact)

    def callsign_of(self, peer: Peer) -> str | None:
        for uid in self._uids_of.get(peer.id, ()):
            return self.contacts[uid][peer.id].callsign
        return None

    def find(self, uid: str, groups: frozenset[str]) -> Retained | None:
        """The latest retained item of `uid` a member of `groups` sees (None: none)."""
        best = None
        for item in self.retained.get(uid, {}).values():
            if not item.groups.isdisjoint(groups) and (best is None or item.event.time > best.event.time):
                best = item
        return best

    def _unindex(self, contact: Contact) -> None:
        held = self._by_callsign.get(contact.callsign)
        if held is not None:
            held.discard((contact.uid, contact.peer_id))
            if not held:
                del self._by_callsign[contact.callsign]

    def _learn_contact(self, peer: Peer, uid: str, callsign: str) -> None:
        held = self.contacts.get(uid)
        old = held.get(peer.id) if held is not None else None
        if old is not None and old.callsign == callsign:
            return  # the common case: a contact's periodic SA
        if old is not None:
            self._unindex(old)
        if held is not None:  # takeover within shared groups (the write checks allowed it)
            for c in list(held.values()):
                holder = self.peers.get(c.peer_id)
                if c.peer_id != peer.id and (holder is None or not holder.groups.isdisjoint(peer.groups)):
                    self._drop_contact(c)
        if getattr(peer, "identity", None) is not None:
            # An authenticated identity claims its callsign: unauthenticated holders lose it.
            for other, pid in list(self._by_callsign.get(callsign, ())):
                holder = self.peers.get(pid)
                if pid != peer.id and (holder is None or getattr(holder, "identity", None) is None):
                    self._drop_contact(self.contacts[other][pid])
        self.contacts.setdefault(uid, {})[peer.id] = Contact(uid, callsign, peer.id)
        self._by_callsign.setdefault(callsign, set()).add((uid, peer.id))
        self._uids_of.setdefault(peer.id, set()).add(uid)
        logs.info("contact", peer=peer.id, uid=uid, callsign=callsign, was=old.callsign if old else None)

    def _drop_contact(self, contact: Contact) -> None:
        held = self.contacts.get(contact.uid)
        if held is not None and held.pop(contact.peer_id, None) is not None and not held:
            del self.contacts[contact.uid]
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
                self._forget_reachable(uid, groups)
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
            recipients = self._broadcast(sender, groups, self._echo_of(event, groups) if sender is None else None)
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
        """Why `sender` may not write (replace, delete, announce) `uid`, or None when it may.
        `item_only`: a delete (it touches the items sharing a group with it, and needs one)."""
        scopes = self.retained.get(uid)
        if scopes:
            reachable = False
            for item in scopes.values():
                shared = not item.groups.isdisjoint(groups)
                reachable = reachable or shared
                if item.owner is not None and item.owner != identity and (shared or not item_only):
                    return "dropped_identity"  # bound to its identity, in every group
            if item_only and not reachable:
                return "dropped_foreign_write"
        if item_only:
            return None
        held = self.contacts.get(uid)
        if held:
            for contact in held.values():
                if sender is not None and contact.peer_id == sender.id:
                    continue
                holder = self.peers.get(contact.peer_id)
                held_by: str | None = getattr(holder, "identity", None) if holder is not None else None
                if held_by is not None and held_by != identity:
                    return "dropped_identity"
        return None

    def _check_callsign(self, callsign: str, sender: Peer, identity: str | None) -> str | None:
        """An unauthenticated sender may not announce a callsign an authenticated contact holds."""
        if identity is not None:
            return None
        for _, pid in self._by_callsign.get(callsign, ()):
            holder = self.peers.get(pid)
            if pid != sender.id and holder is not None and getattr(holder, "identity", None):
                return "dropped_identity"
        return None

    def _refuse(self, reason: str, event: Event, sender: Peer | None) -> None:
        self.metrics.inc(reason)
        self.metrics.limited_warning(f"route.{reason}", uid=logs.short(event.uid), type=logs.short(event.type),
                                     sender=sender.id if sender is not None else "udp")

    def _echo_of(self, event: Event, groups: frozenset[str]) -> int | None:
        """The streaming peer whose own event came back over UDP (ATAK sends SA on both)."""
        for contact in self.contacts.get(event.uid, {}).values():
            peer = self.peers.get(contact.peer_id)
            if peer is not None and not peer.groups.isdisjoint(groups):
                return contact.peer_id
        return None

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
        peer_ids: list[int] = []
        for uid in addr.dest_uids:
            peer_ids.extend(self.contacts.get(uid, {}))
        for cs in addr.dest_callsigns:
            peer_ids.extend(pid for _, pid in self._by_callsign.get(cs, ()))
        sender_id = sender.id if sender is not None else -1
        seen: set[int] = {sender_id}
        for pid in peer_ids:
            if pid in seen:
                continue
            seen.add(pid)
            peer = self.peers.get(pid)
            if peer is not None and not peer.groups.isdisjoint(groups):
                yield peer

    # -- retained picture ----------------------------------------------------------------------

    def _retain(self, event: Event, groups: frozenset[str], owner: str | None = None,
                seed: dict[str, bytes] | None = None) -> Retained | None:
        if event.type.startswith(NOT_RETAINED) or event.stale <= int(self._clock() * 1000):
            return None
        uid = event.uid
        # Replace this uid's items that share a group with the write (re-insert: order is "last
        # written"); items of other groups stay. The own scope is re-put, so not deleted in the store.
        for scope in [s for s in self.retained.get(uid, ()) if not s.isdisjoint(groups)]:
            self._forget(uid, scope, persist=scope != groups)
        item = Retained(event, groups, wire=dict(seed) if seed else {}, owner=owner)  # not encoded twice
        xml = item.encoded("xml", self._encode)
        item.size = len(xml) + len(event.detail) + ITEM_OVERHEAD
        if self._store is not None:  # before _add: an item evicted at once is deleted again
            self._store.put(Row(uid, event.type, event.stale, groups, xml, owner))
        self._add(item)
        return item if self.retained.get(uid, {}).get(groups) is item else None

    def _add(self, item: Retained) -> None:
        """Account `item` in each of its groups, then evict those groups' oldest items over budget."""
        key = (item.event.uid, item.groups)
        self.retained.setdefault(key[0], {})[item.groups] = item
        for g in item.groups:
            self._group_items.setdefault(g, {})[key] = None
            self.group_bytes[g] = self.group_bytes.get(g, 0) + item.size
        for g in item.groups:
            keys = self._group_items.get(g)
            while keys and (self.group_bytes.get(g, 0) > self._max_bytes or len(keys) > self._max_retained):
                self._forget(*next(iter(keys)))
                self.stats.retained_dropped += 1
                self.metrics.inc("retained_evicted")

    def _forget_reachable(self, uid: str, groups: frozenset[str]) -> None:
        """Delete `uid`'s items that share a group with `groups` (a `t-x-d-d` from those groups)."""
        for scope in [s for s in self.retained.get(uid, ()) if not s.isdisjoint(groups)]:
            self._forget(uid, scope)

    def _forget(self, uid: str, scope: Scope, persist: bool = True) -> None:
        scopes = self.retained.get(uid)
        item = scopes.pop(scope, None) if scopes is not None else None
        if item is None:
            return
        if not scopes:
            del self.retained[uid]
        key = (uid, scope)
        for g in item.groups:
            keys = self._group_items.get(g)
            if keys is not None:
                keys.pop(key, None)
                left = self.group_bytes[g] = self.group_bytes.get(g, 0) - item.size
                if not keys:
                    del self._group_items[g]
                    del self.group_bytes[g]
                elif left < 0:  # pragma: no cover - accounting bug guard
                    self.group_bytes[g] = 0
        if persist and self._store is not None:
            self._store.delete(uid, scope)

    def restore(self, item: Retained) -> None:
        """Put back a retained item read from the store at start-up (not re-persisted)."""
        self._forget(item.event.uid, item.groups, persist=False)
        if not item.size:
            item.size = len(item.encoded("xml", self._encode)) + len(item.event.detail) + ITEM_OVERHEAD
        self._add(item)

    def count(self) -> int:
        """How many items are retained (all uids, all groups). O(uids)."""
        return sum(len(scopes) for scopes in self.retained.values())

    def items(self) -> Iterator[Retained]:
        """Every retained item (all uids, all groups)."""
        for scopes in self.retained.values():
            yield from scopes.values()

    def expire(self) -> int:
        """Drop stale retained items. O(retained)."""
        now_ms = int(self._clock() * 1000)
        stale = [(r.event.uid, r.groups) for r in self.items() if r.event.stale <= now_ms]
        for uid, scope in stale:
            self._forget(uid, scope)
        return len(stale)
