"""Multi-target tracker: constant-velocity Kalman filters + optimal assignment, N-of-M births.

Coordinates: on the ground (local ENU metres around the first geolocated detection) whenever the
detections carry ground positions, so motion is predicted as it happens on the ground, whatever
the camera does; in image pixels otherwise (no usable KLV). The space is chosen at the first
frame with detections and kept for the run.

Per frame: predict every live track to the frame's time; cost = squared Mahalanobis distance of
each detection to each track's predicted position (gated by chi-square and a hard distance cap);
optimal assignment (`scipy.optimize.linear_sum_assignment`); update the matched; unmatched
detections far from every live track start tentative tracks. A tentative track is confirmed after
`n_hits` hits within its last `m_window` frames (and only then gets its public id, so ids are
1, 2, 3 ... in confirmation order and never reused), deleted if it cannot reach that. A confirmed
track coasts on its prediction for up to `max_coast_s` seconds, then becomes LOST (finished).
Speed and heading are the filter's velocity (smoothed) in ground mode.
Cost: O(T*D) per frame for T live tracks and D detections, plus the O(n^3) assignment on them.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment

from kestrel.geo.geodesy import LocalFrame
from kestrel.ped.backfill import FrameRing, look_moves, walk_back
from kestrel.ped.birth import enters
from kestrel.ped.records import Detections, Track, TrackPoint, TrackState

F64 = npt.NDArray[np.float64]


@dataclass(slots=True)
class TrackerConfig:
    n_hits: int = 4
    m_window: int = 6
    max_coast_s: float = 1.5
    # A mover moves: confirmation also needs the track to have travelled, relative to the ground
    # as the image shows it (birth point carried along by the detector's ego-motion homography),
    # at least `min_travel_boxes` of its own box length and `min_travel_px`, along a straight
    # line (`max_path_rms_boxes`). Flicker stays in place and clutter hops; neither confirms.
    # Independent of the KLV (real metadata can drift metres per second). Issue 9: one box length
    # (the previous 1.0) kept a 9 m car at 2 m/s unreported for 4.5 s and never reported targets
    # in view for 1-3 s; measured on seeded aerial clips, 0 (the straight-line test and 4 px)
    # reports them 0.5-0.7 s sooner with no more false tracks, given the companion test below.
    # Instead: the straight-line velocity fitted to the hits must differ from zero by
    # `min_speed_sigma` of its standard error (from the fit's own residuals, at least
    # `noise_floor_px` per axis): flicker jittering in place passes no such test however long it
    # lasts; a 2 m/s car (10 px/s at 0.2 m/px, ~1.5 px of box noise) passes it in ~0.5 s.
    require_motion: bool = True  # False for object detectors (ONNX): a parked car is a target too
    min_travel_boxes: float = 0.0
    min_travel_px: float = 4.0
    min_speed_sigma: float = 4.0  # 0: off
    noise_floor_px: float = 0.7
    max_path_rms_boxes: float = 0.5  # hits must fit constant velocity to this many box lengths
    # Corners (issue 9, seventh pass): when the centres fail that test, each corner of the boxes is
    # tried, if the box has grown to `mover_corners` times its first area. A car the camera pans onto
    # is seen front first and grows as the ground behind it comes into view: the back edge runs with
    # the reveal, so the centre hardly moves over the ground while the front corner does (minute-long
    # aerial clip 312: car 14 confirmed 15 frames after its first hit). Aerial 311-313 and 321-323:
    # targets reported > 0.5 s after coming into view 64 -> 54, false tracks the same; ungated (any box),
    # pieces riding behind a car confirmed before the companion test could tell (8-s seed 12). 0: off.
    mover_corners: float = 1.5
    # Knots (issue 9, fourth pass): a detection whose box overlaps this many other boxes of the same
    # frame is part of a knot of nested blobs (the MTI where it lost the ground's registration; on
    # the aerial clips 89 such boxes off any target, 3 of ~5,700 on one): it neither starts nor
    # confirms a track (a confirmed track may still take it). 0: off.
    knot_overlaps: int = 2
    knot_memory_s: float = 0.5  # ... nor a detection whose centre lies where a knot was this recently. 0: off
    # Border births (issue 9, sixth pass; kestrel/ped/birth.py; needs the picture, `update(dets, image)`):
    # a track whose newest box is within `edge_px` of the picture's border confirms only once it comes
    # into the picture (its box centre `edge_inward_px` further from that border than its first box's),
    # leaves the border, or has been seen `edge_wait_s` (a vehicle standing or driving along the border).
    # Aerial 301-306 and 11-20: 8 of the 12 false tracks were blobs at the border that never came in
    # (a blob fixed in the picture while the camera pans, pieces of a car leaving the picture); they
    # live 0.2-0.6 s. The wait is `back_min_seen_s` so the back-fill runs once, from the look then. 0: off.
    edge_px: float = 24.0
    edge_inward_px: float = 3.0
    edge_wait_s: float = 0.7
    # Bursts (issue 9, opt-in, not the default): no track confirms within `burst_s` after a frame that
    # started `burst_births` or more new tracks (4 measured). Traffic comes into view a vehicle or two at
    # a time; many births in one frame were the MTI mis-registering the ground (minute-long tuning clip
    # 322: 9-30 boxes a frame for 55 frames, none on a vehicle: 17 -> 3 false tracks). Tracks keep their
    # hits and confirm after it. Not the default: the warm-up's end is such a frame where several cars
    # are in view (crossing 201/202: first report 2.23/2.17 -> 2.53 s). 0: off. Since the MTI tops up its
    # corners (`MtiConfig.top_up`) the mis-registration itself is gone (on the regenerated 322: 31 -> 0).
    burst_births: int = 0
    burst_s: float = 0.5
    gate_chi2: float = 16.0  # squared Mahalanobis distance (2 dof; 16 ~ 99.97 %)
    # Ground mode (metres, seconds)
    accel_std_m: float = 25.0  # manoeuvres (~10 m/s² turning a 30 m circle at 17 m/s) + line-of-sight jitter
    meas_std_m: float = 1.5
    init_speed_std_m: float = 12.0
    max_speed_m: float = 45.0  # fastest plausible mover: caps every gate to 3 sigma + speed * gap
    # Pixel mode (pixels, seconds)
    accel_std_px: float = 80.0
    meas_std_px: float = 2.0
    init_speed_std_px: float = 150.0
    max_speed_px: float = 300.0
    default_dt: float = 1 / 30  # when frames carry no PTS
    # Box fit: a motion blob of a slow or braking vehicle is its leading part only (the rest
    # overlaps where it was). A track knows its size: the `size_quantile` of its recent boxes'
    # widths and heights (partial blobs only ever under-estimate). A smaller box is grown to that
    # size backwards from its leading edge (the side it moves towards, ground-stabilised pixels).
    fit_boxes: bool = True
    size_quantile: float = 80.0
    size_window_s: float = 1.5
    fit_across: bool = True  # also grow across the motion (centred)
    fit_course: float = math.radians(15.0)  # sizes from boxes seen on a course within this of the current
    # Vehicle floor (ground mode, needs the frame's sensor model: `update(dets, image, sensor)`): a
    # moving track's box is grown (as above) to at least a small vehicle, `min_vehicle_m` (length,
    # width) laid along its course and projected into the picture at its place. A slow car whose
    # every blob is one end strip or corner (its own boxes never show its size) and a track's first
    # boxes (no size known yet) are then boxes on the car. 0: off.
    min_vehicle_m: tuple[float, float] = (4.5, 1.8)
    # Hold (needs the frame: `update(dets, image)`): a confirmed track the detector missed looks
    # for its own appearance (grey patch of its last fitted box, normalised cross-correlation >=
    # `hold_ncc`) around its predicted box; found, it reports a held point there and keeps alive
    # (a stopped car: the detector sees nothing while it stands) for up to `hold_s` seconds
    # since its last detection. A blind hold (no appearance check) was measured worse: boxes
    # drift off the car. 0: off.
    hold_s: float = 3.0
    # ... also in frames the detector finishes late (its warm-up, a look-ahead): the pipeline keeps
    # their pictures (grey) until then. Issue 9, fourth pass: a car stopping in the first 3 s of a
    # clip was lost (the tracker saw no picture before the MTI's warm-up ended). False: newest only.
    hold_late_frames: bool = True
    # ... and only a track seen for at least this long (first to last detection) is held: a car
    # that stops was seen driving first; a short false track on static texture matches its own
    # patch where it stands, and would be held there for `hold_s` (more pictures, more such holds).
    hold_min_seen_s: float = 1.0
    hold_decay_s: float = 0.5
    hold_ncc: float = 0.7
    hold_min_std: float = 6.0  # grey levels: flatter patches are not held
    hold_min_px: int = 8  # a box narrower than this has too few pixels to correlate
    # ... and the place found must be reachable from the last detection at constant velocity give
    # or take braking/accelerating at `hold_brake` m/s² (metres from the box: a vehicle ~6 m long):
    # the ground a car has just left matches its patch too, but would mean an impossible stop.
    hold_brake: float = 4.0
    # Only tracks slower than this many of their box lengths per second at their last detection
    # are held: a stop starts slow; a fast one that vanishes was missed, and a held ground-coloured
    # car at a crossing cost 0.03 precision when fast tracks were held too.
    hold_max_lengths_s: float = 1.0
    # ... and not where another confirmed track's detection is this frame (box IoU > `hold_taken`):
    # that vehicle is the other track's. A held track that moves with that detection (its held
    # velocity within `hold_taken_rel` of the other's speed, + 5 px/s) is a second track on one vehicle,
    # lagging it or on a part of it, and ends there; one that does not (a stopped car that another
    # drives past, two cars crossing in one blob) coasts without held points. Issue 9, eighth
    # pass: 323's truck was followed by two tracks for 20 s, one trailing it by a few metres
    # (IoU 0.29). 0: off.
    hold_taken: float = 0.3
    hold_taken_rel: float = 0.3
    # Back-fill (needs the frames' pictures, kestrel/ped/backfill.py): a confirmed track's look is
    # followed back through the last `back_s` seconds (NCC >= `back_ncc`, where its velocity puts it,
    # through the camera motion): the frames before its first detection and the gaps it coasted
    # through get held points, so its history starts when the vehicle came into view, not when the
    # detector first saw it whole (ground the camera just panned onto; a slow car still a strip).
    # Nothing is reported sooner: the points are added in the past. Guards, each measured: only once
    # the track has been seen `back_min_seen_s` (short false tracks on texture match their own patch
    # going back as well as a car does), from the look it has then (a fuller box than at confirmation);
    # only a box at least 3/4 of the smallest vehicle long (a corner followed back is false in every
    # frame); not onto another track's vehicle; not where what was found going back never left its place
    # on the ground (texture); before the first detection only where the detector was blind (the place
    # was not in the picture `back_blind_s` earlier: where it saw the ground and found nothing, a look
    # found there is texture); a gap only if the look leads back to the track's last point (or to the
    # picture's edge). Aerial 301-306 and 11-15 (replays of one detector run per clip): recall 301 / 303
    # / 306 0.876 / 0.886 / 0.882 -> 0.937 / 0.975 / 0.943, no clip's precision down by more than 0.001.
    # Memory: `back_s` of grey frames (2 s at 720x480: ~21 MB). 0: off.
    back_s: float = 2.0
    back_ncc: float = 0.7
    back_blind_s: float = 1.0
    back_min_seen_s: float = 0.7
    back_min_px: int = 120
    # Companions: a blob smaller than `companion_area` of a confirmed track's size that keeps within
    # `companion_reach` of its sizes of it and moves with it (its offset wanders by less than
    # `companion_drift` of its size) is a piece of that vehicle (a split, a trailing fragment),
    # not a new mover: it is never confirmed. Passing and crossing cars move apart; a following
    # car is as big as its leader. 0: off.
    companion_area: float = 0.6
    companion_reach: float = 2.5
    companion_drift: float = 1.0
    # ... and a blob of any size whose box lies on a confirmed track's box (intersection >= this
    # fraction of the smaller box, median over the frames both were seen) and moves with it, too.
    # Issue 9, eighth pass: 323's slow truck had a second track for 5 s, its box as big as the
    # truck's own and on the truck's corner. A following car keeps a gap. 0: off.
    companion_touch: float = 0.05
    # ... and one just beside it (touching the host's box grown by `ghost_pad` of its size on every
    # side) that rides with it, unless what its box shows moves along with the box over the last
    # `ghost_frames` frames (its own look: a car following closely): bare ground the vehicle has just
    # left, boxed as change (a ghost), stays put. Until that can be told (young, hardly moved) it
    # waits. Issue 9, eighth pass: 312 and 323 had ghosts riding behind slow vehicles for 2-6 s. 0: off
    # (so is it with `companion_touch` 0).
    ghost_pad: float = 1.0
    ghost_frames: int = 10
    companion_seen_s: float = 0.5  # only tracks that took a blob within this long are hosts
    # Parts (issue 9, third pass): the companion test also against a *tentative* track with a bigger
    # box (two pieces of one vehicle are born together: the smaller must not confirm first), and any
    # piece riding with a track (same test, any size) whose box joined to that track's box stays
    # within `part_max_m` metres (ground mode: the longest vehicle, 9 m, plus blob spill) is a part: it never
    # confirms, and the track's box is the union of both pieces each frame both are seen (a car
    # split into front and back blobs by a same-coloured middle). 0: off (companions as above).
    part_max_m: float = 12.0
    part_drift_m: float = 4.0  # ... and keeps its offset to the track within this over `part_ride_s`
    part_ride_s: float = 0.5
    # Gather: a confirmed track seen this frame also takes the blobs no track took whose box joined
    # to its own stays within its robust size (+ this fraction, at least 2 px): a car split into a
    # moving front and a lagging back blob is one box, and the back blob starts no track. 0: off.
    gather_slack: float = 0.2
    # No reversing onto a trailing ghost: a confirmed track moving faster than `behind_min_px_s`
    # (ground-stabilised pixels) does not take a detection whose centre lies more than
    # `behind_boxes` of its length behind its predicted box centre. Slow cars leave a ghost blob
    # behind them in a past-reference change detector (where both references saw the car and the
    # current frame sees ground); when the car's own blob is missed, the nearest candidate in the
    # filter's gate is that ghost. 0: off.
    behind_boxes: float = 0.6
    behind_min_px_s: float = 5.0

    @classmethod
    def second_pass(cls, require_motion: bool = True) -> TrackerConfig:
        """The default before the third pass of issue 9 (no parts, no gather, any host), to measure against."""
        return replace(cls.third_pass(require_motion), part_max_m=0.0, gather_slack=0.0, companion_seen_s=math.inf)

    @classmethod
    def third_pass(cls, require_motion: bool = True) -> TrackerConfig:
        """The default after the third pass of issue 9 (before its fourth: no vehicle floor, pictures of
        the newest frame only), to measure against."""
        return replace(cls.fourth_pass(require_motion), min_vehicle_m=(0.0, 0.0), hold_late_frames=False,
                       hold_min_seen_s=0.0, knot_overlaps=0)

    @classmethod
    def fourth_pass(cls, require_motion: bool = True) -> TrackerConfig:
        """The default after the fourth pass of issue 9 (before back-fill), to measure against."""
        return replace(cls.fifth_pass(require_motion), back_s=0.0)

    @classmethod
    def fifth_pass(cls, require_motion: bool = True) -> TrackerConfig:
        """The default after the fifth pass of issue 9 (back-fill; before border births), to measure against."""
        return replace(cls.sixth_pass(require_motion), edge_px=0.0)

    @classmethod
    def sixth_pass(cls, require_motion: bool = True) -> TrackerConfig:
        """The default after the sixth pass of issue 9 (border births; motion tested on box centres
        only), to measure against."""
        return replace(cls.seventh_pass(require_motion), mover_corners=0.0)

    @classmethod
    def seventh_pass(cls, require_motion: bool = True) -> TrackerConfig:
        """The default after the seventh pass of issue 9 (box corners in the motion test; holds
        anywhere, even on another track's detection; companions only smaller than their host), to
        measure against. Each earlier pass is the next one with its own knobs off."""
        return cls(require_motion=require_motion, hold_taken=0.0, companion_touch=0.0, ghost_pad=0.0)

    @classmethod
    def previous(cls, require_motion: bool = True) -> TrackerConfig:
        """The settings before issue 9 (with `--detector mti-v1`), kept to measure against."""
        return cls(require_motion=require_motion, n_hits=4, m_window=6, min_travel_boxes=1.0, fit_boxes=False,
                   hold_s=0.0, companion_area=0.0, min_speed_sigma=0.0, behind_boxes=0.0, part_max_m=0.0,
                   gather_slack=0.0, hold_late_frames=False, knot_overlaps=0, back_s=0.0)


@dataclass(slots=True)
class _Live:
    track: Track
    x: F64  # [pos_a, pos_b, vel_a, vel_b]
    P: F64
    t: float  # time of x
    last_hit_t: float
    window: deque[bool] = field(default_factory=deque)
    # Tentative tracks: (time, box centre u, v, width, height) of every hit, carried into the current
    # frame's pixels by the camera motion (so in "ground as the image shows it" coordinates).
    hist: list[tuple[float, F64]] = field(default_factory=list)
    # Detections this (still tentative) track took: they get its id when it is confirmed.
    taken: list[tuple[Detections, int]] = field(default_factory=list)
    # Recent hits' boxes as (time, centre u, v, width, height) in the current frame's pixels
    # (carried along by the camera motion): the track's size and its ground-stabilised velocity.
    obs: deque[tuple[float, F64]] = field(default_factory=lambda: deque(maxlen=60))
    obs_dir: deque[float] = field(default_factory=lambda: deque(maxlen=60))  # pixel course at each (rad; NaN: slow)
    out: F64 | None = None  # last reported box (centre u, v, w, h), current frame's pixels
    out_t: float = 0.0  # its time
    pvel: F64 | None = None  # ground-stabilised pixel velocity (px/s) while held
    tmpl: npt.NDArray[np.uint8] | None = None  # grey patch of the last fitted box (hold)
    app_t: float = -math.inf  # last time the appearance was found (hold)
    v_hit: F64 | None = None  # filter velocity at the last detection
    pv_hit: float = 0.0  # pixel speed at the last detection
    pv_hit_vec: F64 = field(default_factory=lambda: np.zeros(2))  # ... its pixel velocity (px/s)
    hit_c: F64 | None = None  # fitted box centre at the last detection, current frame's pixels
    part_of: _Live | None = None  # tentative: a piece of this track's vehicle (see `part_max_m`)
    hit_di: int = -1  # detection taken this frame (-1: none)
    hit_z: F64 | None = None  # ... its position in tracking space
    gsd: float = 0.0  # metres per pixel near it (parts)
    size: F64 | None = None  # robust size (see `_size`) ...
    size_at: tuple[float, int] = (math.nan, 0)  # ... as of (time, boxes)
    born_t: float = 0.0  # time of its first detection
    fill_pending: bool = False  # confirmed, not back-filled yet (see `back_s`)
    raw: F64 | None = None  # the detection's own box at the last hit (centre, size), before the box fit
    second: bool = False  # a second track on another track's vehicle: ends (see `hold_taken`)
    fill_new: list[TrackPoint] = field(default_factory=list)  # back-filled points waiting for `back_min_seen_s`


class Tracker:
    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.cfg = config or TrackerConfig()
        self.mode: str | None = None  # "ground" | "pixel"
        self.local: LocalFrame | None = None  # ground mode
        self._live: list[_Live] = []
        self._done: list[Track] = []
        self._next_id = 1
        self._t: float | None = None
        self.births = 0
        self.deleted_tentative = 0
        self._image: npt.NDArray[np.uint8] | None = None
        self._knot: npt.NDArray[np.bool_] = np.zeros(0, bool)  # this frame's detections (kept) in a knot
        self._knots: list[tuple[float, F64]] = []  # recent knot boxes (time, centre u, v, w, h), current pixels
        self._sensor: Any = None  # the frame's SensorModel (kestrel.geo.sensor), when at hand
        self._jac_of: Any = None  # ... the one `_jac` was made from
        self._jac: tuple[float, float, F64, F64, npt.NDArray[np.bool_]] | None = None
        self._jac_at = 0  # ... at this frame (`_frames`)
        self._frames = 0
        self._burst_t = -math.inf  # time of the last frame with `burst_births` births
        self._ring: FrameRing | None = None  # recent pictures for back-fill (`back_s`)
        self._wh: tuple[int, int] | None = None  # picture size (width, height), once a picture came

    # ------------------------------------------------------------------ public
    def update(self, dets: Detections, image: npt.NDArray[np.uint8] | None = None, sensor: Any = None) -> list[Track]:
        """Feed one frame's detections (every frame, in order, even when empty). Returns live tracks.
        `image`: that frame (BGR or grey, full size), when at hand: lets tracks hold through stops.
        `sensor`: that frame's sensor model (`kestrel.geo.sensor.SensorModel`), when known: pixel
        sizes of a vehicle on the ground (`min_vehicle_m`)."""
        self._image, self._sensor = image, sensor
        if image is not None:
            self._wh = (int(image.shape[1]), int(image.shape[0]))
        self._frames += 1
        t = self._time(dets)
        if self.cfg.back_s > 0:
            if self._ring is None:
                self._ring = FrameRing(int(round(self.cfg.back_s / self.cfg.default_dt)) + 1,
                                       int(round(self.cfg.back_blind_s / self.cfg.default_dt)))
            if image is None:
                self._ring.frames.clear()
            else:
                H = None if dets.homography is None else np.asarray(dets.homography, np.float64)
                self._ring.push(dets.frame_index, t, _grey(image), H, sensor)
        if self.mode is None and len(dets):
            self._choose_mode(dets)
        z, keep = self._measurements(dets)
        if dets.homography is not None:
            self._follow_camera(np.asarray(dets.homography, np.float64))
        for lv in self._live:
            self._predict(lv, t)
        self._knot = _knotted(dets.xyxy[keep], self.cfg.knot_overlaps) if len(keep) else np.zeros(0, bool)
        if self.cfg.knot_memory_s > 0:
            self._remember_knots(dets, keep, t)
        matches, unmatched_d = self._assign(z, dets.centers[keep].astype(np.float64) if len(keep) else z, t)
        matched_tracks = set()
        for lv in self._live:
            lv.hit_di = -1
        for ti, di in matches:
            lv = self._live[ti]
            lv.hit_di, lv.hit_z = int(keep[di]), z[di]
            self._update(lv, z[di], dets, keep[di], t)
            matched_tracks.add(ti)
        if self.cfg.part_max_m > 0 and self.mode == "ground":
            self._join_parts(dets, t)
        for ti, lv in enumerate(self._live):
            if ti not in matched_tracks:
                lv.window.append(False)
                self._trim(lv)
                self._hold(lv, dets, t)
        if self.cfg.gather_slack > 0:
            unmatched_d = self._gather(dets, keep, unmatched_d, t)
        born = self.births
        for di in unmatched_d:
            if not self._knot[di] and not self._near_live(z[di]):
                self._birth(z[di], dets, keep[di], t)
        if 0 < self.cfg.burst_births <= self.births - born:
            self._burst_t = t
        self._age(t)
        return [lv.track for lv in self._live if lv.track.state is TrackState.CONFIRMED]

    def finish(self) -> list[Track]:
        """End of stream: every track that was ever confirmed (live ones keep state CONFIRMED)."""
        out = self._done + [lv.track for lv in self._live if lv.track.state is not TrackState.TENTATIVE]
        self.deleted_tentative += sum(lv.track.state is TrackState.TENTATIVE for lv in self._live)
        self._live = []
        self._done = []
        return sorted(out, key=lambda tr: tr.id)

    # ------------------------------------------------------------------ internals
    def _time(self, dets: Detections) -> float:
        if dets.pts is not None:
            t = float(dets.pts)
        else:
            t = (self._t + self.cfg.default_dt) if self._t is not None else 0.0
        self._t = t
        return t

    def _choose_mode(self, dets: Detections) -> None:
        g = dets.ground
        if g is not None and np.isfinite(g[:, :2]).all(axis=1).any():
            from kestrel.geo.geodesy import LocalFrame

            first = g[np.isfinite(g[:, :2]).all(axis=1)][0]
            self.local = LocalFrame(float(first[0]), float(first[1]), 0.0)
            self.mode = "ground"
        else:
            self.mode = "pixel"

    def _measurements(self, dets: Detections) -> tuple[F64, npt.NDArray[np.intp]]:
        """Positions [K, 2] in tracking space, and which detection each one is."""
        if len(dets) == 0 or self.mode is None:
            return np.zeros((0, 2)), np.zeros(0, np.intp)
        if self.mode == "pixel":
            return dets.centers.astype(np.float64), np.arange(len(dets))
        g = dets.ground
        if g is None or self.local is None:
            return np.zeros((0, 2)), np.zeros(0, np.intp)
        keep = np.flatnonzero(np.isfinite(g[:, :2]).all(axis=1))
        if len(keep) == 0:
            return np.zeros((0, 2)), keep
        return self.local.ground_to_enu(g[keep, 0], g[keep, 1]).reshape(-1, 2), keep

    def _params(self) -> tuple[float, float, float, float]:
        c = self.cfg
        if self.mode == "ground":
            return c.accel_std_m, c.meas_std_m, c.init_speed_std_m, c.max_speed_m
        return c.accel_std_px, c.meas_std_px, c.init_speed_std_px, c.max_speed_px

    def _predict(self, lv: _Live, t: float) -> None:
        dt = t - lv.t
        if dt <= 0:
            return
        q = self._params()[0] ** 2
        F = np.eye(4)
        F[0, 2] = F[1, 3] = dt
        g2, g3, g4 = dt**2 / 2, dt**3 / 2, dt**4 / 4
        Q = q * np.array([[g4, 0, g3, 0], [0, g4, 0, g3], [g3, 0, dt * dt, 0], [0, g3, 0, dt * dt]])
        del g2
        lv.x = F @ lv.x
        lv.P = F @ lv.P @ F.T + Q
        lv.t = t

    def _assign(self, z: F64, centres: F64, t: float) -> tuple[list[tuple[int, int]], list[int]]:
        nt, nd = len(self._live), len(z)
        if nt == 0 or nd == 0:
            return [], list(range(nd))
        _a, r, _s, vmax = self._params()
        cost = np.full((nt, nd), 1e6)
        for ti, lv in enumerate(self._live):
            cap = 3 * r + vmax * max(lv.t - lv.last_hit_t, self.cfg.default_dt)
            S = lv.P[:2, :2] + np.eye(2) * r * r
            Si = np.linalg.inv(S)
            d = z - lv.x[:2]
            m2 = np.einsum("ij,jk,ik->i", d, Si, d)
            ok = (m2 <= self.cfg.gate_chi2) & (np.hypot(d[:, 0], d[:, 1]) <= cap)
            if self.cfg.behind_boxes > 0 and lv.track.state is TrackState.CONFIRMED:
                ok &= ~self._behind(lv, centres, t)
            bias = 0.0 if lv.track.state is TrackState.CONFIRMED else 1.0  # prefer established tracks
            if lv.track.state is not TrackState.CONFIRMED:
                ok &= ~self._knot  # a knot's blobs neither start nor confirm a track
            cost[ti, ok] = m2[ok] + bias
        rows, cols = linear_sum_assignment(cost)
        matches = [(int(a), int(b)) for a, b in zip(rows, cols, strict=True) if cost[a, b] < 1e6]
        used = {b for _, b in matches}
        return matches, [d for d in range(nd) if d not in used]

    def _update(self, lv: _Live, z: F64, dets: Detections, di: int, t: float) -> None:
        r = self._params()[1]
        Hm = np.zeros((2, 4))
        Hm[0, 0] = Hm[1, 1] = 1.0
        S = Hm @ lv.P @ Hm.T + np.eye(2) * r * r
        K = lv.P @ Hm.T @ np.linalg.inv(S)
        lv.x = lv.x + K @ (z - Hm @ lv.x)
        lv.P = (np.eye(4) - K @ Hm) @ lv.P
        lv.last_hit_t = t
        lv.window.append(True)
        if lv.track.state is TrackState.TENTATIVE:
            lv.hist.append((t, _cwh(dets.xyxy[di].astype(np.float64))))
        self._trim(lv)
        tr = lv.track
        last = tr.points[-1].frame_index if tr.points else dets.frame_index
        self._append_point(lv, dets, di)
        if self.cfg.back_s > 0 and tr.state is TrackState.CONFIRMED:
            if dets.frame_index - last > 1 and t - lv.born_t >= self.cfg.back_min_seen_s:
                self._add(tr, self._backfill(lv, after=last)[1])  # a gap it coasted through without a point
            if lv.fill_pending and t - lv.born_t >= self.cfg.back_min_seen_s:
                # before its first detection, once seen long enough: followed back from its look now
                # (a fuller box than at confirmation), else as found at confirmation
                done, new = self._backfill(lv) if self._whole(lv) else (False, [])
                self._add(tr, new if done else lv.fill_new)
                lv.fill_pending, lv.fill_new = False, []
        if (tr.state is TrackState.TENTATIVE and sum(lv.window) >= self.cfg.n_hits and self._is_mover(lv, dets, di)
                and self._births_here(lv) and t - self._burst_t > self.cfg.burst_s and not self._is_companion(lv, t)):
            lv.part_of = None
            lv.hist = []
            tr.state = TrackState.CONFIRMED
            tr.confirmed_frame = dets.frame_index
            tr.id = self._next_id
            self._next_id += 1
            for d, i in lv.taken:
                _tag(d, i, tr.id)
            lv.taken = []
            if self.cfg.back_s > 0:
                lv.fill_pending = True
                lv.fill_new = self._backfill(lv)[1] if self._whole(lv) else []

    def _append_point(self, lv: _Live, dets: Detections, di: int, raw: F64 | None = None) -> None:
        if lv.track.state is TrackState.TENTATIVE:
            lv.taken.append((dets, di))
        else:
            _tag(dets, di, lv.track.id)
        t = lv.last_hit_t
        raw = dets.xyxy[di].astype(np.float64) if raw is None else raw
        lv.obs.append((t, _cwh(raw)))
        lv.pv_hit_vec = self._pixel_velocity(lv, t)  # carried along with the camera until the next hit
        moving = float(np.hypot(*lv.pv_hit_vec)) > 3.0
        lv.obs_dir.append(math.atan2(lv.pv_hit_vec[1], lv.pv_hit_vec[0]) if moving else math.nan)
        box = self._fit(lv, raw, t) if self.cfg.fit_boxes else raw
        lv.raw = _cwh(raw)
        lv.out = _cwh(box)
        lv.out_t = t
        self._remember(lv, box)
        lat = lon = hae = None
        if self.mode == "ground" and dets.ground is not None and self.local is not None:
            hae = float(dets.ground[di, 2]) if math.isfinite(float(dets.ground[di, 2])) else 0.0
            llh = self.local.to_geodetic(lv.x[0], lv.x[1], 0.0)
            lat, lon = float(llh[0]), float(llh[1])
            speed = float(math.hypot(lv.x[2], lv.x[3]))
            lv.track.speed_mps = speed
            lv.track.heading_deg = float(math.degrees(math.atan2(lv.x[2], lv.x[3])) % 360.0)
        tr = lv.track
        tr.class_id = int(dets.class_id[di])
        x1, y1, x2, y2 = (float(v) for v in box)
        spd, hdg = (tr.speed_mps, tr.heading_deg) if lat is not None else (None, None)
        tr.points.append(TrackPoint(dets.frame_index, dets.pts, (x1, y1, x2, y2), float(dets.confidence[di]),
                                    lat, lon, hae, spd, hdg))

    def _is_companion(self, lv: _Live, t: float) -> bool:
        """Is tentative `lv` a piece of another track (see `companion_area`, `part_max_m`)? Sets
        `lv.part_of` to that track when it is a part whose pieces join into one box."""
        was, lv.part_of = lv.part_of, None
        if self.cfg.companion_area <= 0 or len(lv.obs) < 3:
            return False
        mine = {round(tt, 4): o for tt, o in lv.obs}
        area = float(np.median([o[2] * o[3] for o in mine.values()]))
        parts = self.cfg.part_max_m > 0
        for other in self._live:
            if other is lv or len(other.obs) < 3 or t - other.last_hit_t > self.cfg.companion_seen_s:
                continue  # a track that lost its blob is no host (it coasts: offsets are stale)
            confirmed = other.track.state is TrackState.CONFIRMED
            if not confirmed and not parts:
                continue
            size = _quantile(np.array([o[2:] for _, o in self._recent(other, t)] or [other.obs[-1][1][2:]]),
                             self.cfg.size_quantile)
            small = area < self.cfg.companion_area * float(size[0] * size[1])
            companion = False
            if not confirmed and (other.part_of is not None or area >= float(size[0] * size[1])):
                continue  # a tentative host: only a bigger one, not itself a part
            pairs = [(mine[k], o) for tt, o in other.obs if (k := round(tt, 4)) in mine]
            offs = np.array([a[:2] - b[:2] for a, b in pairs])
            if len(offs) < 3:
                continue
            reach = float(max(size))
            drift = float(np.max(np.hypot(*(offs - offs[0]).T)))
            if not small and confirmed and self.cfg.companion_touch > 0 and drift <= self.cfg.companion_drift * reach:
                small = self._rides_on(lv, pairs, t)  # any size, on or just beside the host's box
            if (small and confirmed and drift <= self.cfg.companion_drift * reach
                    and float(np.median(np.hypot(offs[:, 0], offs[:, 1]))) <= self.cfg.companion_reach * reach):
                companion = True
            elif parts:  # pieces of one vehicle: they ride together and join into a vehicle-sized box
                j = self._joins(lv, other)
                # not measurable this frame (one of them missed): as it was, unless the track lost its blob
                joined = bool(j) or (j is None and was is other and t - other.last_hit_t <= 0.1)
                if not (joined and (was is other or self._rides_with(lv, other, t))):  # once a part: while it joins
                    continue
                lv.part_of = other
                return True
            else:
                continue
            if companion:
                if parts and self._joins(lv, other):
                    lv.part_of = other
                return True
        return False

    def _rides_on(self, lv: _Live, pairs: list[tuple[F64, F64]], t: float) -> bool:
        """Does tentative `lv`'s box (its boxes paired with a host's, same frames) lie on the host's
        box (`companion_touch`), or just beside it without a look of its own that moves with it (a
        ghost, `ghost_pad`)?"""
        if float(np.median([_touch(a, b) for a, b in pairs])) >= self.cfg.companion_touch:
            return True
        return (self.cfg.ghost_pad > 0
                and float(np.median([_touch(a, b, self.cfg.ghost_pad) for a, b in pairs])) >= self.cfg.companion_touch
                and not self._own_look(lv, t))

    def _own_look(self, lv: _Live, t: float) -> bool:
        """Does what tentative `lv`'s newest box shows move along with the box over the last
        `ghost_frames` frames (`backfill.look_moves`)? A car following another does; the ghost of
        where a vehicle just was does not (ground), nor does a box too erratic to follow."""
        ring = self._ring
        if ring is None or not ring.frames or not lv.obs or lv.obs[-1][0] != t:
            return False  # no pictures (the ring is emptied on a frame without one), or not seen now
        box = np.asarray(lv.obs[-1][1], np.float64)
        n = min(self.cfg.ghost_frames, int(round((t - lv.obs[0][0]) / self.cfg.default_dt)))
        vel = self._pixel_velocity(lv, t)
        if n < 3 or float(np.hypot(*vel)) * n * self.cfg.default_dt < max(3.0, 0.3 * float(max(box[2:]))):
            return False  # too young, or it has hardly moved: nothing to tell its look by
        x0, y0 = int(round(box[0] - box[2] / 2)), int(round(box[1] - box[3] / 2))
        x1, y1 = int(round(box[0] + box[2] / 2)), int(round(box[1] + box[3] / 2))
        grey = ring.frames[-1].grey
        if x0 < 0 or y0 < 0 or x1 > grey.shape[1] or y1 > grey.shape[0] or x1 - x0 < 4 or y1 - y0 < 4:
            return False
        tmpl = grey[y0:y1, x0:x1]
        if float(tmpl.std()) < self.cfg.hold_min_std:
            return False
        return look_moves(ring, box, vel, tmpl, n, ncc=self.cfg.back_ncc)

    def _rides_with(self, lv: _Live, host: _Live, t: float) -> bool:
        """Has `lv` kept its offset to `host` within `part_drift_m` over the last `part_ride_s`?"""
        mine = {round(tt, 4): o for tt, o in lv.obs if t - tt <= self.cfg.part_ride_s}
        offs = np.array([mine[k][:2] - o[:2] for tt, o in host.obs if (k := round(tt, 4)) in mine])
        if len(offs) < 3 or lv.gsd <= 0:
            return False
        spread = np.ptp(offs, axis=0)
        return float(np.hypot(spread[0], spread[1])) * lv.gsd <= self.cfg.part_drift_m

    def _joins(self, lv: _Live, host: _Live) -> bool | None:
        """Do the last boxes of `lv` and `host` (seen in the same frame) join into one box no longer
        than `part_max_m` on the ground? Scale from the two boxes' ground positions. None: not
        both seen in the last frame."""
        if lv.hit_z is None or host.hit_z is None or lv.last_hit_t != host.last_hit_t:
            return None
        a, b = lv.obs[-1][1], host.obs[-1][1]
        px = float(np.hypot(*(a[:2] - b[:2])))
        if px < 1.0:
            return None
        gsd = float(np.hypot(*(lv.hit_z - host.hit_z))) / px
        lv.gsd = gsd
        u = _union(a, b)
        return float(max(u[2], u[3])) * gsd <= self.cfg.part_max_m

    def _join_parts(self, dets: Detections, t: float) -> None:
        """Each confirmed track seen this frame together with a part of it: its box becomes the
        union of both pieces (see `part_max_m`)."""
        for lv in self._live:
            host = lv.part_of
            if host is None:
                continue
            if host not in self._live or lv.track.state is not TrackState.TENTATIVE:
                lv.part_of = None
                continue
            if (lv.hit_di < 0 or host.hit_di < 0 or host.track.state is not TrackState.CONFIRMED
                    or not self._joins(lv, host)):
                continue
            u = _union(_cwh(dets.xyxy[host.hit_di].astype(np.float64)), _cwh(dets.xyxy[lv.hit_di].astype(np.float64)))
            host.obs.pop()
            host.obs_dir.pop()
            host.track.points.pop()
            self._append_point(host, dets, host.hit_di, _xyxy(u))
            _tag(dets, lv.hit_di, host.track.id)

    def _behind(self, lv: _Live, centres: F64, t: float) -> npt.NDArray[np.bool_]:
        """Which detection centres lie behind the track's predicted box (see `behind_boxes`)."""
        no = np.zeros(len(centres), bool)
        if lv.out is None or len(lv.obs) < 5:
            return no
        v = lv.pv_hit_vec
        speed = float(np.hypot(v[0], v[1]))
        if speed < self.cfg.behind_min_px_s:
            return no
        pc = lv.out[:2] + v * (t - lv.out_t)
        along = (centres - pc) @ (v / speed)
        return np.asarray(along < -self.cfg.behind_boxes * float(max(lv.out[2], lv.out[3])), bool)

    def _recent(self, lv: _Live, t: float) -> list[tuple[float, F64]]:
        return [(tt, o) for tt, o in lv.obs if t - tt <= self.cfg.size_window_s]

    def _pixel_velocity(self, lv: _Live, t: float) -> F64:
        """Least-squares velocity (px/s) of the recent box centres, ground-stabilised."""
        rec = self._recent(lv, t)
        if len(rec) < 3 or rec[-1][0] - rec[0][0] < 0.15:
            return np.zeros(2)
        ts = np.array([r[0] for r in rec])
        cs = np.array([r[1][:2] for r in rec])
        ts = ts - ts.mean()
        return np.asarray((ts @ (cs - cs.mean(axis=0))) / float(ts @ ts), np.float64)

    def _size(self, lv: _Live, t: float) -> F64 | None:
        """The track's robust size (w, h): `size_quantile` of its recent boxes on its current course
        (cached per frame: the box fit and the gather both ask)."""
        if lv.size_at == (t, len(lv.obs)):
            return lv.size
        lv.size_at, lv.size = (t, len(lv.obs)), self._size_now(lv, t)
        return lv.size

    def _size_now(self, lv: _Live, t: float) -> F64 | None:
        rec = self._recent(lv, t)
        dirs = list(lv.obs_dir)[-len(rec):] if rec else []
        cur = dirs[-1] if dirs else math.nan
        if not math.isnan(cur):  # a turning car's box changes shape: its size from the same course only
            rec = [r for r, d in zip(rec, dirs, strict=True)
                   if not math.isnan(d) and abs((d - cur + math.pi) % (2 * math.pi) - math.pi) <= self.cfg.fit_course]
        if len(rec) < 3:
            return None
        return _quantile(np.array([r[1][2:] for r in rec]), self.cfg.size_quantile)

    def _gather(self, dets: Detections, keep: npt.NDArray[np.intp], free: list[int], t: float) -> list[int]:
        """Fragments (see `gather_slack`): a confirmed track seen this frame takes the blobs no track
        took whose union with its own blob stays within its size; returns the blobs left."""
        left = {int(keep[d]): d for d in free}
        for lv in self._live:
            if not left or lv.track.state is not TrackState.CONFIRMED or lv.hit_di < 0 or not lv.obs:
                continue
            size = self._size(lv, t)
            if size is None:
                continue
            lim = np.maximum(size * (1.0 + self.cfg.gather_slack), size + 2.0)
            box = lv.obs[-1][1]
            took = []
            for j in sorted(left, key=lambda j: float(np.hypot(*(dets.centers[j] - box[:2])))):
                u = _union(box, _cwh(dets.xyxy[j].astype(np.float64)))
                if u[2] <= lim[0] and u[3] <= lim[1]:
                    box = u
                    took.append(j)
            if took:
                for j in took:
                    del left[j]
                    _tag(dets, j, lv.track.id)
                lv.obs.pop()
                lv.obs_dir.pop()
                lv.track.points.pop()
                self._append_point(lv, dets, lv.hit_di, _xyxy(box))
        return list(left.values())

    def _remember_knots(self, dets: Detections, keep: npt.NDArray[np.intp], t: float) -> None:
        """Keep this frame's knot boxes for `knot_memory_s`; mark the detections inside a remembered one."""
        self._knots = [(tk, b) for tk, b in self._knots if t - tk <= self.cfg.knot_memory_s]
        new = self._knot
        if len(keep) and self._knots:
            c = dets.centers[keep].astype(np.float64)
            kb = np.array([b for _, b in self._knots])
            inside = ((np.abs(c[:, None, 0] - kb[None, :, 0]) <= kb[None, :, 2] / 2)
                      & (np.abs(c[:, None, 1] - kb[None, :, 1]) <= kb[None, :, 3] / 2)).any(axis=1)
            self._knot = self._knot | inside
        self._knots += [(t, _cwh(dets.xyxy[keep[i]].astype(np.float64))) for i in np.flatnonzero(new)]

    def _fit(self, lv: _Live, box: F64, t: float) -> F64:
        """`box` grown to the track's robust size, at least a small vehicle's, from its leading edge
        (see `fit_boxes`, `min_vehicle_m`)."""
        want = self._size(lv, t)
        v = lv.pv_hit_vec
        speed = float(np.hypot(v[0], v[1]))
        floor = self._vehicle_px(box, v, speed)
        if floor is not None:
            want = floor if want is None else np.maximum(want, floor)
        if want is None:
            return box
        out = box.copy()
        for a in (0, 1):
            lo, hi = out[a], out[a + 2]
            d = float(want[a]) - float(hi - lo)
            if d <= 0:
                continue
            frac = float(v[a]) / speed if speed > 3.0 else 0.0
            if frac > 0.3:  # moving towards +axis: the leading edge is `hi`
                out[a] = lo - d
            elif frac < -0.3:
                out[a + 2] = hi + d
            elif self.cfg.fit_across:
                out[a], out[a + 2] = lo - d / 2, hi + d / 2
        return out

    def _vehicle_px(self, box: F64, v: F64, speed: float) -> F64 | None:
        """Pixel extent (w, h) at `box` of the smallest vehicle (`min_vehicle_m`) laid along the
        pixel course `v` (ground-stabilised px/s): its ground rectangle through the inverse of the
        local pixel -> ground map (from the frame's sensor model). None: not in ground mode, no
        sensor model, too slow for a course, or the ray misses."""
        length, width = self.cfg.min_vehicle_m
        if length <= 0 or self._sensor is None or self.local is None or speed <= 3.0:
            return None
        maps = self._ground_map((float(box[0]) + float(box[2])) / 2, (float(box[1]) + float(box[3])) / 2)
        if maps is None:
            return None
        J, Ji = maps
        along = J @ (v / speed)  # the course on the ground
        n = float(np.hypot(along[0], along[1]))
        if n <= 0:
            return None
        h = along / n
        a, b = Ji @ (h * length), Ji @ (np.array([-h[1], h[0]]) * width)
        return np.asarray(np.abs(a) + np.abs(b), np.float64)

    def _ground_map(self, u: float, v: float) -> tuple[F64, F64] | None:
        """d(east, north) / d(u, v) (metres per pixel) near (u, v), and its inverse: one sensor-model
        call (~0.2 ms) for a 3 x 3 grid of cells every 6th frame, the cell holding (u, v) answers."""
        if self._jac_of is not self._sensor and (self._jac is None or self._frames - self._jac_at >= 6):
            self._jac_of, self._jac, self._jac_at = self._sensor, None, self._frames  # every 0.2 s: it changes slowly
            w, h = float(getattr(self._sensor, "width", 0)), float(getattr(self._sensor, "height", 0))
            if w > 0 and h > 0:
                cu, cv = np.meshgrid((np.arange(3) + 0.5) * w / 3, (np.arange(3) + 0.5) * h / 3)
                c = np.stack([cu.ravel(), cv.ravel()], axis=1)
                pts = np.concatenate([c, c + [1.0, 0.0], c + [0.0, 1.0]])
                try:
                    g = np.asarray(self._sensor.pixels_to_ground(pts), np.float64)
                except Exception:  # a geometry the model rejects: no floor
                    g = np.full((len(pts), 3), np.nan)
                assert self.local is not None
                e = np.asarray(self.local.ground_to_enu(g[:, 0], g[:, 1]), np.float64).reshape(3, 9, 2)
                jac = np.stack([e[1] - e[0], e[2] - e[0]], axis=2)  # [9, 2 (east, north), 2 (u, v)]
                ok = np.isfinite(jac).all(axis=(1, 2)) & (np.abs(np.linalg.det(np.nan_to_num(jac))) > 1e-9)
                jinv = np.linalg.inv(np.where(ok[:, None, None], np.nan_to_num(jac), np.eye(2)))
                self._jac = (w, h, jac, jinv, ok)
        if self._jac is None:
            return None
        w, h, jac, jinv, ok = self._jac
        k = min(max(int(v * 3 / h), 0), 2) * 3 + min(max(int(u * 3 / w), 0), 2)
        return (jac[k], jinv[k]) if ok[k] else None

    def _hold(self, lv: _Live, dets: Detections, t: float) -> None:
        """A confirmed track the detector missed this frame: look for its appearance (see `hold_s`)
        around where it should be; found: a held point there, and the filter slows down as the
        picture shows (a braking car); not found: plain coasting, no point."""
        tr = lv.track
        img = self._image
        if (self.cfg.hold_s <= 0 or img is None or lv.tmpl is None or tr.state is not TrackState.CONFIRMED
                or lv.out is None or t - lv.last_hit_t > self.cfg.hold_s or not tr.points):
            return
        dt = max(t - lv.out_t, 1e-3)
        if lv.pvel is None or lv.out_t <= lv.last_hit_t:  # the first frame of this hold
            if lv.pv_hit > self.cfg.hold_max_lengths_s * float(max(lv.out[2], lv.out[3])):
                return  # too fast to be stopping: a detector miss, not a stop
            if lv.last_hit_t - lv.born_t < self.cfg.hold_min_seen_s:
                return  # not seen driving long enough to be a car that stops
            lv.pvel = lv.pv_hit_vec.copy()
        pred = lv.out[:2] + lv.pvel * dt * math.exp(-dt / self.cfg.hold_decay_s)
        th, tw = lv.tmpl.shape
        m = int(math.ceil(max(4.0, 0.3 * max(th, tw)) + float(np.hypot(*lv.pvel)) * dt))
        x0, y0 = int(round(pred[0] - tw / 2)) - m, int(round(pred[1] - th / 2)) - m
        x1, y1 = x0 + tw + 2 * m, y0 + th + 2 * m
        if x0 < 0 or y0 < 0 or x1 > img.shape[1] or y1 > img.shape[0]:
            return  # at the edge of the picture: leaving the view, or clipped
        patch = _grey(img[y0:y1, x0:x1])
        res = cv2.matchTemplate(patch, lv.tmpl, cv2.TM_CCOEFF_NORMED)
        _lo, best, _lo_at, (bx, by) = cv2.minMaxLoc(res)
        if best < self.cfg.hold_ncc:
            return
        c = np.array([x0 + bx + tw / 2, y0 + by + th / 2], np.float64)
        if lv.hit_c is not None:  # physically reachable from the last detection (see `hold_brake`)
            since = t - lv.last_hit_t
            length = float(max(lv.out[2], lv.out[3]))
            reach = 0.5 * self.cfg.hold_brake * (length / 6.0) * since**2 + max(3.0, 0.15 * length)
            if float(np.hypot(*(c - lv.hit_c - lv.pv_hit_vec * since))) > reach:
                return  # e.g. the ground left behind by a car that drove on
        pvel = 0.5 * lv.pvel + 0.5 * (c - lv.out[:2]) / dt
        if self._taken(lv, c, pvel):
            return
        lv.pvel = pvel
        lv.out = np.array([c[0], c[1], lv.out[2], lv.out[3]], np.float64)
        lv.out_t = lv.app_t = t
        if lv.v_hit is not None and lv.pv_hit > 1e-6:  # the filter slows down as the picture does
            lv.x[2:] = lv.v_hit * min(1.0, float(np.hypot(*lv.pvel)) / lv.pv_hit)
        cx, cy, w, h = (float(v) for v in lv.out)
        lat = lon = hae = None
        spd = hdg = None
        if self.mode == "ground" and self.local is not None:
            llh = self.local.to_geodetic(lv.x[0], lv.x[1], 0.0)
            lat, lon, hae = float(llh[0]), float(llh[1]), tr.points[-1].hae
            spd, hdg = float(math.hypot(lv.x[2], lv.x[3])), tr.heading_deg
        tr.points.append(TrackPoint(dets.frame_index, dets.pts, (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2),
                                    float(best) * 0.5, lat, lon, hae, spd, hdg, held=True))

    def _taken(self, lv: _Live, c: F64, pvel: F64) -> bool:
        """Is the place held track `lv` found its look at (centre `c`, held velocity `pvel` px/s) another
        confirmed track's detection this frame? Marks `lv` a second track when it moves with it
        (see `hold_taken`)."""
        if self.cfg.hold_taken <= 0 or lv.out is None:
            return False
        hw, hh = float(lv.out[2]) / 2, float(lv.out[3]) / 2
        mine = np.array([c[0] - hw, c[1] - hh, c[0] + hw, c[1] + hh], np.float64)
        for other in self._live:
            if (other is lv or other.hit_di < 0 or other.track.state is not TrackState.CONFIRMED
                    or _overlap(mine, np.asarray(other.track.points[-1].xyxy, np.float64)) <= self.cfg.hold_taken):
                continue
            v = other.pv_hit_vec
            if float(np.hypot(*(pvel - v))) <= self.cfg.hold_taken_rel * float(np.hypot(*v)) + 5.0:
                lv.second = True
            return True
        return False

    @staticmethod
    def _add(tr: Track, points: list[TrackPoint]) -> None:
        if points:
            tr.points = sorted(tr.points + points, key=lambda p: p.frame_index)

    def _backfill(self, lv: _Live, after: int = -1) -> tuple[bool, list[TrackPoint]]:
        """A track just confirmed, or seen again after coasting: held points where its look is found
        going back in time, in the frames after `after` it has no point for (see `back_s`). Returns
        (whether it could look: not at the picture's edge now, a look known; the points)."""
        tr = lv.track
        if self._ring is None or len(self._ring.frames) < 2 or lv.tmpl is None or lv.out is None or not tr.points:
            return False, []  # nothing to follow back (yet; no pictures since a frame without one)
        if lv.tmpl.size < self.cfg.back_min_px:
            return True, []  # too few pixels: mostly the ground around a small car, which matches anywhere near
        have = {p.frame_index for p in tr.points}
        anchors = {p.frame_index: _cwh(np.asarray(p.xyxy, np.float64)) for p in tr.points if not p.held}
        found, why = walk_back(self._ring, lv.out, lv.pv_hit_vec, lv.tmpl, ncc=self.cfg.back_ncc, margin=4.0,
                               anchors=anchors)
        raw = self._raw_walk(lv, anchors)  # the detection's own patch (less ground) may hold on longer
        if raw is not None and len(raw[0]) > len(found):
            found, why = raw
        if not found and why == "edge":
            return False, []  # at the edge of the picture now
        if after < 0 and found and not self._left_its_place(found[-1], lv):
            return True, []  # what it found going back never left its place: texture, not a vehicle
        if after >= 0 and not (why == "edge" and found and found[-1][0].index > after):
            # a gap: filled only if the look leads back to the track's last point, or to the edge of
            # the picture (the vehicle was out of view)
            prev = next((p for p in reversed(tr.points) if p.frame_index == after), None)
            end = next((b for f, b, _n in found if f.index == after + 1), None)
            if prev is None or end is None:
                return True, []
            pc = _cwh(np.asarray(prev.xyxy, np.float64))
            if float(np.hypot(*(end[:2] - pc[:2]))) > 0.5 * float(max(pc[2], pc[3], 8.0)):
                return True, []
        lo = found[-1][0].index if found else 0
        others: dict[int, list[F64]] = {}  # other tracks' boxes in these frames (tentative too): one vehicle, one track
        for o in [x.track for x in self._live if x is not lv] + self._done:
            for p in reversed(o.points):
                if p.frame_index < lo:
                    break
                others.setdefault(p.frame_index, []).append(np.asarray(p.xyxy, np.float64))
        new = []
        for f, box, ncc in found:
            if f.index <= after:
                break
            xyxy = _xyxy(box)
            if any(_overlap(xyxy, o) > 0.3 for o in others.get(f.index, ())):
                break  # it ran onto a vehicle another track follows
            if f.index in have:
                continue
            if after < 0 and self.cfg.back_blind_s > 0 and self._ring.seen_before(
                    f.index, xyxy, int(round(self.cfg.back_blind_s / self.cfg.default_dt)), f.grey.shape):
                break  # the detector saw this ground and found nothing here
            cx, cy, w, h = (float(v) for v in box)
            lat = lon = hae = None
            spd = hdg = None
            if self.mode == "ground" and f.sensor is not None:
                try:
                    g = np.asarray(f.sensor.pixels_to_ground(np.array([[cx, cy]], np.float64)), np.float64).reshape(-1)
                except Exception:  # noqa: BLE001 (a model that cannot answer there: no ground for the point)
                    g = np.full(3, np.nan)
                if np.isfinite(g[:2]).all():
                    lat, lon, hae = float(g[0]), float(g[1]), float(g[2]) if math.isfinite(float(g[2])) else 0.0
                    spd, hdg = tr.speed_mps, tr.heading_deg
            new.append(TrackPoint(f.index, f.pts, (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), ncc * 0.5,
                                  lat, lon, hae, spd, hdg, held=True))
        return True, new

    def _raw_walk(self, lv: _Live, anchors: dict[int, F64]) -> tuple[list[Any], str] | None:
        """`walk_back` with the patch of the last detection's own box (the fitted box grown around
        it holds ground, which the car leaves), its finds moved and sized as the fitted box."""
        if self._ring is None or not self._ring.frames or lv.raw is None or lv.out is None:
            return None
        img = self._ring.frames[-1].grey
        x0, y0, x1, y1 = (int(round(float(v))) for v in _xyxy(lv.raw))
        if x0 < 0 or y0 < 0 or x1 > img.shape[1] or y1 > img.shape[0] or (x1 - x0) * (y1 - y0) < self.cfg.back_min_px:
            return None
        tmpl = img[y0:y1, x0:x1]
        if float(tmpl.std()) < self.cfg.hold_min_std:
            return None
        d = lv.out[:2] - lv.raw[:2]
        found, why = walk_back(self._ring, lv.raw, lv.pv_hit_vec, tmpl, ncc=self.cfg.back_ncc, margin=4.0,
                               anchors={k: np.concatenate([c[:2] - d, c[2:]]) for k, c in anchors.items()})
        out = []
        for f, b, n in found:
            z = float(b[2]) / max(1e-6, float(lv.raw[2]))  # the camera's zoom since
            out.append((f, np.array([b[0] + d[0] * z, b[1] + d[1] * z, lv.out[2] * z, lv.out[3] * z]), n))
        return out, why

    def _whole(self, lv: _Live) -> bool:
        """Is the track's box a whole vehicle (its longest side on the ground at least 3/4 of the
        smallest vehicle's length, `min_vehicle_m`)? A corner or strip followed back is a false point
        in every frame. Pixel mode (no sensor model): not known, yes."""
        box = lv.out
        if box is None:
            return False
        length = self.cfg.min_vehicle_m[0]
        if length <= 0 or self._sensor is None or self.local is None:
            return True
        maps = self._ground_map(float(box[0]), float(box[1]))
        if maps is None:
            return True
        J = maps[0]
        w, h = float(box[2]), float(box[3])
        return max(float(np.hypot(*(J @ [w, 0.0]))), float(np.hypot(*(J @ [0.0, h])))) >= 0.75 * length

    def _left_its_place(self, oldest: tuple[Any, F64, float], lv: _Live) -> bool:
        """Did the look found `oldest` frames back move off that place on the ground by now (half its
        length or more, and the place looks different now)? A vehicle did; static texture did not."""
        assert self._ring is not None and lv.out is not None and lv.tmpl is not None
        frames = list(self._ring.frames)
        f, box, _ncc = oldest
        M = np.eye(3)
        for g in frames[frames.index(f):-1]:
            if g.to_next is None:
                return False
            M = g.to_next @ M
        c = _apply(M, box[:2])
        if float(np.hypot(*(c - lv.out[:2]))) < 0.5 * float(max(lv.out[2], lv.out[3])):
            return False
        img = self._ring.frames[-1].grey
        th, tw = lv.tmpl.shape
        x0, y0 = int(round(c[0] - tw / 2)) - 2, int(round(c[1] - th / 2)) - 2
        if x0 < 0 or y0 < 0 or x0 + tw + 4 > img.shape[1] or y0 + th + 4 > img.shape[0]:
            return True
        res = cv2.matchTemplate(img[y0:y0 + th + 4, x0:x0 + tw + 4], lv.tmpl, cv2.TM_CCOEFF_NORMED)
        return float(res.max()) < self.cfg.back_ncc

    def _remember(self, lv: _Live, box: F64) -> None:
        """Keep the track's look (grey patch of its fitted box) for `_hold`, with its velocities."""
        lv.v_hit = lv.x[2:].copy()
        lv.pv_hit = float(np.hypot(*lv.pv_hit_vec))
        lv.hit_c = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2], np.float64)
        img = self._image
        if img is None or self.cfg.hold_s <= 0:
            return
        x0, y0, x1, y1 = (int(round(float(v))) for v in box)
        small = min(x1 - x0, y1 - y0) < self.cfg.hold_min_px
        if small or x0 < 0 or y0 < 0 or x1 > img.shape[1] or y1 > img.shape[0]:
            lv.tmpl = None
            return
        g = _grey(img[y0:y1, x0:x1])
        lv.tmpl = g if float(g.std()) >= self.cfg.hold_min_std else None  # flat: NCC means nothing

    def _trim(self, lv: _Live) -> None:
        while len(lv.window) > self.cfg.m_window:
            lv.window.popleft()

    def _is_mover(self, lv: _Live, dets: Detections, di: int) -> bool:
        """Travelled (see `min_travel_boxes`) and moved consistently: the hits fit a straight line
        at constant speed to within half a box (clutter hopping between blobs does not). Tried on
        the box centres, then (`mover_corners`) on each corner of the boxes."""
        if not self.cfg.require_motion or len(lv.hist) < 2:
            return True
        box = dets.xyxy[di]
        size = float(max(box[2] - box[0], box[3] - box[1]))
        ts = np.array([h[0] for h in lv.hist])
        cwh = np.array([h[1] for h in lv.hist])
        if self._moves(ts, cwh[:, :2], size):
            return True
        area = cwh[:, 2] * cwh[:, 3]
        if self.cfg.mover_corners <= 0 or area[-1] < self.cfg.mover_corners * max(1.0, float(area[0])):
            return False
        half = cwh[:, 2:] / 2
        return any(self._moves(ts, cwh[:, :2] + half * np.array(sgn), size)
                   for sgn in ((-1.0, -1.0), (1.0, -1.0), (-1.0, 1.0), (1.0, 1.0)))

    def _moves(self, ts: F64, ps: F64, size: float) -> bool:
        """Do points `ps` (one per time in `ts`, ground-stabilised pixels) travel along a straight
        line at a speed that differs from zero (see `min_speed_sigma`)?"""
        need = max(self.cfg.min_travel_px, self.cfg.min_travel_boxes * size)
        if float(np.hypot(*(ps[-1] - ps[0]))) < need:
            return False
        A = np.stack([np.ones_like(ts), ts - ts[0]], axis=1)
        coef, *_ = np.linalg.lstsq(A, ps, rcond=None)
        res2 = float(np.sum((A @ coef - ps) ** 2))
        rms = math.sqrt(res2 / len(ts))
        if rms > max(2.0, self.cfg.max_path_rms_boxes * size):
            return False
        if self.cfg.min_speed_sigma > 0:
            n = len(ts)
            if n < 3:
                return False
            sigma = max(self.cfg.noise_floor_px, math.sqrt(res2 / (2 * (n - 2))))  # per axis
            spread = float(np.sum((ts - ts.mean()) ** 2))
            se = sigma / math.sqrt(spread) if spread > 0 else float("inf")
            if float(np.hypot(coef[1, 0], coef[1, 1])) < self.cfg.min_speed_sigma * se:
                return False
        return True

    def _births_here(self, lv: _Live) -> bool:
        """Border births (see `edge_px`): may tentative `lv` confirm now? Its hits' own boxes, each in
        the pixels of its frame (where the picture showed it)."""
        if self._wh is None or not lv.taken or self.cfg.edge_px <= 0 or lv.last_hit_t - lv.born_t >= self.cfg.edge_wait_s:
            return True
        boxes = np.array([d.xyxy[i] for d, i in lv.taken], np.float64)
        return enters(boxes, self._wh, self.cfg.edge_px, self.cfg.edge_inward_px)

    def _follow_camera(self, H: F64) -> None:
        """The camera moved by H (previous frame pixels -> this frame's): carry birth anchors, and
        in pixel mode the filter states (position through H, velocity and covariance through its
        Jacobian), so pixel tracks follow the ground, not the screen."""
        # every anchor, recent box, reported box and velocity probe of every track in one batch
        rows: list[Any] = [b for _, b in self._knots]
        for lv in self._live:
            rows += [p for _, p in lv.hist]
            rows += [o for _, o in lv.obs]
            if lv.out is not None:
                rows.append(lv.out)
            if lv.hit_c is not None:
                rows.append((lv.hit_c[0], lv.hit_c[1], 0.0, 0.0))
                rows.append((lv.hit_c[0] + 0.1 * lv.pv_hit_vec[0], lv.hit_c[1] + 0.1 * lv.pv_hit_vec[1], 0.0, 0.0))
        moved = _carry(H, np.array(rows, np.float64).reshape(-1, 4)) if rows else np.zeros((0, 4))
        k = len(self._knots)
        self._knots = [(t, moved[i]) for i, (t, _) in enumerate(self._knots)]
        for lv in self._live:
            n = len(lv.hist)
            lv.hist = [(t, moved[k + i]) for i, (t, _) in enumerate(lv.hist)]
            k += n
            n = len(lv.obs)
            lv.obs = deque(zip((t for t, _ in lv.obs), moved[k:k + n], strict=True), maxlen=lv.obs.maxlen)
            k += n
            if lv.out is not None:
                lv.out = moved[k]
                k += 1
            if lv.hit_c is not None:
                lv.hit_c = moved[k, :2]
                lv.pv_hit_vec = (moved[k + 1, :2] - moved[k, :2]) / 0.1
                k += 2
        for lv in self._live:
            if self.mode == "pixel":
                J = _jacobian(H, lv.x[:2])
                lv.x[:2] = _apply(H, lv.x[:2])
                lv.x[2:] = J @ lv.x[2:]
                T = np.zeros((4, 4))
                T[:2, :2] = T[2:, 2:] = J
                lv.P = T @ lv.P @ T.T

    def _near_live(self, z: F64) -> bool:
        """A detection inside a live confirmed track's gate is a fragment of it, not a new mover."""
        r = self._params()[1]
        for lv in self._live:
            if lv.track.state is not TrackState.CONFIRMED:
                continue
            S = lv.P[:2, :2] + np.eye(2) * r * r
            d = z - lv.x[:2]
            if float(d @ np.linalg.solve(S, d)) <= self.cfg.gate_chi2:
                return True
        return False

    def _birth(self, z: F64, dets: Detections, di: int, t: float) -> None:
        _a, r, v0, _vmax = self._params()
        x = np.array([z[0], z[1], 0.0, 0.0])
        P = np.diag([r * r, r * r, v0 * v0, v0 * v0])
        lv = _Live(Track(id=0), x, P, t, t, deque([True]), born_t=t)
        lv.hist.append((t, _cwh(dets.xyxy[di].astype(np.float64))))
        self._append_point(lv, dets, di)
        self._live.append(lv)
        self.births += 1

    def _age(self, t: float) -> None:
        keep: list[_Live] = []
        for lv in self._live:
            tr = lv.track
            if tr.state is TrackState.TENTATIVE:
                if len(lv.window) >= self.cfg.m_window and sum(lv.window) < self.cfg.n_hits:
                    self.deleted_tentative += 1
                    continue
                # A tentative track that misses n consecutive frames cannot be a real mover.
                if len(lv.window) >= 3 and not any(list(lv.window)[-3:]):
                    self.deleted_tentative += 1
                    continue
            elif (lv.second or t - max(lv.last_hit_t, lv.app_t) > self.cfg.max_coast_s
                  or t - lv.last_hit_t > max(self.cfg.max_coast_s, self.cfg.hold_s)):
                tr.state = TrackState.LOST
                self._done.append(tr)
                continue
            keep.append(lv)
        self._live = keep


