"""What TAK tools query, the video registry, missions and the fileshare flow, with pytak clients
streaming on plain TCP and requests as ATAK sends them."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlsplit

import pytak
import pytest

from kestrel import pki as certs
from kestrel.server.config import ListenerConfig
from tests.marti_support import arequest, ca_context, marti_running, multipart
from tests.test_server_support import Client, eventually, is_type, ping, run, sa

TAK_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{1,3}Z$")  # yyyy-MM-dd'T'HH:mm:ss.S'Z'


def test_version_and_what_atak_asks_first(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with marti_running(tmp_path) as r:
            v = await arequest(r.http, "GET", "/Marti/api/version")
            assert v.status == 200 and "TAK Server" in v.body.decode() and v.header("content-type", ).startswith("text/plain")
            c = json.loads((await arequest(r.http, "GET", "/Marti/api/version/config")).body)
            assert c["type"] == "ServerConfig" and c["version"] == "3" and c["data"]["api"] == "3"
            assert re.match(r"^\d+\.\d+\.\d+-RELEASE$", c["data"]["version"]) and c["nodeId"]
            assert (await arequest(r.http, "GET", "/Marti/api/device/profile/connection?syncSecago=0&clientUid=X")).status == 204
            g = json.loads((await arequest(r.http, "GET", "/Marti/api/groups/all?useCache=true")).body)
            assert {(d["name"], d["direction"]) for d in g["data"]} == {("__ANON__", "IN"), ("__ANON__", "OUT")}
            assert (await arequest(r.http, "GET", "/Marti/api/nothing")).status == 404
            assert (await arequest(r.http, "DELETE", "/Marti/api/version")).status == 405

            def keepalive() -> list[int]:  # one connection, several requests (ATAK's HTTP client pools)
                conn = http.client.HTTPConnection("127.0.0.1", r.http, timeout=10)
                out = []
                for path in ("/Marti/api/version", "/Marti/api/nothing", "/Marti/api/version/config", "/Marti/vcm"):
                    conn.request("GET", path)
                    resp = conn.getresponse()
                    resp.read()
                    out.append(resp.status)
                conn.close()
                return out

            before = r.marti.shells["http"].connections
            assert await asyncio.to_thread(keepalive) == [200, 404, 200, 200]
            assert r.marti.shells["http"].connections == before + 1  # all four on one connection
            text = r.server.metrics.render()  # what an admin reads on /metrics
            assert re.search(r"^kestrel_http_requests_total \d+$", text, re.M)
            assert re.search(r"^kestrel_http_404_total [1-9]\d*$", text, re.M)
            assert 'kestrel_http_connections{listener="http"}' in text and "kestrel_marti_files_bytes 0" in text

    run(scenario())


def test_client_endpoints_and_contacts(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with marti_running(tmp_path) as r:
            url = f"tcp://127.0.0.1:{r.tcp}"
            a, b, anon = [await Client.connect(url) for _ in range(3)]
            await a.send(sa("ANDROID-A", "ALPHA"))
            await b.send(sa("ANDROID-B", "BRAVO"))
            await anon.send(ping("NOCALLSIGN"))  # connected, but no callsign: must not be listed
            await eventually(lambda: {"ANDROID-A", "ANDROID-B"} <= set(r.server.router.contacts))
            rep = await arequest(r.http, "GET", "/Marti/api/clientEndPoints")
            body = json.loads(rep.body)
            assert body["type"] == "com.bbn.marti.remote.ClientEndpoint"
            eps = {e["uid"]: e for e in body["data"]}
            assert set(eps) == {"ANDROID-A", "ANDROID-B"}
            assert eps["ANDROID-A"]["callsign"] == "ALPHA" and eps["ANDROID-A"]["lastStatus"] == "Connected"
            assert all(TAK_TIME.match(e["lastEventTime"]) for e in eps.values())
            assert eps["ANDROID-B"]["team"] == "Cyan" and eps["ANDROID-B"]["role"] == "Team Member"
            contacts = json.loads((await arequest(r.http, "GET", "/Marti/api/contacts/all")).body)
            assert [(c["callsign"], c["uid"]) for c in contacts] == [("ALPHA", "ANDROID-A"), ("BRAVO", "ANDROID-B")]
            await b.close()
            await eventually(lambda: "ANDROID-B" not in r.server.router.contacts)
            eps = {e["uid"]: e for e in json.loads((await arequest(r.http, "GET", "/Marti/api/clientEndPoints")).body)["data"]}
            assert eps["ANDROID-B"]["lastStatus"] == "Disconnected"
            now = json.loads((await arequest(r.http, "GET",
                                             "/Marti/api/clientEndPoints?showCurrentlyConnectedClients=true")).body)
            assert [e["uid"] for e in now["data"]] == ["ANDROID-A"]

    run(scenario())


def test_groups_separate_files_video_and_endpoints(tmp_path: Path) -> None:
    """alice (Blue) and bob (Red) on 8443 with certificates: neither sees the other's things."""
    certs.init(tmp_path)
    for name in ("alice", "bob"):
        certs.issue_client(tmp_path, name)

    async def scenario() -> None:
        async with marti_running(tmp_path, tls=True) as r:
            r.server.config.cert_groups.update({"alice": ("Blue",), "bob": ("Red",)})
            alice, bob = ca_context(tmp_path, "alice"), ca_context(tmp_path, "bob")
            body, ct = multipart(b"blue secret", "blue.zip")
            up = await arequest(r.https, "POST", "/Marti/sync/missionupload?filename=blue.zip&creatorUid=A", body,
                                {"Content-Type": ct}, tls=alice)
            assert up.status == 200 and up.body.startswith(f"https://127.0.0.1:{r.https}/".encode())
            h = up.body.decode().rsplit("=", 1)[1]
            assert (await arequest(r.https, "GET", f"/Marti/sync/content?hash={h}", tls=alice)).body == b"blue secret"
            assert (await arequest(r.https, "GET", f"/Marti/sync/content?hash={h}", tls=bob)).status == 404
            assert (await arequest(r.https, "GET", f"/Marti/sync/missionquery?hash={h}", tls=bob)).status == 404
            assert json.loads((await arequest(r.https, "GET", "/Marti/sync/search", tls=bob)).body)["resultCount"] == 0
            assert (await arequest(r.https, "DELETE", f"/Marti/api/files/{h}", tls=bob)).status == 404
            assert (await arequest(r.http, "GET", f"/Marti/sync/content?hash={h}")).status == 404  # anonymous 8080
            feed = b"<videoConnections><feed><uid>blue-cam</uid><alias>Blue cam</alias><protocol>rtsp</protocol>" \
                   b"<address>10.0.0.5</address><port>8554</port><path>/cam</path></feed></videoConnections>"
            assert (await arequest(r.https, "POST", "/Marti/vcm", feed, {"Content-Type": "application/xml"},
                                   tls=alice)).status == 200
            assert b"blue-cam" in (await arequest(r.https, "GET", "/Marti/vcm", tls=alice)).body
            assert b"blue-cam" not in (await arequest(r.https, "GET", "/Marti/vcm", tls=bob)).body
            assert (await arequest(r.https, "GET", "/Marti/api/video/blue-cam", tls=bob)).status == 404

    run(scenario())


