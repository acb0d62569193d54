"""`kestrel workbench` over HTTP (no browser): the URL line, the JSON API against the run store,
pictures against PyAV's own decode, the sensor model against the synthetic truth, decisions with
an audit trail, undo, live events, bad run folders, and `ped review --json`."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest

from kestrel.ped.review import ReviewStore
from tests.workbench_support import get, get_json, kestrel, make_run, post_json, workbench


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("wb"))


@pytest.fixture(scope="module")
def bare_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("wbbare"), seconds="2", seed="5", no_klv=True)


def pyav_frames(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def test_api_against_store_and_pyav(run_dir: Path) -> None:
    import cv2

    with ReviewStore(run_dir, create=False) as st:
        stored = st.tracks()
    ref = pyav_frames(run_dir.parent / "synth.ts")
    with workbench(run_dir) as url:
        info = get_json(f"{url}/api/runs/0")
        assert info["video"] and info["geo"] and info["geo_reason"] is None
        assert (info["width"], info["height"]) == (ref[0].shape[1], ref[0].shape[0])
        rows = get_json(f"{url}/api/runs/0/tracks")
        assert [r["id"] for r in rows] == [t.id for t in stored]
        for r, t in zip(rows, stored, strict=True):
            assert (r["first_frame"], r["last_frame"]) == (t.points[0].frame, t.points[-1].frame)
            assert r["state"] == "pending"
        # Pictures: PNG is lossless, so frame N must equal PyAV's N-th decoded picture exactly
        # (and differ from its neighbours: the clip moves).
        for n in (0, 45, 1, len(ref) - 1, 44):
            status, body, ctype = get(f"{url}/api/runs/0/frames/{n}.png")
            assert status == 200 and ctype == "image/png"
            img = cv2.cvtColor(cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            assert np.array_equal(img, ref[n]), n
            if n:
                assert not np.array_equal(img, ref[n - 1])
        status, body, _ = get(f"{url}/api/runs/0/frames/{len(ref)}.jpg")
        assert status == 404 and b"past the end" in body
        assert get(f"{url}/api/runs/0/frames/{len(ref) + 500}.jpg")[0] == 404
        # Boxes of one frame are the stored points of that frame.
        t = stored[0]
        p = t.points[len(t.points) // 2]
        boxes = get_json(f"{url}/api/runs/0/boxes?from={p.frame}&to={p.frame}")["frames"][str(p.frame)]
        assert [t.id, round(p.x, 1), round(p.y, 1), round(p.w, 1), round(p.h, 1)] in boxes
        assert get(f"{url}/api/runs/7/tracks")[0] == 404


def test_click_to_ground_matches_truth(run_dir: Path) -> None:
    """The pixel of a truth target maps to that target's ground position (synthetic truth)."""
    from kestrel.ped.review import ground_distance

    truth = json.loads((run_dir.parent / "truth.json").read_text())
    frames = truth["frames"]
    with workbench(run_dir) as url:
        for n in (10, 60):
            tgt = frames[n]["targets"][0]
            g = get_json(f"{url}/api/runs/0/ground/{n}?u={tgt['u']}&v={tgt['v']}")
            assert ground_distance((g["lat"], g["lon"]), (tgt["lat"], tgt["lon"])) < 1.0
        geo = get_json(f"{url}/api/runs/0/geo/10")
        assert len(geo["footprint"]) == 4 and geo["platform"] is not None


def test_decisions_audit_undo_and_events(run_dir: Path) -> None:
    import http.client

    with workbench(run_dir, analyst="ana") as url:
        host, port = url.removeprefix("http://").split(":")
        sse = http.client.HTTPConnection(host, int(port), timeout=60)
        sse.request("GET", "/api/events")
        resp = sse.getresponse()
        assert resp.getheader("Content-Type") == "text/event-stream"
        assert resp.readline() == b"retry: 1000\n"

        status, row = post_json(f"{url}/api/runs/0/review", {"track": 1, "state": "confirmed", "label": "vehicle",
                                                             "affiliation": "hostile", "frame": 12})
        assert status == 200 and row["state"] == "confirmed" and row["analyst"] == "ana"
        events: list[dict[str, object]] = []
        while not events:
            line = resp.readline()
            if line.startswith(b"data: ") and b'"track"' in line:
                events.append(json.loads(line[6:]))
        assert events[0]["track"]["id"] == 1 and events[0]["track"]["state"] == "confirmed"  # type: ignore[index]

        with ReviewStore(run_dir, create=False) as st:
            h = st.history(1)
            assert h[-1] | {"at": None} == {"state": "confirmed", "label": "vehicle", "affiliation": "hostile",
                                           "analyst": "ana", "at": None, "frame": 12, "action": "review"}
        # A decision by someone else (the CLI) reaches the page's event stream too.
        assert kestrel("ped", "review", str(run_dir), "--reject", "2", "--analyst", "bob") == 0
        while True:
            line = resp.readline()
            if line.startswith(b"data: ") and b'"bob"' in line:
                break
        status, row = post_json(f"{url}/api/runs/0/undo", {"track": 1, "frame": 20})
        assert status == 200 and row["state"] == "pending" and row["label"] == "unknown"
        assert post_json(f"{url}/api/runs/0/undo", {"track": 1})[0] == 409
        assert post_json(f"{url}/api/runs/0/review", {"track": 1, "state": "maybe"})[0] == 400
        assert post_json(f"{url}/api/runs/0/review", {"track": 999, "state": "confirmed"})[0] == 400
        sse.close()
    with ReviewStore(run_dir, create=False) as st:
        assert [h["action"] for h in st.history(1)][-2:] == ["review", "undo"]
        st.undo(2)  # leave the shared run as it was


