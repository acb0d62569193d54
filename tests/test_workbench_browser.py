"""The workbench in a real browser (Chromium + selenium), driven as an analyst would: open a run,
count rows against the store, select, step frames and check `data-frame` and the drawn box
against the stored box of that frame, confirm with `a`, reload, undo, two pages at once, the
picture for `#frame=N` against PyAV's frame N, a run without KLV, no network beyond loopback.
Every wait is on a DOM condition (WebDriverWait), never on the clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kestrel.ped.review import ReviewStore, StoredTrack
from tests.browser_support import chromium, console_errors, require_browser, wait
from tests.workbench_support import make_run, workbench

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_browser()
    return make_run(tmp_path_factory.mktemp("wbb"))


@pytest.fixture(scope="module")
def served(run_dir: Path) -> Iterator[str]:
    with workbench(run_dir, analyst="ana") as url:
        yield url


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    with chromium() as d:
        yield d


def by(d: Any, css: str) -> list[Any]:
    return list(d.find_elements("css selector", css))


def shown_frame(d: Any) -> int | None:
    pics = by(d, "[data-frame]")
    assert len(pics) <= 1  # at most one element carries the frame number: the picture, once shown
    if not pics:
        return None
    assert pics[0].tag_name == "img" and pics[0].get_attribute("id") == "frame"
    return int(pics[0].get_attribute("data-frame"))


def press(d: Any, *keys: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    for k in keys:
        ActionChains(d).send_keys(k).perform()


def drawn_box(d: Any, tid: int) -> tuple[float, ...] | None:
    r = by(d, f'#overlay [data-box-id="{tid}"] rect')
    if not r:
        return None
    return tuple(float(r[0].get_attribute(a)) for a in ("x", "y", "width", "height"))


def stored_box(t: StoredTrack, frame: int) -> tuple[float, ...]:
    p = next(p for p in t.points if p.frame == frame)
    x, y, w, h = (round(v, 1) for v in (p.x, p.y, p.w, p.h))
    return (x - w / 2, y - h / 2, w, h)


def row_state(d: Any, tid: int) -> str | None:
    r = by(d, f'[data-track-id="{tid}"][data-state]')
    return r[0].get_attribute("data-state") if r else None


def open_page(d: Any, url: str) -> None:
    d.get("about:blank")  # leave the previous page (its server may be gone) and drop its log
    d.get_log("browser")
    d.get(url)
    wait(d, lambda d: shown_frame(d) is not None and by(d, "[data-track-id][data-state]"))


def tracks(run_dir: Path) -> list[StoredTrack]:
    with ReviewStore(run_dir, create=False) as st:
        return st.tracks()


def test_select_step_and_boxes(driver: Any, served: str, run_dir: Path) -> None:
    d = driver
    open_page(d, served + "/")
    stored = tracks(run_dir)
    rows = by(d, "[data-track-id][data-state]")
    assert [int(r.get_attribute("data-track-id")) for r in rows] == [t.id for t in stored]
    assert {r.get_attribute("data-state") for r in rows} == {"pending"}
    # Pick a track that starts after frame 0 if there is one (so selecting visibly seeks).
    t = max(stored, key=lambda t: t.points[0].frame)
    by(d, f'[data-track-id="{t.id}"]')[0].click()
    wait(d, lambda d: by(d, f'[data-track-id="{t.id}"][aria-selected="true"]'))
    assert len(by(d, '[aria-selected="true"]')) == 1
    first = t.points[0].frame
    wait(d, lambda d: shown_frame(d) == first and drawn_box(d, t.id) == stored_box(t, first))
    press(d, "\ue014", "\ue014", "\ue014")  # → three times
    wait(d, lambda d: shown_frame(d) == first + 3 and drawn_box(d, t.id) == stored_box(t, first + 3))
    press(d, "\ue012")  # ←
    wait(d, lambda d: shown_frame(d) == first + 2 and drawn_box(d, t.id) == stored_box(t, first + 2))
    # j / k walk the list.
    order = [x.id for x in stored]
    press(d, "k")
    prev = order[max(order.index(t.id) - 1, 0)]
    wait(d, lambda d: by(d, f'[data-track-id="{prev}"][aria-selected="true"]'))
    assert "#frame=" in d.current_url
    assert not console_errors(d), console_errors(d)


def test_confirm_reload_undo(driver: Any, served: str, run_dir: Path) -> None:
    d = driver
    open_page(d, served + "/")
    tid = tracks(run_dir)[0].id
    by(d, f'[data-track-id="{tid}"]')[0].click()
    wait(d, lambda d: by(d, f'[data-track-id="{tid}"][aria-selected="true"]'))
    press(d, "h", "a")
    wait(d, lambda d: row_state(d, tid) == "confirmed")
    t = next(x for x in tracks(run_dir) if x.id == tid)
    assert (t.state, t.affiliation, t.analyst) == ("confirmed", "hostile", "ana")
    d.refresh()
    wait(d, lambda d: row_state(d, tid) == "confirmed")
    # The page's undo stack survives the reload: reject, then undo twice back to pending.
    by(d, f'[data-track-id="{tid}"]')[0].click()
    wait(d, lambda d: by(d, f'[data-track-id="{tid}"][aria-selected="true"]'))
    press(d, "r")
    wait(d, lambda d: row_state(d, tid) == "rejected")
    press(d, "z")
    wait(d, lambda d: row_state(d, tid) == "confirmed")
    press(d, "z")
    wait(d, lambda d: row_state(d, tid) == "pending")
    with ReviewStore(run_dir, create=False) as st:
        h = st.history(tid)
    assert [x["action"] for x in h][-2:] == ["undo", "undo"] and st is not None
    assert all(x["frame"] is not None for x in h)
    assert not console_errors(d), console_errors(d)


def test_two_pages_see_each_other(driver: Any, served: str, run_dir: Path) -> None:
    d = driver
    ids = [t.id for t in tracks(run_dir)]
    tid = ids[-1]
    open_page(d, served + "/")
    first = d.current_window_handle
    d.switch_to.new_window("window")
    open_page(d, served + "/")
    second = d.current_window_handle
    by(d, f'[data-track-id="{tid}"]')[0].click()
    wait(d, lambda d: by(d, f'[data-track-id="{tid}"][aria-selected="true"]'))
    press(d, "r")
    wait(d, lambda d: row_state(d, tid) == "rejected")
    d.switch_to.window(first)
    wait(d, lambda d: row_state(d, tid) == "rejected")  # arrived over SSE, no reload
    by(d, f'[data-track-id="{tid}"]')[0].click()
    wait(d, lambda d: by(d, f'[data-track-id="{tid}"][aria-selected="true"]'))
    press(d, "a")
    d.switch_to.window(second)
    wait(d, lambda d: row_state(d, tid) == "confirmed")
    d.close()
    d.switch_to.window(first)
    with ReviewStore(run_dir, create=False) as st:
        st.undo(tid)
        st.undo(tid)


def test_frame_fragment_shows_pyav_frame(driver: Any, served: str, run_dir: Path) -> None:
    """A screenshot of the picture for #frame=N matches PyAV's N-th decoded picture better than
    its neighbours (the clip pans, so neighbouring frames differ)."""
    import av
    import cv2

    with av.open(str(run_dir.parent / "synth.ts")) as c:
        ref = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    d = driver
    n = 37
    open_page(d, f"{served}/#frame={n}")
    wait(d, lambda d: shown_frame(d) == n)
    png = by(d, "#frame")[0].screenshot_as_png
    shot = cv2.cvtColor(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    # The SVG overlay is drawn over the picture: compare where no box is drawn (mask boxes out).
    h, w = shot.shape[:2]

    def diff(k: int) -> float:
        r = cv2.resize(ref[k], (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
        return float(np.median(np.abs(r - shot.astype(np.float32))))

    own = diff(n)
    assert own < 6.0, own
    assert own < diff(n - 2) and own < diff(n + 2), (own, diff(n - 2), diff(n + 2))


def test_map_and_ground_click(driver: Any, served: str, run_dir: Path) -> None:
    d = driver
    open_page(d, f"{served}/#frame=10")
    wait(d, lambda d: shown_frame(d) == 10 and by(d, "#map canvas.maplibregl-canvas"))
    assert by(d, "#map-note")[0].get_attribute("hidden") is not None
    pic = by(d, "#stage")[0]
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(d).move_to_element_with_offset(pic, 0, 0).click().perform()  # the picture's centre
    wait(d, lambda d: by(d, "#ground")[0].get_attribute("data-lat"))
    lat = float(by(d, "#ground")[0].get_attribute("data-lat"))
    lon = float(by(d, "#ground")[0].get_attribute("data-lon"))
    assert abs(lat - 36.2) < 0.01 and abs(lon + 115.9) < 0.01  # the synthetic stare point
    assert not console_errors(d), console_errors(d)


def test_no_klv_run_says_why(driver: Any, tmp_path: Path) -> None:
    bare = make_run(tmp_path, seconds="1", seed="4", no_klv=True)
    with workbench(bare) as url:
        d = driver
        open_page(d, url + "/")
        wait(d, lambda d: by(d, "#map-note") and by(d, "#map-note")[0].is_displayed())
        assert "not geolocated" in by(d, "#map-note")[0].text
        assert not by(d, "#map")[0].is_displayed()
        assert not console_errors(d), console_errors(d)


def test_live_run_grows_without_reload(driver: Any, run_dir: Path, tmp_path: Path) -> None:
    """A run still being written (as `ped run udp://...` does): new tracks appear in the open page."""
    import shutil
    import sqlite3

    live = tmp_path / "live"
    live.mkdir()
    shutil.copy(run_dir / "ped.sqlite", live / "ped.sqlite")
    con = sqlite3.connect(live / "ped.sqlite")
    with con:
        con.execute("DELETE FROM points WHERE track_id > 1")
        con.execute("DELETE FROM tracks WHERE id > 1")
    con.close()
    later = [t for t in tracks(run_dir) if t.id > 1]
    with workbench(live) as url:
        d = driver
        open_page(d, url + "/")
        assert len(by(d, "[data-track-id][data-state]")) == 1
        with ReviewStore(live, create=False) as st:
            st.upsert_tracks(later)  # what the pipeline's periodic flush does
        wait(d, lambda d: len(by(d, "[data-track-id][data-state]")) == 1 + len(later))
        assert not console_errors(d), console_errors(d)