def _knotted(xyxy: npt.NDArray[Any], n: int) -> npt.NDArray[np.bool_]:
    """Which boxes overlap at least `n` other boxes (see `knot_overlaps`); none when n <= 0."""
    b = np.asarray(xyxy, np.float64).reshape(-1, 4)
    if n <= 0 or len(b) <= n:
        return np.zeros(len(b), bool)
    ix = np.minimum(b[:, None, 2], b[None, :, 2]) > np.maximum(b[:, None, 0], b[None, :, 0])
    iy = np.minimum(b[:, None, 3], b[None, :, 3]) > np.maximum(b[:, None, 1], b[None, :, 1])
    return np.asarray((ix & iy).sum(axis=1) - 1 >= n, bool)


def _tag(dets: Detections, i: int, track_id: int) -> None:
    if dets.track_id is None or len(dets.track_id) != len(dets):
        dets.track_id = np.full(len(dets), -1, np.int64)
    dets.track_id[i] = track_id


def _touch(a: F64, b: F64, pad: float = 0.0) -> float:
    """Intersection of two (centre u, v, w, h) boxes over the smaller one's area; `b` grown by `pad`
    of its size on every side first."""
    bw, bh = b[2] * (0.5 + pad), b[3] * (0.5 + pad)
    iw = min(a[0] + a[2] / 2, b[0] + bw) - max(a[0] - a[2] / 2, b[0] - bw)
    ih = min(a[1] + a[3] / 2, b[1] + bh) - max(a[1] - a[3] / 2, b[1] - bh)
    if iw <= 0 or ih <= 0:
        return 0.0
    return float(iw * ih) / max(float(min(a[2] * a[3], b[2] * b[3])), 1e-9)