def test_no_klv_run_opens_without_map(bare_run: Path) -> None:
    with workbench(bare_run) as url:
        info = get_json(f"{url}/api/runs/0")
        assert info["video"] and not info["geo"]
        assert "not geolocated" in info["geo_reason"]
        assert get(f"{url}/api/runs/0/frames/0.jpg")[0] == 200
        status, body, _ = get(f"{url}/api/runs/0/geo/0")
        assert status == 404 and b"not geolocated" in body


def test_bad_run_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    for arg, words in ((tmp_path / "nope", "no such run folder"), (tmp_path / "file.txt", "not a folder"),
                       (tmp_path / "empty", "not a PED run")):
        assert kestrel("workbench", str(arg), "--port", "0") == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(arg) in err and words in err
    assert kestrel("workbench", str(tmp_path / "empty"), "--host", "0.0.0.0") == 2
    assert "--expose" in capsys.readouterr().err


def test_port_in_use_is_one_line(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert kestrel("workbench", str(run_dir), "--port", str(port)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"port {port}" in err and "--port" in err


def test_review_json_fields(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert kestrel("ped", "review", str(run_dir), "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    with ReviewStore(run_dir, create=False) as st:
        stored = {t.id: t for t in st.tracks()}
    assert {r["id"] for r in rows} == set(stored)
    for r in rows:
        assert {"id", "state", "label", "affiliation", "analyst", "first_frame", "last_frame"} <= set(r)
        t = stored[r["id"]]
        assert (r["first_frame"], r["last_frame"]) == (t.points[0].frame, t.points[-1].frame)
        assert r["state"] == t.state


def test_push_confirm_sends_reject_retracts(run_dir: Path, tmp_path: Path) -> None:
    """With --push, `a` in the page puts the track on TAK maps at once and `r` takes it off:
    a pytak client on our TAK server sees the track event, then its delete."""
    import asyncio
    import contextlib

    from tests.test_server_support import Client, make_config, run, server_running, uid_of

    async def scenario() -> None:
        async with server_running(make_config(tmp_path / "ten")) as server:
            tak = f"tcp://127.0.0.1:{server.ports['tcp']}"
            watcher = await Client.connect(tak)
            await watcher.drain(0.2)
            loop = asyncio.get_running_loop()
            with contextlib.ExitStack() as stack:
                url = await loop.run_in_executor(None, lambda: stack.enter_context(
                    workbench(run_dir, extra=("--push", tak))))
                status, _ = await loop.run_in_executor(None, lambda: post_json(
                    f"{url}/api/runs/0/review", {"track": 1, "state": "confirmed", "affiliation": "hostile"}))
                assert status == 200
                seen = await watcher.recv_until(lambda e: uid_of(e).endswith("-track-1"), timeout=60)
                track_ev = seen[-1]
                assert track_ev.get("type", "").startswith("a-h-G")
                status, _ = await loop.run_in_executor(None, lambda: post_json(
                    f"{url}/api/runs/0/review", {"track": 1, "state": "rejected"}))
                assert status == 200
                gone = await watcher.recv_until(lambda e: e.get("type") == "t-x-d-d", timeout=60)
                assert gone[-1].find("detail/link").get("uid") == uid_of(track_ev)  # type: ignore[union-attr]
            await watcher.close()

    run(scenario(), timeout=120)
    with ReviewStore(run_dir, create=False) as st:
        st.undo(1)
        st.undo(1)
