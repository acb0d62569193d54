"""The streaming multipart parser against the standard library's MIME parser (`email`), for bodies
cut into pieces at arbitrary places, as they arrive from a socket."""

from __future__ import annotations

import email.parser
import email.policy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kestrel.marti.multipart import MultipartError, MultipartParser, PartData, PartEnd, PartStart, boundary_of

B = "----WebKitFormBoundaryX3bY"


def _body(parts: list[tuple[str, str | None, bytes]]) -> bytes:
    out = b"preamble ignored\r\n"
    for name, filename, data in parts:
        fn = f'; filename="{filename}"' if filename else ""
        out += (f"--{B}\r\nContent-Disposition: form-data; name=\"{name}\"{fn}\r\n"
                f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + b"\r\n"
    return out + f"--{B}--\r\nepilogue".encode()


def _parse(body: bytes, cuts: list[int]) -> list[tuple[str, str | None, bytes]]:
    p = MultipartParser(boundary_of(f"multipart/form-data; boundary={B}"))
    out: list[tuple[str, str | None, bytes]] = []
    pos = 0
    for c in [*sorted(set(cuts)), len(body)]:
        for ev in p.feed(body[pos:c]):
            if isinstance(ev, PartStart):
                out.append((ev.name, ev.filename, b""))
            elif isinstance(ev, PartData):
                n, f, d = out[-1]
                out[-1] = (n, f, d + ev.data)
            else:
                assert isinstance(ev, PartEnd)
        pos = c
    p.end()
    return out


def _reference(body: bytes) -> list[tuple[str, str | None, bytes]]:
    head = f"Content-Type: multipart/form-data; boundary=\"{B}\"\r\n\r\n".encode()
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    return [(p.get_param("name", header="content-disposition"), p.get_filename(), p.get_payload(decode=True))
            for p in msg.iter_parts()]


payloads = st.binary(max_size=300).map(lambda b: b.replace(B.encode(), b"x"))


@settings(max_examples=200, deadline=None)  # no clock: a loaded machine must not fail it
@given(st.lists(st.tuples(st.sampled_from(["assetfile", "resource", "meta"]), payloads), min_size=1, max_size=4),
       st.lists(st.integers(min_value=0, max_value=2000), max_size=12))
def test_same_parts_as_the_email_parser_at_any_split(parts: list[tuple[str, bytes]], cuts: list[int]) -> None:
    # CRLFs right before a delimiter are part of the delimiter (RFC 2046), as for `email`
    items = [(n, "pkg.zip" if n == "assetfile" else None, d) for n, d in parts]
    body = _body(items)
    got = _parse(body, [c % (len(body) + 1) for c in cuts])
    assert got == _reference(body) == items


def test_refusals() -> None:
    with pytest.raises(MultipartError):
        boundary_of("application/zip")
    with pytest.raises(MultipartError):
        boundary_of("multipart/form-data")
    with pytest.raises(MultipartError):  # ended before the closing delimiter
        _parse(_body([("assetfile", "a", b"abc")])[:-20], [])
    p = MultipartParser(B)
    with pytest.raises(MultipartError):  # a part without a name
        p.feed(f"--{B}\r\nContent-Disposition: attachment\r\n\r\nx\r\n--{B}--".encode())
