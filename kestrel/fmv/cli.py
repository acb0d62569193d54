"""`kestrel fmv info|footprint|check|synth`: thin handlers over kestrel.fmv (imports inside)."""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from kestrel.errors import BadInput


def register(subparsers: Any) -> None:
    fmv = subparsers.add_parser("fmv", help="STANAG 4609 video: inspect, footprints, synthetic clips")
    sub = fmv.add_subparsers(dest="fmv_command", required=True)

    p = sub.add_parser("info", help="streams, duration, KLV counts per set, checksum failures")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="one JSON object per KLV packet on stdout")
    p.add_argument("--no-check", action="store_true", help="skip the frame-centre consistency figure")
    p.set_defaults(func=_info)

    p = sub.add_parser("footprint", help="image footprint polygons as GeoJSON")
    p.add_argument("file")
    p.add_argument("--out", required=True, help="output .geojson")
    p.add_argument("--per-frame", action="store_true", help="one polygon per video frame (default: per KLV packet)")
    p.set_defaults(func=_footprint)

    p = sub.add_parser("check", help="ray-traced image centre vs KLV frame-centre tag (median, p90)")
    p.add_argument("files", nargs="+")
    p.set_defaults(func=_check)

    p = sub.add_parser("synth", help="synthetic STANAG 4609 clip with moving targets and truth")
    p.add_argument("out")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--targets", type=int, default=3)
    p.add_argument("--truth", help="write ground truth JSON here")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", default="720x480", help="WIDTHxHEIGHT (even numbers)")
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--hfov", type=float, default=8.0, help="horizontal field of view, degrees")
    p.add_argument("--sync-klv", action="store_true", help="synchronous KLV carriage (0x15) instead of async")
    p.add_argument("--scenario", choices=("orbit", "crossing", "aerial"), default="orbit",
                   help="orbit: non-crossing circles (default); crossing: pairs on straight roads that cross "
                        "or pass head-on, one of each pair low-contrast; aerial: traffic entering and leaving "
                        "the view over real aerial imagery, camera panning and zooming (--targets = vehicles "
                        "over the whole clip)")
    p.add_argument("--texture-from", metavar="FILE.ts", help="aerial: video whose frames make the ground "
                   "(default: tests/data/fmv/aphill_klv_10s.ts)")
    p.set_defaults(func=_synth)


def _scan(path: str) -> Any:
    from kestrel.fmv.frame import FmvInputError
    from kestrel.fmv.scan import scan_klv

    try:
        return scan_klv(path)
    except FmvInputError as exc:
        raise BadInput(str(exc)) from None


def _stream(path: str, each: Any) -> Any:
    """Run a streaming KLV scan, calling `each(pkt, at)` per packet; returns the scanner."""
    from kestrel.fmv.frame import FmvInputError
    from kestrel.fmv.scan import KlvScanner

    scanner = KlvScanner(path)
    try:
        for pkt, at in scanner:
            each(pkt, at)
    except FmvInputError as exc:
        raise BadInput(str(exc)) from None
    return scanner


def _truncation(scan: Any) -> str | None:
    ts = scan.ts
    if ts.partial_tail:
        return f"{scan.name}: truncated: last TS packet has {ts.partial_tail} of 188 bytes"
    if ts.cut_pes:
        return f"{scan.name}: truncated: {ts.cut_pes} KLV PES cut short at the end of the file"
    if scan.video_pes == 0:
        return f"{scan.name}: no video access unit found (truncated or empty stream)"
    return None


