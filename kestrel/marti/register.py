"""Register a video feed with a TAK server's video registry (`POST /Marti/vcm`), as ATAK's video
manager does: what `kestrel ped run --marti URL` calls so the drone's feed shows in every ATAK's
video list. Works against Kestrel and TAK Server alike (blocking; standard library only)."""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request

from kestrel.marti.video import feed_from_url, vcm_xml


def register_feed(api: str, video_url: str, alias: str, *, uid: str | None = None,
                  ssl_ctx: ssl.SSLContext | None = None, timeout: float = 10.0) -> str:
    """POST one feed to `api` (`http://HOST:8080` or `https://HOST:8443`); returns the feed uid.
    Raises OSError (cannot connect) or ValueError (the server refused: status and reason)."""
    feed = feed_from_url(video_url, alias, uid)
    req = urllib.request.Request(
        api.rstrip("/") + "/Marti/vcm", data=vcm_xml([feed]), method="POST",
        headers={"Content-Type": "application/xml; charset=utf-8"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ssl_ctx) as r:
            r.read()
    except urllib.error.HTTPError as exc:
        raise ValueError(f"{api}: the server answered {exc.code} ({exc.reason})") from None
    return feed["uid"]