def test_vcm_as_atak_video_manager_reads_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with marti_running(tmp_path) as r:
            # ATAK's video manager POSTs its XML with `Content-Encoding: UTF-8` (a charset, ignored)
            feed = ('<?xml version="1.0" encoding="UTF-8"?><videoConnections><feed><protocol>udp</protocol>'
                    '<alias>UAV 1</alias><uid>uav-1-video</uid><address>239.10.10.10</address><port>1841</port>'
                    '<roverPort>-1</roverPort><ignoreEmbeddedKLV>false</ignoreEmbeddedKLV><path></path>'
                    '<buffer>-1</buffer><timeout>5000</timeout><rtspReliable>0</rtspReliable></feed></videoConnections>')
            rep = await arequest(r.http, "POST", "/Marti/vcm", feed.encode(),
                                 {"Content-Type": "application/xml", "Content-Encoding": "UTF-8"})
            assert rep.status == 200
            got = await arequest(r.http, "GET", "/Marti/vcm")
            root = ET.fromstring(got.body)
            assert root.tag == "videoConnections"
            (fe,) = root.findall("feed")
            fields = {c.tag: (c.text or "") for c in fe}
            assert (fields["uid"], fields["alias"], fields["protocol"], fields["address"], fields["port"]) == \
                ("uav-1-video", "UAV 1", "udp", "239.10.10.10", "1841")
            assert fields["ignoreEmbeddedKLV"] == "false"
            # TAK Server's newer JSON API sees the same feed, with its URL
            v = json.loads((await arequest(r.http, "GET", "/Marti/api/video")).body)
            (conn,) = v["videoConnections"]
            assert conn["uuid"] == "uav-1-video" and conn["feeds"][0]["url"] == "udp://239.10.10.10:1841"
            # and registers one
            new = {"videoConnections": [{"uuid": "rtsp-cam", "active": True, "alias": "Gate",
                                         "feeds": [{"uuid": "rtsp-cam-f", "alias": "Gate", "url": "rtsp://10.1.1.1:8554/gate"}]}]}
            assert (await arequest(r.http, "POST", "/Marti/api/video", json.dumps(new).encode(),
                                   {"Content-Type": "application/json"})).status == 200
            one = json.loads((await arequest(r.http, "GET", "/Marti/api/video/rtsp-cam")).body)
            assert one["feeds"][0]["url"] == "rtsp://10.1.1.1:8554/gate"
            vcm = ET.fromstring((await arequest(r.http, "GET", "/Marti/vcm")).body)
            gate = [f for f in vcm if f.findtext("uid") == "rtsp-cam"][0]
            assert (gate.findtext("protocol"), gate.findtext("port"), gate.findtext("path")) == ("rtsp", "8554", "/gate")
            assert (await arequest(r.http, "DELETE", "/Marti/api/video/rtsp-cam")).status == 200
            assert (await arequest(r.http, "GET", "/Marti/api/video/rtsp-cam")).status == 404
            # hostile XML: an external entity is not expanded or fetched
            evil = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
                    b"<videoConnections><feed><uid>e</uid><alias>&e;</alias><protocol>udp</protocol>"
                    b"<address>239.1.1.1</address></feed></videoConnections>")
            rep = await arequest(r.http, "POST", "/Marti/vcm", evil, {"Content-Type": "application/xml"})
            assert b"root:" not in (await arequest(r.http, "GET", "/Marti/vcm")).body
            assert rep.status in (200, 400)
            assert (await arequest(r.http, "POST", "/Marti/vcm", b"<notxml", {})).status == 400

    run(scenario())


