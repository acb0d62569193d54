"""The Marti endpoints: one table of (method, path, handler, body kind), handlers as plain functions.

`find(method, path)` picks the route from the request line alone, before any body is read, so the
shell knows how much body to accept (none, a small one, or a streamed upload) and who may call it.
Every handler is `(State, Request) -> Response` and raises `HttpError` to refuse; none awaits.
Status codes and bodies follow TAK Server (see docs/marti.md for the list and the deviations).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from kestrel import __version__
from kestrel.marti import enroll, video
from kestrel.marti.clients import ClientLog, contact_json, endpoint_json
from kestrel.marti.files import DEFAULT_KEYWORD, DEFAULT_TOOL, FileStore, check_filename, check_hash
from kestrel.marti.message import HttpError, Request, Response, api_response, as_json, no_content, text, xml
from kestrel.marti.missions import Missions
from kestrel.marti.users import Users
from kestrel.marti.video import VideoRegistry

TAK_VERSION = "5.2-RELEASE-0"  # the TAK Server release whose API this follows
VERSION_TEXT = f"TAK Server {TAK_VERSION} (Kestrel {__version__})"


@dataclass(slots=True)
class State:
    data_dir: Path
    files: FileStore
    video: VideoRegistry
    missions: Missions
    users: Users
    clients: ClientLog | None
    node_id: str
    name_entries: tuple[tuple[str, str], ...] = enroll.NAME_ENTRIES
    started: str = field(default_factory=lambda: dt.date.today().isoformat())


Handler = Callable[[State, Request], Response]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    body: str = "none"  # "none" | "small" | "upload"
    enroll: bool = False  # needs a user (Basic auth on 8446, or a certificate/Basic on 8443)


# -- what tools query ---------------------------------------------------------------------------


def version(st: State, req: Request) -> Response:
    return text(VERSION_TEXT)


def version_config(st: State, req: Request) -> Response:
    host = req.headers.get("host", "").rsplit(":", 1)[0].strip("[]") or "localhost"
    major, _, build = TAK_VERSION.split("-")
    data = {"version": f"{major}.{build}-RELEASE", "api": "3", "hostname": host}
    return as_json(api_response("ServerConfig", data, st.node_id))


def client_endpoints(st: State, req: Request) -> Response:
    try:
        sec_ago = int(req.arg("secAgo", "0") or 0)
    except ValueError:
        raise HttpError(400, "secAgo must be a number") from None
    if sec_ago < 0:
        raise HttpError(400, f"invalid secAgo parameter {sec_ago}")
    connected = (req.arg("showCurrentlyConnectedClients", "false") or "").lower() == "true"
    rows = st.clients.visible(req.identity.groups, sec_ago, connected) if st.clients else []
    return as_json(api_response("com.bbn.marti.remote.ClientEndpoint", [endpoint_json(c) for c in rows], st.node_id))


def contacts_all(st: State, req: Request) -> Response:
    rows = st.clients.visible(req.identity.groups, 0, True) if st.clients else []
    return as_json([contact_json(c) for c in sorted(rows, key=lambda c: c.callsign.lower())])


def groups_all(st: State, req: Request) -> Response:
    data = []
    for i, g in enumerate(sorted(req.identity.groups)):
        for direction in ("IN", "OUT"):
            data.append({"name": g, "direction": direction, "created": st.started, "type": "SYSTEM",
                         "bitpos": i, "active": True})
    return as_json(api_response("com.bbn.marti.remote.groups.Group", data, st.node_id))


def device_profile(st: State, req: Request) -> Response:
    return no_content()  # no device profiles configured: TAK answers 204


# -- files and data packages --------------------------------------------------------------------


def content_url(req: Request, h: str) -> str:
    return f"{req.base_url}/Marti/sync/content?hash={h}"


def mission_upload(st: State, req: Request) -> Response:
    up = req.upload
    try:
        name = check_filename(req.arg("filename"))
        creator = req.arg("creatorUid", "") or ""
        keywords = req.query.get("keyword") or [DEFAULT_KEYWORD]
        meta = st.files.commit(
            up, name=name, mime=req.arg("mimetype"), keywords=keywords, tool=req.arg("tool", DEFAULT_TOOL) or DEFAULT_TOOL,
            creator_uid=creator, submitter=req.identity.name or "anonymous", groups=req.identity.groups,
        )
    except BaseException:
        up.abort()
        raise
    return text(content_url(req, meta.hash), content_type="text/plain")


def mission_query(st: State, req: Request) -> Response:
    h = check_hash(req.arg("hash"))
    if not st.files.visible(h, req.identity.groups):
        raise HttpError(404, "File not found")
    return text(content_url(req, h), content_type="text/plain")


def content(st: State, req: Request) -> Response:
    h = check_hash(req.arg("hash") or req.arg("uid"))
    rows = st.files.visible(h, req.identity.groups)
    path = st.files.blob(h)
    if not rows or not path.is_file():
        raise HttpError(404, "File not found")
    meta = rows[-1]
    plain = re.sub(r'[^A-Za-z0-9._ ()+-]', "_", meta.name)
    disp = f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(meta.name, safe='')}"
    return Response(200, b"", meta.mime, [("Content-Disposition", disp)], file=path, file_size=path.stat().st_size)


def search(st: State, req: Request) -> Response:
    rows = st.files.search(req.identity.groups, tool=req.arg("tool"), keyword=req.arg("keywords"),
                           name=req.arg("name") or req.arg("filename"), mime=req.arg("mimetype"))
    return as_json({"resultCount": len(rows), "results": [r.tak_json() for r in rows]}, content_type="text/json")


def metadata_tool(st: State, req: Request) -> Response:
    h = check_hash(_path_arg(req, 0))
    tool = req.body.decode("utf-8", "replace").strip() or (req.arg("tool") or "")
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", tool):
        raise HttpError(400, "the body must be a tool name such as public or private")
    if not st.files.set_tool(h, tool, req.identity.groups):
        raise HttpError(404, "File not found")
    return Response(200)


def delete_file(st: State, req: Request) -> Response:
    h = check_hash(_path_arg(req, 0))
    if not st.files.delete(h, req.identity.groups):
        raise HttpError(404, "File not found")
    return Response(200)


# -- video --------------------------------------------------------------------------------------


def vcm_get(st: State, req: Request) -> Response:
    return xml(video.vcm_xml(st.video.visible(req.identity.groups)))


def vcm_post(st: State, req: Request) -> Response:
    # ATAK sends `Content-Encoding: UTF-8` (a charset, not a coding): the shell ignores it.
    action = req.arg("action", "add")
    if action == "setActive":
        uid, active = req.arg("id") or "", (req.arg("active") or "true").lower()
        feeds = st.video.visible(req.identity.groups, uid)
        if not feeds:
            raise HttpError(404, f"no feed {uid!r}")
        for f in feeds:
            f["active"] = "true" if active == "true" else "false"
        st.video.put(feeds, req.identity.groups)
        return Response(200)
    if action != "add":
        raise HttpError(400, f"unknown action {action!r}")
    st.video.put(video.parse_vcm(req.body), req.identity.groups)
    return Response(200)


def vcm_delete(st: State, req: Request) -> Response:
    if not st.video.delete(req.arg("id") or "", req.identity.groups):
        raise HttpError(404, "no such feed")
    return Response(200)


def video_get(st: State, req: Request) -> Response:
    feeds = st.video.visible(req.identity.groups)
    proto = req.arg("protocol")
    if proto:
        feeds = [f for f in feeds if f.get("protocol") == proto]
    return as_json(video.collections_json(feeds))


def video_post(st: State, req: Request) -> Response:
    st.video.put(video.parse_collections(req.json()), req.identity.groups)
    return Response(200)


def video_one(st: State, req: Request) -> Response:
    feeds = st.video.visible(req.identity.groups, _path_arg(req, 0))
    if not feeds:
        raise HttpError(404, "no such video connection")
    return as_json(video.collections_json(feeds[:1])["videoConnections"][0])


def video_delete(st: State, req: Request) -> Response:
    if not st.video.delete(_path_arg(req, 0), req.identity.groups):
        raise HttpError(404, "no such video connection")
    return Response(200)


# -- missions -----------------------------------------------------------------------------------

MISSION = "Mission"


def missions_list(st: State, req: Request) -> Response:
    return as_json(api_response(MISSION, st.missions.all(req.identity.groups), st.node_id))


def mission_get(st: State, req: Request) -> Response:
    return as_json(api_response(MISSION, [st.missions.get(_path_arg(req, 0), req.identity.groups)], st.node_id))


def mission_create(st: State, req: Request) -> Response:
    m, new = st.missions.create(_path_arg(req, 0), req.identity.groups, req.arg("creatorUid", "") or "",
                                description=req.arg("description", "") or "", tool=req.arg("tool", "public") or "public")
    return as_json(api_response(MISSION, [m], st.node_id), status=201 if new else 200)


def mission_delete(st: State, req: Request) -> Response:
    m = st.missions.delete(_path_arg(req, 0), req.identity.groups, req.arg("creatorUid", "") or "")
    return as_json(api_response(MISSION, [m], st.node_id))


def mission_add(st: State, req: Request) -> Response:
    body = req.json() or {}
    if not isinstance(body, dict):
        raise HttpError(400, 'expected {"hashes": [...], "uids": [...]}')
    hashes, uids = body.get("hashes") or [], body.get("uids") or []
    if not isinstance(hashes, list) or not isinstance(uids, list):
        raise HttpError(400, 'expected {"hashes": [...], "uids": [...]}')
    m = st.missions.add(_path_arg(req, 0), req.identity.groups, req.arg("creatorUid", "") or "",
                        [str(h) for h in hashes], uids)
    return as_json(api_response(MISSION, [m], st.node_id))


def mission_remove(st: State, req: Request) -> Response:
    m = st.missions.remove(_path_arg(req, 0), req.identity.groups, req.arg("creatorUid", "") or "",
                           req.arg("hash"), req.arg("uid"))
    return as_json(api_response(MISSION, [m], st.node_id))


def mission_subscribe(st: State, req: Request) -> Response:
    sub = st.missions.subscribe(_path_arg(req, 0), req.identity.groups, req.arg("uid", "") or "",
                                req.identity.name or "anonymous")
    return as_json(api_response("com.bbn.marti.sync.model.MissionSubscription", sub, st.node_id), status=201)


def mission_unsubscribe(st: State, req: Request) -> Response:
    st.missions.unsubscribe(_path_arg(req, 0), req.identity.groups, req.arg("uid", "") or "")
    return Response(200)


def mission_subscriptions(st: State, req: Request) -> Response:
    subs = st.missions.subscribers(_path_arg(req, 0), req.identity.groups)
    return as_json(api_response("MissionSubscription", subs, st.node_id))


# -- enrollment ---------------------------------------------------------------------------------


def tls_config(st: State, req: Request) -> Response:
    return xml(enroll.tls_config_xml(st.name_entries))


def _signed(st: State, req: Request) -> tuple[object, list[object]]:
    user = req.identity.name
    assert user is not None  # enroll routes require a user (the shell checks)
    csr = enroll.parse_csr(req.body)
    enroll.check_csr(csr, user, st.name_entries)
    return enroll.sign(st.data_dir, csr, user)


def sign_v2(st: State, req: Request) -> Response:
    accept = req.headers.get("accept")
    a = (accept or "").lower()
    if accept is not None and a and "*/*" not in a and "json" not in a and "application/xml" not in a:
        raise HttpError(400, "Accept must allow application/json or application/xml")  # before signing anything
    cert, chain = _signed(st, req)
    return enroll.v2_response(cert, chain, accept)


def sign_v1(st: State, req: Request) -> Response:
    cert, chain = _signed(st, req)
    return enroll.v1_response(cert, chain)


def profile_enrollment(st: State, req: Request) -> Response:
    return enroll.enrollment_profile(st.data_dir)


# -- the table ----------------------------------------------------------------------------------


def _path_arg(req: Request, i: int) -> str:
    return req.args[i] if i < len(req.args) else ""


_SEG = r"([^/]+)"


def _r(method: str, path: str, handler: Handler, body: str = "none", enroll_: bool = False) -> Route:
    return Route(method, re.compile("^" + path.replace("{}", _SEG) + "/?$"), handler, body, enroll_)


ROUTES: tuple[Route, ...] = (
    _r("GET", "/Marti/api/version", version),
    _r("GET", "/Marti/api/version/config", version_config),
    _r("GET", "/Marti/api/clientEndPoints", client_endpoints),
    _r("GET", "/Marti/api/contacts/all", contacts_all),
    _r("GET", "/Marti/api/groups/all", groups_all),
    _r("GET", "/Marti/api/device/profile/connection", device_profile),
    _r("POST", "/Marti/sync/missionupload", mission_upload, "upload"),
    _r("GET", "/Marti/sync/missionquery", mission_query),
    _r("GET", "/Marti/sync/content", content),
    _r("GET", "/Marti/sync/search", search),
    _r("PUT", "/Marti/api/sync/metadata/{}/tool", metadata_tool, "small"),
    _r("DELETE", "/Marti/api/files/{}", delete_file),
    _r("GET", "/Marti/vcm", vcm_get),
    _r("POST", "/Marti/vcm", vcm_post, "small"),
    _r("DELETE", "/Marti/vcm", vcm_delete),
    _r("GET", "/Marti/api/video", video_get),
    _r("POST", "/Marti/api/video", video_post, "small"),
    _r("GET", "/Marti/api/video/{}", video_one),
    _r("DELETE", "/Marti/api/video/{}", video_delete),
    _r("GET", "/Marti/api/missions", missions_list),
    _r("GET", "/Marti/api/missions/{}", mission_get),
    _r("PUT", "/Marti/api/missions/{}", mission_create, "small"),
    _r("POST", "/Marti/api/missions/{}", mission_create, "small"),
    _r("DELETE", "/Marti/api/missions/{}", mission_delete),
    _r("PUT", "/Marti/api/missions/{}/contents", mission_add, "small"),
    _r("DELETE", "/Marti/api/missions/{}/contents", mission_remove),
    _r("PUT", "/Marti/api/missions/{}/subscription", mission_subscribe, "small"),
    _r("DELETE", "/Marti/api/missions/{}/subscription", mission_unsubscribe),
    _r("GET", "/Marti/api/missions/{}/subscriptions", mission_subscriptions),
    _r("GET", "/Marti/api/tls/config", tls_config, enroll_=True),
    _r("POST", "/Marti/api/tls/signClient/v2", sign_v2, "small", enroll_=True),
    _r("POST", "/Marti/api/tls/signClient", sign_v1, "small", enroll_=True),
    _r("GET", "/Marti/api/tls/profile/enrollment", profile_enrollment, enroll_=True),
)


def find(method: str, path: str) -> tuple[Route, tuple[str, ...]]:
    """The route for this request line; HttpError 404 (no such path) or 405 (wrong method)."""
    allowed = []
    for r in ROUTES:
        m = r.pattern.match(path)
        if m is None:
            continue
        if r.method == method or (method == "HEAD" and r.method == "GET"):
            return r, m.groups()
        allowed.append(r.method)
    if allowed:
        raise HttpError(405, f"{method} not allowed here", [("Allow", ", ".join(sorted(set(allowed))))])
    raise HttpError(404, "Not Found")


def dispatch(st: State, req: Request, route: Route, args: tuple[str, ...]) -> Response:
    req.args = args
    try:
        return route.handler(st, req)
    except HttpError as exc:
        return exc.response()
