"""Bad input never raises: garbage, truncation, splits at any byte; BER/IMAPB/FLINT primitives."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kestrel.klv import KlvDecoder, decode, st0601
from kestrel.klv.ber import (
    KlvError,
    encode_ber_length,
    encode_ber_oid,
    read_ber_length,
    read_ber_oid,
)
from kestrel.klv.imapb import Imap, ImapSpecial
from kestrel.klv.mapping import Flint

PKT = st0601.encode({3: "M1", 5: 90.0, 13: 38.5, 14: -77.25, 48: {1: 1, 2: 7, 3: "//USA"}, 129: "T"},
                    timestamp_us=1_700_000_000_000_000)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_never_raise(data: bytes) -> None:
    for p in decode(data):
        assert p.error is not None or p.set_name in ("ST0601", "ST0903", "ST0102", "EG0104", "unknown")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40), st.integers(1, len(PKT)), st.binary(max_size=40))
def test_garbage_around_a_packet_and_truncation(pre: bytes, cut: int, post: bytes) -> None:
    pkts = decode(pre + PKT + post)
    good = [p for p in pkts if p.error is None and p.set_name == "ST0601"]
    if UL_FREE(pre):
        assert len(good) >= 1 and good[0].tags[3] == "M1" and good[0].checksum_ok
    trunc = decode(PKT[:cut])
    if cut < len(PKT):
        assert all(p.error is not None for p in trunc) and trunc  # truncated -> error record
    else:
        assert trunc[0].error is None


def UL_FREE(b: bytes) -> bool:  # garbage that cannot itself start (or swallow) a key
    return 0x06 not in b


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 3 * len(PKT)), max_size=6), st.integers(1, 4))
def test_stream_split_anywhere_equals_one_shot(cuts: list[int], n: int) -> None:
    data = b"\x00\x01junk" + PKT * n + b"\x06\x0e"
    cuts = sorted({c for c in cuts if c < len(data)})
    dec = KlvDecoder()
    out = []
    prev = 0
    for c in [*cuts, len(data)]:
        out += dec.feed(data[prev:c])
        prev = c
    out += dec.flush()
    ref = decode(data)
    assert [(p.set_name, p.error is None, p.raw) for p in out] == [(p.set_name, p.error is None, p.raw) for p in ref]
    assert sum(1 for p in out if p.set_name == "ST0601" and p.error is None) == n
    assert dec.stats.packets["ST0601"] == n and dec.stats.errors == 2  # leading junk + trailing stub


def test_oversize_length_is_bounded() -> None:
    head = st0601.KEY + b"\x84\x7f\xff\xff\xff"  # claims a 2 GiB value
    dec = KlvDecoder(max_packet=1 << 16)
    out = dec.feed(head + b"\x00" * 100 + PKT) + dec.flush()
    assert out[0].error is not None and "exceeds" in out[0].error
    assert any(p.error is None and p.set_name == "ST0601" for p in out)


def test_nested_set_that_does_not_parse_keeps_raw_bytes() -> None:
    raw = st0601.encode({48: b"\x01\x05\x01"}, timestamp_us=0)  # ST 0102 item claiming 5 bytes, has 1
    [p] = decode(raw)
    assert p.error is None and p.tags[48] == b"\x01\x05\x01" and p.checksum_ok


def test_checksum_failures_in_real_files_are_counted(ref_data: Path) -> None:
    import re

    text = (ref_data / "fmv" / "st0601_example_packet.md").read_text()
    data = bytes.fromhex("".join(re.findall(r"^[0-9A-F]+$", text, re.M)))
    # klvdata's sample: the same packet with tag 20's value hand-edited, checksum left stale
    i = data.index(b"\x14\x04") + 2
    edited = data[:i] + b"\x00\x00\x00\x01" + data[i + 4 :]
    dec = KlvDecoder()
    out = dec.feed(data + edited + data) + dec.flush()
    assert [p.checksum_ok for p in out] == [True, False, True]
    assert dec.stats.checksum_failures == 1 and dec.stats.packets["ST0601"] == 3


# --- primitives ------------------------------------------------------------------------------
@given(st.integers(0, 2**64 - 1))
def test_ber_length_round_trip(n: int) -> None:
    b = encode_ber_length(n)
    assert read_ber_length(b, 0, len(b)) == (n, len(b))
    assert (len(b) == 1) == (n < 128)


@given(st.integers(0, 2**62))
def test_ber_oid_round_trip(n: int) -> None:
    b = encode_ber_oid(n)
    assert read_ber_oid(b, 0, len(b)) == (n, len(b))
    assert (len(b) == 2) == (128 <= n < 16384)


def test_ber_errors() -> None:
    with pytest.raises(KlvError):
        read_ber_length(b"\x82\x01", 0, 2)
    with pytest.raises(KlvError):
        read_ber_oid(b"\x81\x81", 0, 2)


def test_imapb_st1201_examples() -> None:
    # ST 1201 worked example: range [-900, 19000], 2 bytes, 10 m -> 0x0384 ... (IMAPB rounds down)
    m = Imap(-900.0, 19000.0, 2)
    assert m.encode(10.0) == (910).to_bytes(2, "big")
    assert m.decode(m.encode(10.0)) == 10.0
    assert m.decode(b"\xc8\x00") == math.inf and m.decode(b"\xe8\x00") == -math.inf
    assert m.decode(b"\xe0\x00") == ImapSpecial("below_min") and m.decode(b"\xe1\x00") == ImapSpecial("above_max")
    assert m.decode(b"\xd0\x05") == ImapSpecial("qnan", False, 5)
    assert m.decode(m.encode(ImapSpecial("snan", True, 3))) == ImapSpecial("snan", True, 3)
    z = Imap(-180.0, 180.0, 4)
    assert z.decode(z.encode(0.0)) == 0.0  # zero exact when the range straddles it


@given(st.floats(-20, 20), st.sampled_from([1, 2, 4]))
def test_flint_signed_round_trip(v: float, n: int) -> None:
    f = Flint(-20.0, 20.0, n, True)
    assert abs(f.decode(f.encode(v, n)) - v) <= f.resolution(n) / 2 + 1e-12
    assert math.isnan(f.decode(f.encode(None, n)))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(sorted(st0601.TABLE)), st.binary(max_size=60)), max_size=25))
def test_random_item_values_never_raise(items: list[tuple[int, bytes]]) -> None:
    """A well-formed ST 0601 packet whose item values (nested sets and packs included) are junk:
    it decodes, the checksum holds, unreadable items keep their raw bytes."""
    from kestrel.klv.ber import encode_ber_length, encode_tlv
    from kestrel.klv.mapping import checksum16

    body = b"".join(encode_tlv(t, v) for t, v in items if t != 1) + b"\x01\x02"
    head = st0601.KEY + encode_ber_length(len(body) + 2) + body
    [p] = decode(head + checksum16(head).to_bytes(2, "big"))
    assert p.error is None and p.checksum_ok is True


def test_deep_nesting_is_not_fatal() -> None:
    from kestrel.klv.ber import encode_tlv

    inner = b""
    for _ in range(3000):  # ST 1607 amend sets nested 3000 deep
        inner = encode_tlv(101, inner)
    [p] = decode(st0601.encode({101: inner}, timestamp_us=0))
    assert p.set_name == "ST0601"
