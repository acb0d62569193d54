"""Data packages and files over the Marti API, with requests as ATAK sends them.

ATAK (MissionPackageApi / the data package uploader) first asks `GET /Marti/sync/missionquery?hash=`
(200 = already there, 404 = upload), then `POST /Marti/sync/missionupload?hash=&filename=&creatorUid=`
with one multipart part `assetfile`, reads the body as the content URL, then `PUT
/Marti/api/sync/metadata/{hash}/tool` with `public` or `private` and finds packages with
`GET /Marti/sync/search?tool=public` (answer `text/json`). TAK Server computes the hash itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
from pathlib import Path

from kestrel.marti.shell import ShellLimits
from tests.marti_support import BOUNDARY, arequest, marti_running, multipart
from tests.test_server_support import eventually, run

PKG = b"PK\x03\x04" + bytes(range(256)) * 64  # stands in for a zip (the server never opens it)
SHA = hashlib.sha256(PKG).hexdigest()


def _stored_blobs(data: Path) -> list[Path]:
    return [p for p in (data / "marti" / "files").rglob("*") if p.is_file()]


def _tmp_files(data: Path) -> list[Path]:
    return list((data / "marti" / "tmp").iterdir())


async def _upload(port: int, data: bytes = PKG, name: str = "pkg.zip", claimed: str = "0" * 64,
                  creator: str = "ANDROID-abc", extra: dict[str, str] | None = None):
    body, ct = multipart(data, name)
    return await arequest(port, "POST", f"/Marti/sync/missionupload?hash={claimed}&filename={name}&creatorUid={creator}",
                          body, {"Content-Type": ct, **(extra or {})})


def test_atak_upload_query_download_search_tool_delete(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with marti_running(tmp_path) as r:
            q = await arequest(r.http, "GET", f"/Marti/sync/missionquery?hash={SHA}")
            assert q.status == 404  # not there yet: ATAK uploads
            up = await _upload(r.http)  # the client's hash (all zeros here) is not trusted
            assert up.status == 200 and up.header("content-type", ).startswith("text/plain")
            url = up.body.decode()
            assert url == f"http://127.0.0.1:{r.http}/Marti/sync/content?hash={SHA}"
            q = await arequest(r.http, "GET", f"/Marti/sync/missionquery?hash={SHA}")
            assert (q.status, q.body.decode()) == (200, url)
            got = await arequest(r.http, "GET", url.split(str(r.http), 1)[1])
            assert got.status == 200 and got.body == PKG and hashlib.sha256(got.body).hexdigest() == SHA
            assert 'filename="pkg.zip"' in (got.header("content-disposition") or "")
            s = await arequest(r.http, "GET", "/Marti/sync/search?tool=public")
            assert s.header("content-type") == "text/json"
            res = json.loads(s.body)
            assert res["resultCount"] == 1
            item = res["results"][0]
            assert (item["Hash"], item["UID"], item["Name"], item["Size"]) == (SHA, SHA, "pkg.zip", str(len(PKG)))
            assert item["Keywords"] == ["missionpackage"] and item["CreatorUid"] == "ANDROID-abc"
            t = await arequest(r.http, "PUT", f"/Marti/api/sync/metadata/{SHA}/tool", b"private",
                               {"Content-Type": "text/plain"})
            assert t.status == 200
            assert json.loads((await arequest(r.http, "GET", "/Marti/sync/search?tool=public")).body)["resultCount"] == 0
            assert json.loads((await arequest(r.http, "GET", "/Marti/sync/search?tool=private")).body)["resultCount"] == 1
            d = await arequest(r.http, "DELETE", f"/Marti/api/files/{SHA}")
            assert d.status == 200
            assert (await arequest(r.http, "GET", f"/Marti/sync/content?hash={SHA}")).status == 404
            assert (await arequest(r.http, "DELETE", f"/Marti/api/files/{SHA}")).status == 404
            assert _stored_blobs(tmp_path) == []

    run(scenario())


def test_same_bytes_twice_one_blob_and_expect_100_continue(tmp_path: Path) -> None:
    """Older ATAK sends `Expect: 100-continue`; http.client does not wait for the 100, so the
    exchange is driven by hand on a socket: head, wait for 100, then the body."""

    async def scenario() -> None:
        async with marti_running(tmp_path) as r:
            body, ct = multipart(PKG, "again.zip")
            head = (f"POST /Marti/sync/missionupload?filename=again.zip&creatorUid=X HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    f"Content-Type: {ct}\r\nContent-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n").encode()

            def exchange() -> tuple[bytes, bytes]:
                with socket.create_connection(("127.0.0.1", r.http), timeout=20) as s:
                    s.sendall(head)
                    first = s.recv(1024)
                    s.sendall(body)
                    rest = b""
                    while b"\r\n\r\n" not in rest or not rest.rstrip().endswith(SHA.encode()):
                        chunk = s.recv(65536)
                        if not chunk:
                            break
                        rest += chunk
                    return first, rest

            first, rest = await asyncio.to_thread(exchange)
            assert first.startswith(b"HTTP/1.1 100")
            assert rest.startswith(b"HTTP/1.1 200") and rest.endswith(SHA.encode())
            assert (await _upload(r.http)).status == 200
            assert len(_stored_blobs(tmp_path)) == 1  # stored once by content

    run(scenario())


def test_bad_uploads_store_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with marti_running(tmp_path, max_file=10_000, quota=25_000) as r:
            # over the per-file limit: refused from the declared length, nothing kept
            big = await _upload(r.http, b"x" * 20_000)
            assert big.status == 400
            # a client that sends its whole 3 MB body anyway still reads the 400 (no reset mid-send)
            def push_anyway() -> bytes:
                body, ct = multipart(b"y" * 3_000_000, "huge.zip")
                with socket.create_connection(("127.0.0.1", r.http), timeout=20) as s:
                    s.sendall((f"POST /Marti/sync/missionupload?filename=huge.zip HTTP/1.1\r\nHost: x\r\n"
                               f"Content-Type: {ct}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body)
                    return s.recv(4096)

            assert (await asyncio.to_thread(push_anyway)).startswith(b"HTTP/1.1 400")
            # path-like names are refused (TAK's validator allows a plain file name only)
            for name in ("../../etc/passwd", "a/b.zip", "..", "x\\y.zip"):
                body, ct = multipart(PKG[:100], "p.zip")
                rep = await arequest(r.http, "POST", f"/Marti/sync/missionupload?filename={name}&creatorUid=u",
                                     body, {"Content-Type": ct})
                assert rep.status == 400, name
            # not multipart, or no `assetfile` part
            rep = await arequest(r.http, "POST", "/Marti/sync/missionupload?filename=a.zip", b"raw",
                                 {"Content-Type": "application/zip"})
            assert rep.status == 400
            body, ct = multipart(b"abc", "a.zip", part="other")
            rep = await arequest(r.http, "POST", "/Marti/sync/missionupload?filename=a.zip", body, {"Content-Type": ct})
            assert rep.status == 400
            # truncated multipart (no closing delimiter)
            body, ct = multipart(b"abc", "a.zip")
            rep = await arequest(r.http, "POST", "/Marti/sync/missionupload?filename=a.zip",
                                 body[: -len(BOUNDARY) - 8], {"Content-Type": ct})
            assert rep.status == 400
            # the quota: two files fit, the third does not (and is cut off while it streams)
            assert (await _upload(r.http, b"a" * 9_000, "a.zip")).status == 200
            assert (await _upload(r.http, b"b" * 9_000, "b.zip")).status == 200
            assert (await _upload(r.http, b"c" * 9_000, "c.zip")).status == 400
            assert len(_stored_blobs(tmp_path)) == 2 and _tmp_files(tmp_path) == []
            # unknown or malformed hash: 404 (TAK answers File not found)
            for h in ("0" * 64, "nothex", "../x"):
                assert (await arequest(r.http, "GET", f"/Marti/sync/content?hash={h}")).status == 404
            assert (await arequest(r.http, "GET", "/Marti/sync/missionquery")).status == 400
            names = {i["Name"] for i in json.loads((await arequest(r.http, "GET", "/Marti/sync/search")).body)["results"]}
            assert names == {"a.zip", "b.zip"}

    run(scenario())


def test_connections_over_the_cap_get_503(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with marti_running(tmp_path, limits=ShellLimits(max_connections=1)) as r:
            held = await asyncio.open_connection("127.0.0.1", r.http)  # one idle keep-alive client
            await eventually(lambda: r.marti.shells["http"].active == 1)
            busy = await arequest(r.http, "GET", "/Marti/api/version")
            assert busy.status == 503 and r.marti.shells["http"].refused_busy == 1
            held[1].close()
            await eventually(lambda: r.marti.shells["http"].active == 0)
            assert (await arequest(r.http, "GET", "/Marti/api/version")).status == 200

    run(scenario())


def test_huge_or_slow_body_is_cut_off(tmp_path: Path) -> None:
    limits = ShellLimits(body_timeout=0.5, max_small_body=4096)

    async def scenario() -> None:
        async with marti_running(tmp_path, limits=limits) as r:
            # a declared length far over the limit: 413 before any body is read
            rep = await arequest(r.http, "POST", "/Marti/vcm", b"x" * 5000, {"Content-Type": "application/xml"})
            assert rep.status == 413
            # a chunked body that keeps coming past the limit
            def chunked() -> bytes:
                with socket.create_connection(("127.0.0.1", r.http), timeout=20) as s:
                    s.sendall(b"POST /Marti/vcm HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
                    try:
                        for _ in range(10):
                            s.sendall(b"400\r\n" + b"y" * 0x400 + b"\r\n")
                    except OSError:
                        pass
                    return s.recv(4096)

            assert (await asyncio.to_thread(chunked)).startswith(b"HTTP/1.1 413")
            # a slow upload: the body stalls, the server answers 408 and removes the temp file
            def slow() -> bytes:
                with socket.create_connection(("127.0.0.1", r.http), timeout=20) as s:
                    body, ct = multipart(PKG, "slow.zip")
                    s.sendall((f"POST /Marti/sync/missionupload?filename=slow.zip HTTP/1.1\r\nHost: x\r\n"
                               f"Content-Type: {ct}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body[:500])
                    return s.recv(4096)  # blocks until the server gives up on us

            assert (await asyncio.to_thread(slow)).startswith(b"HTTP/1.1 408")
            assert _stored_blobs(tmp_path) == [] and _tmp_files(tmp_path) == []
            assert json.loads((await arequest(r.http, "GET", "/Marti/sync/search")).body)["resultCount"] == 0
            # the server still serves others
            assert (await arequest(r.http, "GET", "/Marti/api/version")).status == 200
            # HEAD: the headers of GET, no body
            head = await arequest(r.http, "HEAD", "/Marti/api/version")
            assert head.status == 200 and head.body == b"" and int(head.header("content-length") or 0) > 0

    run(scenario())