def _fileshare(sender_uid: str, sender_cs: str, to_cs: str, url: str, sha: str, size: int, name: str) -> bytes:
    """ATAK's "send data package to contact": b-f-t-r with <fileshare> and <marti><dest>."""
    detail = pytak.cot_detail(flow_tag=False)
    ET.SubElement(detail, "fileshare", {"filename": f"{name}.zip", "senderUrl": url, "sizeInBytes": str(size),
                                        "sha256": sha, "senderUid": sender_uid, "senderCallsign": sender_cs,
                                        "name": name})
    ET.SubElement(detail, "ackrequest", {"uid": "ack-1", "ackrequested": "true", "tag": name})
    marti = ET.SubElement(detail, "marti")
    ET.SubElement(marti, "dest", {"callsign": to_cs})
    ev = pytak.cot_event(uid="fileshare-1", cot_type="b-f-t-r", how="h-e", detail=detail)
    return pytak.serialize_cot(ev)


def test_fileshare_flow_end_to_end(tmp_path: Path) -> None:
    """ALPHA uploads a package on 8080 and sends it to BRAVO: BRAVO (and only BRAVO) gets the
    b-f-t-r, downloads from its senderUrl and checks the SHA-256."""
    pkg = b"PK\x03\x04" + b"mission package bytes" * 1000

    async def scenario() -> None:
        async with marti_running(tmp_path) as r:
            url = f"tcp://127.0.0.1:{r.tcp}"
            a, b, c = [await Client.connect(url) for _ in range(3)]
            for cl, uid, cs in ((a, "ANDROID-A", "ALPHA"), (b, "ANDROID-B", "BRAVO"), (c, "ANDROID-C", "CHARLIE")):
                await cl.send(sa(uid, cs))
            await eventually(lambda: len(r.server.router.contacts) == 3)
            body, ct = multipart(pkg, "ops.zip")
            up = await arequest(r.http, "POST", "/Marti/sync/missionupload?hash=x&filename=ops.zip&creatorUid=ANDROID-A",
                                body, {"Content-Type": ct})
            sha = hashlib.sha256(pkg).hexdigest()
            await a.send(_fileshare("ANDROID-A", "ALPHA", "BRAVO", up.body.decode(), sha, len(pkg), "ops"))
            got = await b.recv_until(is_type("b-f-t-r"))
            fs = got[-1].find("detail/fileshare")
            assert fs is not None and fs.get("sha256") == sha
            u = urlsplit(fs.get("senderUrl", ""))
            dl = await arequest(u.port or 80, "GET", f"{u.path}?{u.query}")
            assert dl.status == 200 and hashlib.sha256(dl.body).hexdigest() == sha
            assert not [e for e in await c.drain(0.3) if e.get("type") == "b-f-t-r"]  # addressed to BRAVO only

    run(scenario())


