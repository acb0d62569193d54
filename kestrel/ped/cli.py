"""`kestrel ped run|review|disseminate`: argument parsing and hand-off only (logic lives in
`runner`, `review`, `products`, `cot`, `disseminate`). Heavy imports stay inside handlers."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    ped = subparsers.add_parser("ped", help="exploit drone video: detect, track, review, disseminate")
    sub = ped.add_subparsers(dest="ped_command", required=True)

    run = sub.add_parser("run", help="process a video file or a live udp:// stream into a run folder")
    run.add_argument("source", help="STANAG 4609 .ts file, or udp://HOST:PORT for a live stream")
    run.add_argument("--out", help="run folder (created; must not hold a run already); "
                     "default runs/<input name>-<UTC time>")
    run.add_argument("--detector", choices=("mti", "mti-early", "onnx"), default="mti",
                     help="mti-early: first reports within ~0.5 s of the start instead of ~2 s, for some recall")
    run.add_argument("--model", help="YOLO-style ONNX model (with --detector onnx)")
    run.add_argument("--max-frames", type=_positive_int, metavar="N", help="stop after N frames (N >= 1)")
    run.add_argument("--no-vmti", action="store_true", help="do not write vmti.ts")
    run.add_argument("--idle-timeout", type=_seconds, default=60.0, metavar="S",
                     help="live input: end the run after S seconds without data (default 60; 0 = wait forever)")
    _push_args(run, required=False)
    run.add_argument("--restream", metavar="URL",
                     help="re-send the source video, KLV intact, to udp://HOST:PORT (a file plays at its own pace)")
    run.add_argument("--marti", metavar="URL",
                     help="register the video feed with this TAK server's video list (http://HOST:8080)")
    run.set_defaults(func=_run)

    rev = sub.add_parser("review", help="list a run's tracks, or confirm/reject one")
    rev.add_argument("run_dir")
    group = rev.add_mutually_exclusive_group()
    group.add_argument("--confirm", type=int, metavar="ID")
    group.add_argument("--reject", type=int, metavar="ID")
    rev.add_argument("--label", choices=("vehicle", "person", "vessel", "unknown"))
    rev.add_argument("--affiliation", choices=("friend", "hostile", "neutral", "unknown", "suspect"))
    rev.add_argument("--analyst", help="who decided (default: $USER)")
    rev.add_argument("--json", action="store_true", help="print the track list as JSON (id, state, label, "
                     "affiliation, analyst, reviewed_at, first_frame, last_frame, ...)")
    rev.set_defaults(func=_review)

    sc = sub.add_parser("score", help="run PED on synthetic clips and score it against their truth")
    sc.add_argument("pairs", nargs="+", metavar="CLIP_OR_TRUTH",
                    help="CLIP.ts TRUTH.json, repeated (truth from `kestrel fmv synth --truth`)")
    sc.add_argument("--iou", type=float, default=0.3, help="IoU gate for a match (default 0.3)")
    sc.add_argument("--detector", choices=("mti", "mti-early", "mti-v1"), default="mti",
                    help="mti-early: the opt-in early start-up; mti-v1: the previous MTI detector and "
                    "tracker settings, for comparison")
    sc.add_argument("--json", action="store_true", help="one JSON object per clip instead of a table")
    sc.set_defaults(func=_score)

    exp = sub.add_parser("export", help="products a person looks at: annotated video, self-contained HTML report")
    exp.add_argument("run_dir")
    exp.add_argument("--video", metavar="OUT.mp4", help="write the source video with boxes, ids and labels burned in")
    exp.add_argument("--report", metavar="OUT.html", help="write one self-contained HTML report (map, thumbnails, review)")
    exp.set_defaults(func=_export)

    dis = sub.add_parser("disseminate", help="push a run's platform, footprint and confirmed tracks as CoT")
    dis.add_argument("run_dir")
    _push_args(dis, required=True)
    dis.add_argument("--dry-run", action="store_true", help="print the CoT XML instead of sending it")
    dis.set_defaults(func=_disseminate)


def _push_args(p: argparse.ArgumentParser, *, required: bool) -> None:
    p.add_argument("--push", required=required, metavar="URL", help="tcp://HOST:PORT or tls://HOST:PORT")
    p.add_argument("--release", choices=("confirmed", "auto"), default="confirmed",
                   help="auto: also send unreviewed tracks, marked machine-generated and unvalidated")
    p.add_argument("--cert", help="client certificate (PEM) for tls://")
    p.add_argument("--key", help="client private key (PEM) for tls://")
    p.add_argument("--ca", help="CA certificate (PEM) that signed the server's certificate")
    p.add_argument("--certs", metavar="DATA_DIR", help="a `kestrel certs` data dir (use with --client)")
    p.add_argument("--client", metavar="NAME", help="client name made by `kestrel certs client NAME`")
    p.add_argument("--no-check-hostname", action="store_true", help="do not match the server cert to HOST")
    p.add_argument("--callsign", default="KESTREL-UAV", help="callsign of the platform on the map")
    p.add_argument("--stale", type=float, default=600.0, help="seconds until pushed events go stale")
    p.add_argument("--video-url", type=_video_url, metavar="URL",
                   help="video link put on pushed tracks (e.g. rtsp://HOST/feed); default: the source "
                        "when it is a stream others can open, never a local file")


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text} must be 1 or more")
    return n


def _seconds(text: str) -> float:
    try:
        s = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= s < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be 0 (wait forever) or more")
    return s


def _video_url(text: str) -> str:
    from urllib.parse import urlsplit

    u = urlsplit(text)
    if not u.scheme or u.scheme.lower() == "file" or not u.netloc:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a stream URL others can open "
                                         "(rtsp://, udp://, srt://, http(s)://), not a file")
    return text


def _bad(msg: str) -> Exception:
    from kestrel.errors import BadInput

    return BadInput(msg)


def _ssl(args: argparse.Namespace) -> Any:
    from kestrel.ped.disseminate import PushError, parse_target, tls_context

    try:
        target = parse_target(args.push)
        if not target.tls:
            return None
        return tls_context(cert=args.cert, key=args.key, ca=args.ca, certs_dir=args.certs, client=args.client,
                           check_hostname=not args.no_check_hostname)
    except PushError as exc:
        raise _bad(str(exc)) from None
    except (OSError, ValueError) as exc:  # unreadable PEM files, bad client name
        raise _bad(f"{args.push}: TLS setup failed: {exc}") from None


def _run(args: argparse.Namespace) -> int:
    from kestrel.ped.runner import default_out_dir, run_to_dir

    ssl_ctx = _ssl(args) if args.push else None
    out = Path(args.out) if args.out else default_out_dir(args.source)
    if not args.out:  # say where before a long (or live) run starts, so it can be reviewed meanwhile
        print(f"run folder: {out}", flush=True)
    restream, video_url = _video_out(args, ssl_ctx)
    report = run_to_dir(
        args.source, out, detector=args.detector, model=args.model, max_frames=args.max_frames,
        vmti=not args.no_vmti, push=args.push, ssl_ctx=ssl_ctx, release_auto=args.release == "auto",
        callsign=args.callsign, stale_s=args.stale, idle_timeout=args.idle_timeout, video_url=video_url,
        restream=restream,
    )
    geo = "geolocated" if report["geolocated"] else f"NOT geolocated ({report['geolocation_reason']})"
    dropped = report["frames_dropped"]
    print(f"{out}: {report['frames']} frames ({dropped if dropped is not None else '?'} dropped), "
          f"{report['tracks']} tracks, {geo}{', INTERRUPTED' if report.get('interrupted') else ''}")
    push = report.get("push")
    if push:
        print(_push_line(push))
        return 0 if push["sent"] or not push["errors"] else 1
    return 0


def _video_out(args: argparse.Namespace, ssl_ctx: Any) -> tuple[Any, str | None]:
    """--restream (opened now: a bad URL is bad input) and the video URL put on CoT (only one other
    machines can open); --marti registers the feed (the restream URL as given)."""
    from kestrel.ped.cot import shareable_video_url

    restream = None
    cot_url = feed_url = args.video_url
    if args.restream:
        from kestrel.ped.restream import Restream, RestreamError

        try:
            restream = Restream(args.restream, paced=not str(args.source).startswith("udp://"))
        except (RestreamError, OSError) as exc:
            raise _bad(str(exc)) from None
        cot_url = cot_url or shareable_video_url(args.restream)
        feed_url = feed_url or args.restream
    if args.marti:
        url = feed_url or shareable_video_url(str(args.source))
        if url is None:
            raise _bad("--marti: no video URL others can open: give --restream or --video-url")
        from kestrel.marti.register import register_feed

        try:
            uid = register_feed(args.marti, url, args.callsign, ssl_ctx=ssl_ctx)
            print(f"video feed {url} registered with {args.marti} (uid {uid})", flush=True)
        except (OSError, ValueError) as exc:  # PED still runs; the feed is just not listed
            print(f"kestrel: warning: --marti: could not register the video feed: {exc}", file=sys.stderr)
    return restream, cot_url


def _push_line(push: dict[str, Any]) -> str:
    kinds = ", ".join(f"{n} {t}" for t, n in sorted(push["by_type"].items())) or "nothing"
    line = f"pushed to {push['target']}: {push['sent']} events ({kinds})"
    if push["dropped"]:
        line += f"; {push['dropped']} NOT sent"
    if push.get("not_geolocated"):
        line += f"; {push['not_geolocated']} releasable tracks have no ground position (not sent)"
    if push["errors"]:
        line += f"; last error: {push['errors'][-1]}"
    return line


def _open_store(run_dir: str) -> Any:
    from kestrel.ped.review import ReviewStore

    try:
        return ReviewStore(run_dir, create=False)
    except FileNotFoundError as exc:
        raise _bad(str(exc)) from None


def _review(args: argparse.Namespace) -> int:
    from kestrel.ped.products import track_properties
    from kestrel.ped.review import ReviewError
    from kestrel.ped.runner import refresh_products

    with _open_store(args.run_dir) as store:
        if args.confirm is not None or args.reject is not None:
            tid = args.confirm if args.confirm is not None else args.reject
            state = "confirmed" if args.confirm is not None else "rejected"
            try:
                t = store.review(tid, state, label=args.label, affiliation=args.affiliation, analyst=args.analyst)
            except ReviewError as exc:
                raise _bad(f"{args.run_dir}: {exc}") from None
            refresh_products(store)
            print(f"track {t.id}: {t.state} as {t.label} ({t.affiliation}) by {t.analyst} at {t.reviewed_at}")
            if args.confirm is not None and args.label is None and t.label == "unknown":
                print(f"track {t.id} has no label: add --label vehicle|person|vessel to say what it is "
                      "(TAK maps show it as an unknown ground item until then)", file=sys.stderr)
            return 0
        if args.label or args.affiliation:
            raise _bad("--label/--affiliation need --confirm ID")
        tracks = store.tracks(points=False)
        if args.json:
            spans = store.frame_spans()
            json.dump([track_properties(t) | {"state": t.state, "first_frame": spans.get(t.id, (None, None))[0],
                                              "last_frame": spans.get(t.id, (None, None))[1], "lat": t.lat,
                                              "lon": t.lon} for t in tracks], sys.stdout, indent=1)
            print()
            return 0
        print(f"{'id':>5} {'frames':>6} {'first':>8} {'last':>8} {'m/s':>6} {'position':>23}  state")
        for t in tracks:
            pos = f"{t.lat:.6f},{t.lon:.6f}" if t.lat is not None and t.lon is not None else "(pixels only)"
            speed = f"{t.speed:.1f}" if t.speed is not None else "-"
            state = t.state if t.state == "pending" else f"{t.state} {t.label}/{t.affiliation} by {t.analyst}"
            print(f"{t.id:>5} {t.frames:>6} {t.first_seen:>8.2f} {t.last_seen:>8.2f} {speed:>6} {pos:>23}  {state}")
        if not tracks:
            print("(no tracks)")
    return 0


def _score(args: argparse.Namespace) -> int:
    from kestrel.ped.score import run_cli

    for path in args.pairs:
        if not Path(path).is_file():
            raise _bad(f"{path}: no such file")

    def error(msg: str) -> None:
        raise _bad(f"ped score: {msg}")

    return run_cli(args, error)


def _export(args: argparse.Namespace) -> int:
    from kestrel.ped.export import export_report, export_video, find_video

    if not args.video and not args.report:
        raise _bad("nothing to export: give --video OUT.mp4 and/or --report OUT.html")
    for out in (args.video, args.report):
        if out and not Path(out).resolve().parent.is_dir():
            raise _bad(f"{out}: its folder does not exist")
    with _open_store(args.run_dir) as store:
        video, why = find_video(store.run_dir, store.meta())
        if args.video:
            if video is None:
                raise _bad(f"{args.run_dir}: cannot make --video: {why}")
            n = export_video(store, video, Path(args.video))
            print(f"{args.video}: {n} frames with boxes, ids and labels")
        if args.report:
            export_report(store, video, Path(args.report))
            print(f"{args.report}: {len(store.tracks(points=False))} tracks" + ("" if video else f" (no thumbnails: {why})"))
    return 0


def _disseminate(args: argparse.Namespace) -> int:
    from kestrel.ped.runner import disseminate_run

    ssl_ctx = None if args.dry_run else _ssl(args)
    with _open_store(args.run_dir) as store:
        result = disseminate_run(store, None if args.dry_run else args.push, ssl_ctx=ssl_ctx,
                                 release_auto=args.release == "auto", callsign=args.callsign, stale_s=args.stale,
                                 video_url=args.video_url)
    if args.dry_run:
        assert isinstance(result, list)
        for data in result:
            sys.stdout.write(data.decode() + "\n")
        return 0
    assert isinstance(result, dict)
    print(_push_line(result))
    return 0 if result["sent"] or not result["errors"] else 1
