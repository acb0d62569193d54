"""ST 0601: MISB's worked example packet, checksum policy, encoder round trips (hypothesis)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kestrel.klv import KlvDecoder, decode, st0601, to_jsonable, to_metadata
from kestrel.klv.mapping import checksum16


def example(ref_data: Path) -> tuple[bytes, dict[int, str]]:
    text = (ref_data / "fmv" / "st0601_example_packet.md").read_text()
    data = bytes.fromhex("".join(re.findall(r"^[0-9A-F]+$", text, re.M)))
    table = dict((int(t), v.strip()) for t, v in re.findall(r"^\| (\d+) \| (.+?) \|$", text, re.M))
    return data, table


def test_worked_example_decodes_to_every_listed_value(ref_data: Path) -> None:
    data, table = example(ref_data)
    assert len(data) == 228 and len(table) >= 25
    [pkt] = decode(data)
    assert pkt.error is None and pkt.set_name == "ST0601" and pkt.checksum_ok is True
    for tag, text in table.items():
        got = pkt.tags[tag]
        if tag == 2:  # "2009-01-12 22:08:22 UTC (bytes 00 04 60 50 58 4E 01 80)"
            raw = bytes.fromhex(re.search(r"bytes ([0-9A-F ]+)\)", text).group(1).replace(" ", ""))  # type: ignore[union-attr]
            assert got == int.from_bytes(raw, "big")
            import datetime as dt

            stamp = dt.datetime.fromtimestamp(got / 1e6, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
            assert stamp == text[:19]
        elif tag == 1:
            assert got == int(text, 16) == 0xAA43
        elif text.startswith('"'):
            assert got == text.strip('"')
        elif tag == 48:
            sec = got.tags
            assert (sec[1], sec[2], sec[3], sec[12], sec[13], sec[22]) == (1, 7, "//USA", 7, "USA", 10)
        elif tag == 94:
            assert got["version"] == 1
            uuids = re.findall(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", text)
            assert [got["sensor-id"], got["platform-id"]] == uuids
        else:
            want = float(text)
            assert math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-9), (tag, got, want)


def test_one_changed_byte_is_flagged_and_counted(ref_data: Path) -> None:
    data, _ = example(ref_data)
    assert checksum16(data[:-2]) == 0xAA43
    for i in (0x1A, 60, 180, len(data) - 5):  # inside the value bytes of several items
        bad = bytearray(data)
        bad[i] ^= 0x01
        dec = KlvDecoder()
        [pkt] = dec.feed(bytes(bad)) + dec.flush()
        assert pkt.checksum_ok is False and pkt.error is None  # flagged, still decoded
        assert dec.stats.checksum_failures == 1
        dropping = KlvDecoder(drop_bad_checksum=True)
        assert dropping.feed(bytes(bad)) + dropping.flush() == []
        assert dropping.stats.dropped == 1 and dropping.stats.checksum_failures == 1
    bad = bytearray(data)
    bad[100] ^= 0x01  # a length byte: the structure breaks -> an error record, checksum still judged
    [pkt] = decode(bytes(bad))
    assert pkt.error is not None and pkt.checksum_ok is False


def test_metadata_from_worked_example(ref_data: Path) -> None:
    data, _ = example(ref_data)
    md = to_metadata(decode(data)[0])
    assert md is not None
    assert md.sensor_lat == pytest.approx(60.176822966978335)
    assert md.frame_center_lon == pytest.approx(29.157890122923018)
    assert md.platform_heading == pytest.approx(159.97436484321355)
    assert md.time_us == 1231798102000000 and md.mission_id == "Mission 12"
    assert md.corners is None  # the example carries no corners


def test_json_view_is_plain_json(ref_data: Path) -> None:
    import json

    data, _ = example(ref_data)
    j = json.loads(json.dumps(to_jsonable(decode(data)[0])))
    assert j["set"] == "ST0601" and j["checksum_ok"] is True
    assert j["tags"]["3"] == "Mission 12" and j["tags"]["48"]["3"] == "//USA"


def test_corner_offsets_are_relative_to_frame_centre() -> None:
    vals = {23: 10.0, 24: 20.0, 26: 0.01, 27: -0.01, 28: 0.01, 29: 0.01, 30: -0.01, 31: 0.01, 32: -0.01, 33: -0.01}
    md = to_metadata(decode(st0601.encode(vals, timestamp_us=1))[0])
    assert md is not None and md.corners is not None
    assert md.corners[0] == pytest.approx((10.01, 19.99), abs=3e-6)
    assert md.corners[2] == pytest.approx((9.99, 20.01), abs=3e-6)
    full = dict(vals) | {82: 1.0, 83: 2.0, 84: 3.0, 85: 4.0, 86: 5.0, 87: 6.0, 88: 7.0, 89: 8.0, 90: -45.0, 91: 60.0}
    md = to_metadata(decode(st0601.encode(full, timestamp_us=1))[0])
    assert md is not None and md.corners is not None
    assert [c for xy in md.corners for c in xy] == pytest.approx([1, 2, 3, 4, 5, 6, 7, 8], abs=1e-7)
    assert (md.platform_pitch, md.platform_roll) == pytest.approx((-45.0, 60.0), abs=1e-7)


def test_reserved_error_value_decodes_as_nan() -> None:
    raw = st0601.encode({6: math.nan}, timestamp_us=0)
    assert b"\x06\x02\x80\x00" in raw
    pkt = decode(raw)[0]
    assert math.isnan(pkt.tags[6]) and to_metadata(pkt).platform_pitch is None  # type: ignore[union-attr]


# --- encode -> decode round trips ---------------------------------------------------------
def _float_tags() -> list[int]:
    return [t for t, it in st0601.TABLE.items() if it.codec.kind == "float"]


@st.composite
def st0601_values(draw: st.DrawFn) -> dict[int, object]:
    vals: dict[int, object] = {}
    for tag in draw(st.lists(st.sampled_from(_float_tags()), unique=True, max_size=30)):
        m = st0601.TABLE[tag].codec.map  # type: ignore[attr-defined]
        vals[tag] = draw(st.floats(m.lo, m.hi, allow_nan=False))
    for tag in draw(st.lists(st.sampled_from([3, 4, 10, 11, 12, 59, 70, 106, 129]), unique=True)):
        vals[tag] = draw(st.text(min_size=1, max_size=40))  # empty = "no value"
    for tag, bits in ((60, 16), (61, 8), (62, 16), (65, 8), (123, 8), (34, 8), (63, 8), (47, 8)):
        if draw(st.booleans()):
            vals[tag] = draw(st.integers(0, (1 << bits) - 1))
    if draw(st.booleans()):
        vals[110] = draw(st.integers(0, 2**32 - 1))
    if draw(st.booleans()):
        vals[136] = draw(st.integers(-(2**31), 2**31 - 1))
    if draw(st.booleans()):
        vals[127] = {"numerator": draw(st.integers(1, 10**6)), "denominator": draw(st.integers(1, 10**4))}
    return vals


@settings(max_examples=150, deadline=None)
@given(st0601_values(), st.integers(0, 2**63))
def test_encode_decode_round_trip(vals: dict[int, object], ts: int) -> None:
    raw = st0601.encode(vals, timestamp_us=ts)
    [pkt] = decode(raw)
    assert pkt.error is None and pkt.checksum_ok is True
    assert pkt.tags[2] == ts and pkt.tags[65] == vals.get(65, st0601.VERSION)
    for tag, v in vals.items():
        got = pkt.tags[tag]
        codec = st0601.TABLE[tag].codec
        if codec.kind == "float":
            assert abs(got - v) <= codec.resolution() + 1e-9 * abs(v), (tag, v, got)  # IMAPB truncates  # type: ignore[attr-defined, operator]
        elif tag == 127 and v["denominator"] == 1:  # type: ignore[index]
            assert got == v
        else:
            assert got == v, tag
    # and the encoder is stable: re-encoding the decoded values gives the same bytes
    again = {t: v for t, v in pkt.tags.items() if t != 1}
    assert st0601.encode(again, version=None) == raw


def test_tags_above_127_use_two_byte_ber_oid() -> None:
    raw = st0601.encode({129: "T1", 143: {"local-id": 1, "universal-id": None}}, timestamp_us=5)
    assert b"\x81\x01\x02T1" in raw and b"\x81\x0f\x01\x01" in raw
    assert decode(raw)[0].tags[129] == "T1"


def test_ellipsoid_heights_kept_apart_from_msl() -> None:
    md = to_metadata(decode(st0601.encode({15: 1000.0, 75: 1030.0, 78: 55.0}, timestamp_us=1))[0])
    assert md is not None
    assert md.sensor_alt == pytest.approx(1000.0, abs=0.2) and md.sensor_hae == pytest.approx(1030.0, abs=0.2)
    assert md.frame_center_elev is None and md.frame_center_hae == pytest.approx(55.0, abs=0.2)
    md = to_metadata(decode(st0601.encode({104: 25000.0}, timestamp_us=1))[0])
    assert md is not None and md.sensor_hae == pytest.approx(25000.0, abs=0.01)
