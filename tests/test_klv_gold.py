"""Our decoder against KWIVER's gold decode of every KLV packet in h265_tricky_klv.ts."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import pytest

from kestrel.klv import decode, st0601
from kestrel.klv.ber import UL_PREFIX

from .test_klv_gold_compare import compare_set

# Items whose nested standard we keep as raw bytes (lossless, not interpreted yet), as
# "/"-joined tag paths below ST 0601 (list indices dropped). Everything else must equal the gold.
RAW_ITEMS: set[str] = set()


def _tag_path(err: str) -> str:
    import re

    path = err.split(" ", 1)[1].split("/", 1)[1]
    return re.sub(r"\[\d+\]", "", path)


def klv_payloads(ts: Path) -> dict[int, list[bytes]]:
    """KLV access units per data stream, in file order (PyAV demux; 5-byte ST 1402 AU cell
    header of synchronous metadata stripped when present)."""
    av = pytest.importorskip("av")
    out: dict[int, list[bytes]] = {}
    with av.open(str(ts)) as c:
        for p in c.demux():
            if p.stream.type != "data" or not p.size:
                continue
            b = bytes(p)
            if not b.startswith(UL_PREFIX) and b[5:9] == UL_PREFIX:
                b = b[5:]
            out.setdefault(p.stream.index, []).append(b)
    return out


@pytest.fixture(scope="module")
def gold(ref_data: Path) -> list[dict]:
    return json.loads(zlib.decompress((ref_data / "fmv" / "video_stream_tricky_klv.json.zz").read_bytes()))


@pytest.fixture(scope="module")
def ours(ref_data: Path) -> dict[int, list]:
    return {s: [decode(b) for b in bufs] for s, bufs in klv_payloads(ref_data / "fmv" / "h265_tricky_klv.ts").items()}


def test_every_packet_matches_kwiver_gold(gold: list[dict], ours: dict[int, list]) -> None:
    by_stream: dict[int, list[dict]] = {}
    for g in gold:
        by_stream.setdefault(g["stream-index"], []).append(g)
    ours_flat = {s: [p for pkts in v for p in pkts] for s, v in ours.items() if any(v)}
    assert sorted(by_stream) == sorted(s for s, v in ours_flat.items() if v)
    errors: list[str] = []
    n_values = 0
    for stream, golds in by_stream.items():
        mine = ours_flat[stream]
        assert len(mine) == len(golds), f"stream {stream}: {len(mine)} packets, gold has {len(golds)}"
        for i, (g, p) in enumerate(zip(golds, mine, strict=True)):
            assert g["key"]["hex"].replace(" ", "") == p.key.hex()
            assert p.error is None and p.set_name == "ST0601"
            assert p.checksum_ok is True
            errors += compare_set(g["value"], p.tags, st0601.SPEC, f"s{stream}#{i}")
            n_values += len(g["value"])
    assert n_values > 4000  # the walk really covered the file (90 packets, 139 items in the big ones)
    raw = {_tag_path(e) for e in errors if e.startswith("RAW ")}
    errors = [e for e in errors if not e.startswith("RAW ")]
    assert not errors, f"{len(errors)} mismatches, first: " + "\n".join(errors[:15])
    assert raw <= RAW_ITEMS, f"undeclared raw items: {sorted(raw - RAW_ITEMS)}"
    print("uninterpreted (raw) items:", sorted(raw))


def test_our_encoder_reproduces_every_gold_packet(gold: list[dict], ours: dict[int, list]) -> None:
    """Encode every decoded packet again with st0601.encode, decode that, and compare with KWIVER's
    gold: the encoder covers every tag the file uses (nested sets and packs included)."""
    by_stream: dict[int, list[dict]] = {}
    for g in gold:
        by_stream.setdefault(g["stream-index"], []).append(g)
    errors: list[str] = []
    identical = 0
    for stream, golds in by_stream.items():
        mine = [p for pkts in ours[stream] for p in pkts]
        for i, (g, p) in enumerate(zip(golds, mine, strict=True)):
            raw = st0601.encode({k: v for k, v in p.tags.items() if k != 1}, version=None)
            identical += raw == p.raw
            [again] = decode(raw)
            assert again.error is None and again.checksum_ok is True
            errors += compare_set(g["value"], again.tags, st0601.SPEC, f"re-encoded s{stream}#{i}")
    assert not errors, f"{len(errors)} mismatches, first: " + "\n".join(errors[:15])
    assert identical >= 60  # the small packets come back byte for byte


def test_json_view_of_every_packet(ours: dict[int, list]) -> None:
    """`to_jsonable` (what `kestrel fmv info --json` prints) is plain JSON for every nested type."""
    from kestrel.klv import to_jsonable

    for pkts in ours.values():
        for p in (p for ps in pkts for p in ps):
            j = json.loads(json.dumps(to_jsonable(p), allow_nan=False))
            assert j["set"] == "ST0601" and j["checksum_ok"] is True and "2" in j["tags"]
            if "74" in j["tags"]:
                targets = j["tags"]["74"]["101"]
                assert targets[1]["id"] == 1234 and targets[1]["tags"]["19"] == 872


def _raw_paths(v: object, path: str = "") -> set[str]:
    from kestrel.klv import KlvPacket
    from kestrel.klv.st0903 import VTarget

    if isinstance(v, bytes):
        return {path}
    out: set[str] = set()
    if isinstance(v, KlvPacket | VTarget):
        for k, x in v.tags.items():
            out |= _raw_paths(x, f"{path}/{k}")
    elif isinstance(v, list):
        for x in v:
            out |= _raw_paths(x, path)
    elif isinstance(v, dict):
        for k, x in v.items():
            out |= _raw_paths(x, f"{path}.{k}")
    return out


@pytest.mark.parametrize("name", ["h264_klv.ts", "mpeg2_klv.ts"])
def test_kwiver_sample_files_decode_fully(ref_data: Path, name: str) -> None:
    """KWIVER's 30-frame samples (139 ST 0601 items with every nested set): no errors, valid
    checksums, and nothing left uninterpreted but the two items the standards define as opaque
    bytes (ST 0806 user data, ST 0903 VChip embedded image)."""
    [bufs] = klv_payloads(ref_data / "fmv" / name).values()
    pkts = [p for b in bufs for p in decode(b)]
    assert len(pkts) == 30
    assert all(p.set_name == "ST0601" and p.error is None and p.checksum_ok for p in pkts)
    assert max(len(p.tags) for p in pkts) >= 139
    raw = set().union(*(_raw_paths(p) for p in pkts))
    assert raw == {"/73/11/2", "/74/101/105/3"}
    assert st0601.TABLE[73].codec.spec.table[11].codec.spec.table[2].codec.kind == "bytes"  # type: ignore[attr-defined]