def test_missions_create_content_subscribe_announce(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with marti_running(tmp_path) as r:
            url = f"tcp://127.0.0.1:{r.tcp}"
            a, b = await Client.connect(url), await Client.connect(url)
            await a.send(sa("ANDROID-A", "ALPHA"))
            await b.send(sa("ANDROID-B", "BRAVO"))
            await eventually(lambda: len(r.server.router.contacts) == 2)
            rep = await arequest(r.http, "PUT", "/Marti/api/missions/Ops%20North?creatorUid=ANDROID-A&tool=public")
            assert rep.status == 201
            m = json.loads(rep.body)
            assert m["type"] == "Mission" and m["data"][0]["name"] == "Ops North"
            created = (await b.recv_until(is_type("t-x-m-n")))[-1]
            assert created.find("detail/mission").get("type") == "CREATE"  # type: ignore[union-attr]
            assert (await arequest(r.http, "PUT", "/Marti/api/missions/Ops%20North?creatorUid=X")).status == 200
            sub = await arequest(r.http, "PUT", "/Marti/api/missions/Ops%20North/subscription?uid=ANDROID-B")
            assert sub.status == 201 and json.loads(sub.body)["data"]["token"]
            body, ct = multipart(b"overlay", "overlay.kml", content_type="application/vnd.google-earth.kml+xml")
            up = await arequest(r.http, "POST", "/Marti/sync/missionupload?filename=overlay.kml&creatorUid=ANDROID-A",
                                body, {"Content-Type": ct})
            h = up.body.decode().rsplit("=", 1)[1]
            add = await arequest(r.http, "PUT", "/Marti/api/missions/Ops%20North/contents?creatorUid=ANDROID-A",
                                 json.dumps({"hashes": [h], "uids": ["marker-7"]}).encode(),
                                 {"Content-Type": "application/json"})
            assert add.status == 200
            mission = json.loads(add.body)["data"][0]
            assert [c["data"]["hash"] for c in mission["contents"]] == [h]
            assert [u["data"] for u in mission["uids"]] == ["marker-7"]
            changes = [e for e in await b.recv_until(
                lambda e: e.get("type") == "t-x-m-c" and "marker-7" in ET.tostring(e).decode()) if e.get("type") == "t-x-m-c"]
            assert len(changes) == 2
            first = changes[0].find("detail/mission")
            assert first is not None and (first.get("type"), first.get("name")) == ("CHANGE", "Ops North")
            assert first.findtext("MissionChanges/MissionChange/contentResource/hash") == h
            assert first.findtext("MissionChanges/MissionChange/type") == "ADD_CONTENT"
            assert not [e for e in await a.drain(0.3) if e.get("type") == "t-x-m-c"]  # not subscribed
            rm = await arequest(r.http, "DELETE", "/Marti/api/missions/Ops%20North/contents?uid=marker-7&creatorUid=A")
            assert rm.status == 200 and json.loads(rm.body)["data"][0]["uids"] == []
            gone = (await b.recv_until(is_type("t-x-m-c")))[-1]
            assert gone.findtext("detail/mission/MissionChanges/MissionChange/type") == "REMOVE_CONTENT"
            subs = json.loads((await arequest(r.http, "GET", "/Marti/api/missions/Ops%20North/subscriptions")).body)
            assert subs["data"] == ["ANDROID-B"]
            listed = json.loads((await arequest(r.http, "GET", "/Marti/api/missions")).body)["data"]
            assert [x["name"] for x in listed] == ["Ops North"] and "subscribers" not in listed[0]
            bad = await arequest(r.http, "PUT", "/Marti/api/missions/Ops%20North/contents",
                                 json.dumps({"hashes": ["0" * 64]}).encode(), {"Content-Type": "application/json"})
            assert bad.status == 404
            assert (await arequest(r.http, "DELETE", "/Marti/api/missions/Ops%20North?creatorUid=A")).status == 200
            assert (await b.recv_until(is_type("t-x-m-d")))[-1] is not None
            assert (await arequest(r.http, "GET", "/Marti/api/missions/Ops%20North")).status == 404

    run(scenario())


def test_exposed_plain_http_needs_groups(tmp_path: Path) -> None:
    from kestrel.marti import config as marti_config
    from kestrel.server.config import ConfigError, ServerConfig

    cfg = ServerConfig(host="0.0.0.0", listeners=[ListenerConfig("tcp", "tcp", "0.0.0.0", 8087, ("tcp-open",))])
    assert marti_config.parse(cfg).http_groups == {"tcp-open"}  # the plain TCP clients' groups
    cfg = ServerConfig(host="0.0.0.0", listeners=[])
    try:
        marti_config.parse(cfg)
    except ConfigError as exc:
        assert "http_groups" in str(exc)
    else:
        raise AssertionError("plain HTTP on 0.0.0.0 without groups was accepted")
    cfg.marti = {"http_port": "off"}
    assert "http" not in marti_config.parse(cfg).ports


def test_serve_refuses_exposed_plain_http_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from kestrel.cli import main

    f = tmp_path / "k.toml"
    f.write_text('[server]\nhost = "0.0.0.0"\ntcp_port = "off"\n')
    assert main(["serve", "--config", str(f), "--data", str(tmp_path / "d"), "--http-port", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("kestrel: error:") and "http_groups" in err[-1]
    f.write_text('[server]\nhost = "0.0.0.0"\ntcp_port = "off"\n[marti]\nbogus = 1\n')
    assert main(["serve", "--config", str(f), "--data", str(tmp_path / "d"), "--http-port", "off"]) == 2
    assert "unknown key 'bogus'" in capsys.readouterr().err