def _overlap(a: F64, b: F64) -> float:
    """Intersection over union of two xyxy boxes."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = float(iw * ih)
    return inter / (float((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])) - inter)


def _quantile(a: F64, q: float) -> F64:
    """Per-column q-th percentile (nearest rank; np.percentile costs ~20x more on a few rows)."""
    return np.asarray(np.sort(a, axis=0)[int(round((len(a) - 1) * q / 100.0))], np.float64)


def _grey(img: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    return img if img.ndim == 2 else np.asarray(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), np.uint8)


def _union(a: F64, b: F64) -> F64:
    """Union of two (centre, size) boxes, as (centre, size)."""
    lo = np.minimum(a[:2] - a[2:] / 2, b[:2] - b[2:] / 2)
    hi = np.maximum(a[:2] + a[2:] / 2, b[:2] + b[2:] / 2)
    return np.concatenate([(lo + hi) / 2, hi - lo])


def _xyxy(c: F64) -> F64:
    return np.array([c[0] - c[2] / 2, c[1] - c[3] / 2, c[0] + c[2] / 2, c[1] + c[3] / 2], np.float64)


def _cwh(box: F64) -> F64:
    """xyxy -> (centre u, centre v, width, height)."""
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2, box[2] - box[0], box[3] - box[1]], np.float64)


def _carry(H: F64, o: F64) -> F64:
    """[N, 4] (centre, size) boxes carried by the camera motion H: centres mapped, sizes scaled by
    the local zoom (sqrt of the map's Jacobian determinant, det(H) / w³ for a homography)."""
    p = o[:, :2] @ H[:2, :2].T + H[:2, 2]
    w = o[:, :2] @ H[2, :2] + H[2, 2]
    scale = np.sqrt(np.abs(np.linalg.det(H) / w**3))
    return np.concatenate([p / w[:, None], o[:, 2:] * scale[:, None]], axis=1)


def _apply(H: F64, p: F64) -> F64:
    q = H @ np.array([p[0], p[1], 1.0])
    return np.asarray(q[:2] / q[2], np.float64)


def _jacobian(H: F64, p: F64) -> F64:
    """d(H(p))/dp, 2x2, of the projective map at p."""
    x, y = float(p[0]), float(p[1])
    w = H[2, 0] * x + H[2, 1] * y + H[2, 2]
    u = H[0, 0] * x + H[0, 1] * y + H[0, 2]
    v = H[1, 0] * x + H[1, 1] * y + H[1, 2]
    return np.array([[H[0, 0] * w - u * H[2, 0], H[0, 1] * w - u * H[2, 1]],
                     [H[1, 0] * w - v * H[2, 0], H[1, 1] * w - v * H[2, 1]]]) / (w * w)
