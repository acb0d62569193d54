"""ST 0903 VMTI: jmisb's five packets, encode -> decode round trips, nesting in ST 0601."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from kestrel.klv import decode, st0601, st0903, st0903_sets
from kestrel.klv.st0903 import VTarget, pixel_number, row_column


def test_jmisb_five_packets(ref_data: Path) -> None:
    pkts = decode((ref_data / "fmv" / "st0903_jmisb_5packets.bin").read_bytes())
    assert len(pkts) == 5
    ids = []
    for p in pkts:
        assert p.set_name == "ST0903" and p.error is None and p.checksum_ok is True
        t = p.tags
        assert t[3] == "Example Targeting System" and t[10] == "EO Nose" and t[4] == 4
        width, height = t[8], t[9]
        assert (width, height) == (1000, 600)
        targets = t[101]
        assert len(targets) == 2
        for tgt in targets:
            ids.append(tgt.target_id)
            for tag in (1, 2, 3):  # centroid, top-left, bottom-right pixel numbers inside the frame
                row, col = row_column(tgt.tags[tag], width)
                assert 0 <= row < height and 0 <= col < width
            assert 0 <= tgt.tags[5] <= 100  # confidence
            assert tgt.box(width) is not None
        assert abs(t[2] - 1664769469971288) < 10_000  # all five within 10 ms of the first
    assert ids == list(range(10))


def test_jmisb_packets_reencode_byte_identical(ref_data: Path) -> None:
    data = (ref_data / "fmv" / "st0903_jmisb_5packets.bin").read_bytes()
    pkts = decode(data)
    again = b"".join(st0903.encode({k: v for k, v in p.tags.items() if k != 1}, version=None, fill_count=False) for p in pkts)
    assert again == data  # jmisb's bytes, checksums included, reproduced by our encoder


loc = st.fixed_dictionaries({
    "latitude": st.floats(-89.9, 89.9), "longitude": st.floats(-179.9, 179.9), "altitude": st.floats(-900, 18000),
    "sigma": st.none(), "rho": st.none()})


@st.composite
def vtarget(draw: st.DrawFn, width: int) -> VTarget:
    r0, r1 = sorted(draw(st.lists(st.integers(0, 719), min_size=2, max_size=2)))
    c0, c1 = sorted(draw(st.lists(st.integers(0, width - 1), min_size=2, max_size=2)))
    extra = {5: draw(st.integers(0, 100))}
    if draw(st.booleans()):
        extra[17] = draw(loc)
    return VTarget.from_box(draw(st.integers(0, 2**20)), r0, c0, r1, c1, width, extra)


@settings(max_examples=100, deadline=None)
@given(st.lists(vtarget(1280), max_size=8), st.integers(0, 2**63), st.integers(0, 10**6))
def test_st0903_round_trip(targets: list[VTarget], ts: int, frame: int) -> None:
    raw = st0903.encode({3: "kestrel", 7: frame, 8: 1280, 9: 720, 101: targets}, timestamp_us=ts)
    [p] = decode(raw)
    assert p.error is None and p.checksum_ok is True and p.set_name == "ST0903"
    assert (p.tags[2], p.tags[7], p.tags[6]) == (ts, frame, len(targets))
    got = p.tags.get(101) or []
    assert [g.target_id for g in got] == [t.target_id for t in targets]
    for g, t in zip(got, targets, strict=True):
        assert g.box(1280) == t.box(1280)
        for tag in (1, 2, 3, 5, 19, 20):
            assert g.tags[tag] == t.tags[tag]
        if 17 in t.tags:
            a, b = g.tags[17], t.tags[17]
            assert abs(a["latitude"] - b["latitude"]) <= st0903_sets._LAT.precision()  # IMAPB truncates: one step
            assert abs(a["longitude"] - b["longitude"]) <= st0903_sets._LON.precision()
            assert abs(a["altitude"] - b["altitude"]) <= st0903_sets._HAE.precision()  # 1 m: 2-byte IMAPB step
    # nested in ST 0601 tag 74 (no own checksum there)
    outer = decode(st0601.encode({74: {3: "kestrel", 101: targets}}, timestamp_us=ts))[0]
    assert outer.checksum_ok is True
    assert [g.target_id for g in outer.tags[74].tags.get(101) or []] == [t.target_id for t in targets]


def test_pixel_numbers() -> None:
    assert pixel_number(0, 0, 1280) == 1
    assert row_column(pixel_number(719, 1279, 1280), 1280) == (719, 1279)
