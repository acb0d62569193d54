"""A uid used in two groups is two items across processes too (issue 12): the site's stream keeps one
subject per uid and groups, so a process that starts later replays both groups' items, and a delete in
one group removes only that group's (a real nats-server; pytak clients)."""

from __future__ import annotations

from pathlib import Path

from tests.cluster_support import NEEDS_NATS, cluster_server, natsd, running, two_groups
from tests.test_server_abuse import _snapshot, marker
from tests.test_server_support import Client, delete, eventually, run, uid_of

pytestmark = NEEDS_NATS


def _remarks(events: list) -> dict[str, str | None]:
    return {uid_of(e): e.findtext("detail/remarks") for e in events}


def test_one_uid_in_two_groups_is_two_items_in_the_stream(tmp_path: Path) -> None:
    with natsd(tmp_path) as nd:

        async def scenario() -> None:
            a = cluster_server(tmp_path / "a", nd.url, "s1", *two_groups())
            async with running(a):
                blue = await Client.connect(f"tcp://127.0.0.1:{a.ports['tcp']}")
                red = await Client.connect(f"tcp://127.0.0.1:{a.ports['red']}")
                await blue.send(marker("SQ", "blue"))
                await blue.send(marker("KEEP", "blue keep"))
                await red.send(marker("SQ", "red"))
                await red.send(marker("GONE", "red gone"))
                await red.send(delete("del-gone", "GONE"))  # Red deletes its own marker only
                await eventually(lambda: a.router.count() == 3 and not a.backplane.unconfirmed
                                 and a.backplane.stream_seq >= 5, timeout=20)
            b = cluster_server(tmp_path / "b", nd.url, "s1", *two_groups())
            async with running(b):  # catches up from the stream before it listens
                assert set(b.router.retained["SQ"]) == {frozenset({"Blue"}), frozenset({"Red"})}
                assert _remarks(await _snapshot(b.ports["tcp"])) == {"SQ": "blue", "KEEP": "blue keep"}
                assert _remarks(await _snapshot(b.ports["red"])) == {"SQ": "red"}
                assert b.backplane.counters.bad == 0

        run(scenario(), timeout=60)
