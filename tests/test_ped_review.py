"""Review store: verdicts are kept, audited, and never overwritten by the pipeline's re-writes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from kestrel.ped.records import Track, TrackPoint
from kestrel.ped.review import (
    PlatformState,
    ReviewError,
    ReviewStore,
    StoredPoint,
    StoredTrack,
    stored_from_track,
)


def make_track(tid: int, n: int = 5, lat0: float = 38.0, lon0: float = -77.0) -> StoredTrack:
    pts = [StoredPoint(f, f / 30, 100 + f, 50, 10, 8, lat0 + f * 1e-5, lon0) for f in range(n)]
    return StoredTrack(id=tid, points=pts, frames=n, first_seen=pts[0].t, last_seen=pts[-1].t, speed=3.3,
                       heading=0.0, lat=pts[-1].lat, lon=pts[-1].lon, confidence=0.9)


def test_confirm_reject_and_audit(tmp_path: Path) -> None:
    with ReviewStore(tmp_path) as st:
        st.upsert_tracks([make_track(1), make_track(2)])
        got = st.review(1, "confirmed", label="vehicle", affiliation="hostile", analyst="alice")
        assert (got.state, got.label, got.affiliation, got.analyst) == ("confirmed", "vehicle", "hostile", "alice")
        assert got.reviewed_at and got.reviewed_at.endswith("Z")
        st.review(2, "rejected", analyst="bob")
        st.review(1, "confirmed", label="person", analyst="carol")  # relabel keeps the affiliation
        assert [t.state for t in st.tracks()] == ["confirmed", "rejected"]
        assert st.track(1).affiliation == "hostile"  # type: ignore[union-attr]
        assert [h["analyst"] for h in st.history(1)] == ["alice", "carol"]
        assert [t.id for t in st.tracks(["confirmed"])] == [1]


def test_pipeline_rewrite_keeps_verdict(tmp_path: Path) -> None:
    with ReviewStore(tmp_path) as st:
        st.upsert_tracks([make_track(7, n=3)])
        st.review(7, "confirmed", label="vessel", affiliation="neutral", analyst="x")
        st.upsert_tracks([make_track(7, n=9)])  # the live run goes on writing geometry
        t = st.track(7)
        assert t is not None and t.state == "confirmed" and t.label == "vessel"
        assert t.frames == 9 and len(t.points) == 9


def test_bad_review_requests(tmp_path: Path) -> None:
    with ReviewStore(tmp_path) as st:
        st.upsert_tracks([make_track(1)])
        with pytest.raises(ReviewError, match="no track 99"):
            st.review(99, "confirmed")
        with pytest.raises(ReviewError, match="label"):
            st.review(1, "confirmed", label="tank")
        with pytest.raises(ReviewError, match="affiliation"):
            st.review(1, "confirmed", affiliation="enemy")
        assert st.track(1).state == "pending"  # type: ignore[union-attr]


def test_store_is_wal_and_readable_by_a_second_connection(tmp_path: Path) -> None:
    st = ReviewStore(tmp_path)
    st.upsert_tracks([make_track(1)])
    st.add_platform([PlatformState(0, 0.0, lat=38.0, lon=-77.0, alt=900.0, heading=90.0, hfov=20.0,
                                   footprint=[(38.01, -77.01), (38.01, -76.99), (37.99, -76.99), (37.99, -77.01)])])
    st.set_meta(source="x.ts", geolocated=True)
    other = sqlite3.connect(tmp_path / "ped.sqlite")
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert other.execute("SELECT COUNT(*) FROM points").fetchone()[0] == 5
    st.close()
    with ReviewStore(tmp_path, create=False) as again:
        p = again.latest_platform()
        assert p is not None and p.footprint and p.footprint[0] == (38.01, -77.01)
        assert again.meta() == {"source": "x.ts", "geolocated": True}
    with pytest.raises(FileNotFoundError):
        ReviewStore(tmp_path / "nothing", create=False)


def test_failed_transaction_writes_nothing(tmp_path: Path) -> None:
    with ReviewStore(tmp_path) as st:
        bad = make_track(2)
        bad.points[3].x = None  # type: ignore[assignment]  # NOT NULL violation mid-batch
        with pytest.raises(sqlite3.IntegrityError):
            st.upsert_tracks([make_track(1), bad])
        assert st.tracks() == []


def test_from_tracker_track() -> None:
    tr = Track(id=4, points=[TrackPoint(10, 0.5, (10, 20, 30, 60), 0.8, 38.0, -77.0, 5.0),
                             TrackPoint(11, None, (12, 20, 32, 60), 0.6)], speed_mps=2.0, heading_deg=45.0)
    st = stored_from_track(tr, fps=10.0)
    assert st.id == 4 and st.frames == 2 and st.state == "pending"
    assert st.points[0].x == 20 and st.points[0].w == 20 and st.points[1].t == pytest.approx(1.1)
    assert (st.lat, st.lon) == (38.0, -77.0) and st.confidence == pytest.approx(0.7)