def _info(args: argparse.Namespace) -> int:
    from kestrel.fmv.report import CentreSampler
    from kestrel.klv import to_jsonable

    if args.json:
        out = sys.stdout

        def emit(pkt: Any, at: float | None) -> None:
            obj = to_jsonable(pkt)
            obj["at"] = at  # effective time (seconds); differs from pts for untimed KLV
            out.write(json.dumps(obj, allow_nan=False, default=str) + "\n")

        try:
            scan = _stream(args.file, emit)
            out.flush()
        except BrokenPipeError:  # `| head`: the reader has what it wanted
            sys.stdout = None  # type: ignore[assignment]
            return 0
    else:
        sampler = CentreSampler()
        per_pid: dict[int, PidCounts] = {}

        def count(pkt: Any, _at: float | None) -> None:
            per_pid.setdefault(getattr(pkt, "stream", None) or 0, PidCounts()).add(pkt)
            sampler.add(pkt)

        scan = _stream(args.file, count)
        _print_info(args.file, scan, sampler.summary() if not args.no_check else None, per_pid)
    reason = _truncation(scan)
    if reason:
        sys.stdout.flush()  # the report first, so the reason is the last line even with 2>&1 into a pipe
        raise BadInput(reason)
    return 0


class PidCounts:
    """KLV packets, sets and failures of one KLV stream (PID): a damaged stream is named, not averaged in."""

    __slots__ = ("by_set", "checksum_failures", "errors", "packets")

    def __init__(self) -> None:
        self.packets = self.checksum_failures = self.errors = 0
        self.by_set: dict[str, int] = {}

    def add(self, pkt: Any) -> None:
        self.packets += 1
        self.by_set[pkt.set_name] = self.by_set.get(pkt.set_name, 0) + 1
        self.checksum_failures += pkt.checksum_ok is False
        self.errors += pkt.error is not None

    def line(self, pid: int) -> str:
        sets = ", ".join(f"{k} {v}" for k, v in sorted(self.by_set.items()))
        return (f"  pid 0x{pid:04x}: {self.packets} packets ({sets or 'none'}), "
                f"checksum failures {self.checksum_failures}, undecodable {self.errors}")


# A frame-centre tag this far from where the angles put the image centre is not error, it is
# metadata whose angles and frame-centre tags describe different geometries (or bad test data).
INCONSISTENT_M = 100_000.0


def _print_info(path: str, scan: Any, fc: dict[str, Any] | None, per_pid: dict[int, PidCounts] | None = None) -> None:
    from kestrel.fmv.report import probe_video

    probe = probe_video(path)
    p = print
    p(f"file: {path}")
    for s in sorted(scan.streams.values(), key=lambda s: s.pid):
        extra = ""
        if s.kind == "video" and probe:
            extra = f" {probe['width']}x{probe['height']} @ {probe['fps'] or '?'} fps"
        carriage = " synchronous (0x15, AU cells)" if s.sync else (" asynchronous (0x06)" if s.kind == "klv" else "")
        p(f"  pid 0x{s.pid:04x} type 0x{s.stream_type:02x} {s.kind:<7} {s.codec}{carriage}{extra} units={s.units}")
    times = scan.video_times
    if times:
        fps = (probe or {}).get("fps") or 0
        dur = times[-1] - times[0] + (1.0 / fps if fps else 0.0)
        p(f"duration: {dur:.3f} s, video access units: {scan.video_pes}")
    st = scan.stats
    p(f"klv packets: {st.packets} in {st.units} units ({st.untimed} untimed)")
    for name, n in sorted(st.by_set.items()):
        p(f"  {name}: {n}")
    p(f"checksum failures: {st.checksum_failures}, undecodable: {st.errors}")
    if per_pid is not None:
        klv_pids = {s.pid for s in scan.streams.values() if s.kind == "klv"} | set(per_pid)
        if klv_pids:
            p("per KLV stream:")
        for pid in sorted(klv_pids):
            p(per_pid.get(pid, PidCounts()).line(pid))
    ts = scan.ts
    p(f"transport: {ts.packets} packets, sync bytes skipped {ts.bytes_skipped}, cc errors {ts.cc_errors}, "
      f"transport errors {ts.transport_errors}, bad data PES {ts.bad_pes}")
    if fc is not None and st.packets:
        p(_centre_line(fc))


