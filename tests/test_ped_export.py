"""`kestrel ped export`: the annotated video decoded again with PyAV (same frame count as the
source, boxes burned in where the store says, in the verdict's colour, picture untouched
elsewhere) and the HTML report parsed with lxml (self-contained, one row per track with analyst
and time, thumbnails that decode as JPEG, a map path per geolocated track)."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
import pytest

from kestrel.ped.export import STATE_BGR
from kestrel.ped.review import ReviewStore
from tests.workbench_support import kestrel, make_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = make_run(tmp_path_factory.mktemp("export"), seconds="2", seed="11")
    assert kestrel("ped", "review", str(d), "--confirm", "1", "--label", "vehicle", "--analyst", "kim") == 0
    return d


def decode(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as c:
        return [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]


def test_annotated_video(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "annotated.mp4"
    assert kestrel("ped", "export", str(run_dir), "--video", str(out)) == 0
    got, src = decode(out), decode(run_dir.parent / "synth.ts")
    assert len(got) == len(src)
    with ReviewStore(run_dir, create=False) as st:
        t = st.track(1)
    assert t is not None and t.state == "confirmed"
    green = np.array(STATE_BGR["confirmed"], np.float32)
    for p in t.points[:: max(len(t.points) // 5, 1)]:
        img = got[p.frame].astype(np.float32)
        x1, y1 = int(round(p.x - p.w / 2)), int(round(p.y - p.h / 2))
        x2 = int(round(p.x + p.w / 2))
        edge = img[y1, x1 + 1 : x2]  # the top edge of the burned-in box
        assert np.median(np.abs(edge - green)) < 40, (p.frame, np.median(np.abs(edge - green)))
    # Away from every box the picture is the source's (up to H.264 re-encoding).
    h = src[0].shape[0]
    assert np.median(np.abs(got[5][h - 40 :].astype(float) - src[5][h - 40 :].astype(float))) < 6


def test_report_is_self_contained(run_dir: Path, tmp_path: Path) -> None:
    import cv2
    from lxml import html

    out = tmp_path / "report.html"
    assert kestrel("ped", "export", str(run_dir), "--report", str(out)) == 0
    text = out.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)  # nothing fetched from anywhere
    doc = html.fromstring(text)
    with ReviewStore(run_dir, create=False) as st:
        stored = {t.id: t for t in st.tracks()}
    rows = doc.xpath("//tr[@data-track-id]")
    assert sorted(int(r.get("data-track-id")) for r in rows) == sorted(stored)
    first = next(r for r in rows if r.get("data-track-id") == "1")
    cells = [c.text_content() for c in first.xpath("td")]
    assert "confirmed" in cells and "kim" in cells and stored[1].reviewed_at in cells
    for img in doc.xpath("//img[@class='thumb']"):
        data = base64.b64decode(img.get("src").split(",", 1)[1])
        assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape == (112, 112, 3)
    assert len(doc.xpath("//img[@class='thumb']")) == len(stored)
    geolocated = sum(1 for t in stored.values() if len(t.ground_path) >= 2)
    assert len(doc.xpath("//svg//polyline")) == geolocated + 1  # + the platform path
    assert doc.xpath("//table[2]//tr[td]")  # the audit trail has kim's decision


def test_export_bad_input(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert kestrel("ped", "export", str(run_dir)) == 2
    assert "nothing to export" in capsys.readouterr().err
    assert kestrel("ped", "export", str(tmp_path / "none"), "--report", str(tmp_path / "r.html")) == 2
    assert kestrel("ped", "export", str(run_dir), "--video", str(tmp_path / "no" / "a.mp4")) == 2
    assert capsys.readouterr().err.count("\n") == 2