def _centre_line(fc: dict[str, Any]) -> str:
    head = "frame centre vs ray-traced image centre"
    if not fc["compared"]:
        return f"{head}: not comparable ({fc['skipped'] or 'no frame-centre tags'})"
    sampled = f", every {fc['sampled_every']}th" if fc.get("sampled_every", 1) > 1 else ""
    of = f"{fc['compared']} of {fc['records']} records{sampled}"
    if _inconsistent(fc):
        return (f"{head}: inconsistent metadata (angles and frame-centre tags disagree): "
                f"median gap {fc['median_m'] / 1000:,.0f} km ({of})")
    return f"{head}: median {fc['median_m']:.1f} m, p90 {fc['p90_m']:.1f} m (max {fc['max_m']:.1f} m, {of})"


def _inconsistent(fc: dict[str, Any]) -> bool:
    return fc.get("median_m") is not None and fc["median_m"] > INCONSISTENT_M


def _footprint(args: argparse.Namespace) -> int:
    from kestrel.fmv.report import footprints, probe_video

    scan = _scan(args.file)
    probe = probe_video(args.file)
    if not probe.get("width"):
        raise BadInput(f"{args.file}: cannot read the video frame size")
    fc = footprints(scan, probe["width"], probe["height"], per_frame=args.per_frame)
    try:
        with open(args.out, "w") as fh:
            json.dump(fc, fh)
    except OSError as exc:
        raise BadInput(f"{args.out}: {exc.strerror or exc}") from None
    print(f"{args.out}: {len(fc['features'])} footprints ({fc['properties']['skipped']} records without a model)")
    return 0


def _check(args: argparse.Namespace) -> int:
    from kestrel.fmv.report import CentreSampler

    print(f"{'file':<40} {'records':>8} {'compared':>8} {'median_m':>10} {'p90_m':>10} {'max_m':>10}")
    for path in args.files:
        sampler = CentreSampler()
        _stream(path, lambda pkt, _at, s=sampler: s.add(pkt))
        fc = sampler.summary()

        def f(v: float | None) -> str:
            return f"{v:10.1f}" if v is not None else f"{'-':>10}"

        print(f"{path[-40:]:<40} {fc['records']:>8} {fc['compared']:>8} {f(fc['median_m'])} {f(fc['p90_m'])} "
              f"{f(fc['max_m'])}")
        if fc["skipped"]:
            print(f"  skipped: {fc['skipped']}")
        if _inconsistent(fc):
            print("  inconsistent metadata (angles and frame-centre tags disagree)")
    return 0


def _synth(args: argparse.Namespace) -> int:
    m = re.fullmatch(r"(\d+)x(\d+)", args.size)
    if not m or int(m[1]) % 2 or int(m[2]) % 2 or int(m[1]) < 64 or int(m[2]) < 64:
        raise BadInput(f"--size {args.size}: expected WIDTHxHEIGHT, even numbers >= 64")
    if args.seconds <= 0 or args.targets < 0 or not 1 <= args.fps <= 120 or not 0.5 <= args.hfov <= 90:
        raise BadInput("synth: need --seconds > 0, --targets >= 0, 1 <= --fps <= 120, 0.5 <= --hfov <= 90")
    from kestrel.fmv.synth import Scenario, synthesize

    sc = Scenario(seconds=args.seconds, fps=args.fps, width=int(m[1]), height=int(m[2]), targets=args.targets,
                  seed=args.seed, hfov=args.hfov, sync_klv=args.sync_klv,
                  scenario=args.scenario, texture_from=args.texture_from)
    from kestrel.fmv.scenes import SceneError

    try:
        truth = synthesize(args.out, sc, args.truth)
    except OSError as exc:
        raise BadInput(f"{args.out}: {exc.strerror or exc}") from None
    except SceneError as exc:
        raise BadInput(str(exc)) from None
    print(f"{args.out}: {len(truth['frames'])} frames {sc.width}x{sc.height} @ {sc.fps} fps, "
          f"{sc.targets} targets" + (f", truth in {args.truth}" if args.truth else ""))
    return 0
