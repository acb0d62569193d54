"""Moving-target indication (MTI): find what moves in video from a moving camera, with no weights.

Steps per frame (all OpenCV on a grey image, downscaled to `work_width`):
1. Ego-motion: corners tracked frame to frame with pyramidal Lucas-Kanade on a smaller image
   (`feature_width`); a RANSAC homography per frame pair. Tracked inlier corners are reused as the
   next frame's features, topped up with fresh ones in the squares that hold none whenever they no
   longer span the picture (`top_up`: the fit covers the side new ground comes in from in a pan), and
   re-detected when too few survive. Homographies are chained so any buffered frame can be warped onto any other.
2. Change: frame `c` is compared with frame `c - k` and frame `c + k` warped onto it (k = `lag_s`
   seconds). A pixel moves only if it differs from *both* (kills the "ghost" a target leaves where
   it was), and each difference is taken against the 3x3 min/max of the warped frame, so a 1-pixel
   registration error on texture (edges, fields, roofs) does not look like motion.
3. Masks: pixels warped in from outside either reference frame (borders) never count; optionally
   (`screen_static_level`) nor do pixels that stayed the same *on screen* while the camera moved
   (burned-in HUD text, crosshairs); the threshold rises with the frame's own difference noise.
4. Blobs, with hysteresis: pixels above the threshold seed blobs, which grow into connected
   change above `grow_frac` of it (a ground-coloured car gives a whole box, not its brightest
   corner); weak blobs with no seed are dropped. Morphological closing, outer contours, a tight
   box per blob; a faint mover merged into a bright one's blob (a crossing) is split off when
   enough weak change lies outside the bright box (`split_frac`). A size gate in metres from the
   sensor model's GSD when metadata exists (pixels otherwise); boxes scaled back to full resolution.
With `refine`, each reference is re-registered directly onto the centre frame (LK + RANSAC) every
`refine_every` frames; in between, the last measured correction rides along the chain.
With refs="past" (the default) two more steps:
5. Shorter pairs where the pair did not see the ground (`fill_uncovered`): in boxes around the
   area the references c-k, c-2k never saw (the camera panned onto it), frame c is compared with
   c-k/2, c-k, then c-k/4, c-k/2, then c-k/8, c-k/4 (`fill_levels`): a car driving into a newly seen
   area is found once that ground has been in view k/4 frames.
6. Far reference (`far_k`): each blob is compared, in a window around it, with a frame twice as
   old as its farther reference (c-4k: two measured registrations composed; else an older frame
   along the chain). A blob that does not differ from it is a ghost (ground now, car in both
   references) and is dropped; the box grows to the far-reference change connected to it (a slow
   car overlaps itself at c-k, so only its leading strip differs from both references).

Looking ahead `k` frames means frame `i` is finished when frame `i + k` arrives (`delay = k`); the
first `2k` frames use two later frames instead. Cost: O(pixels) per frame, a fixed number of cv2
passes; memory: 2k+1 grey frames at working size.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from kestrel.ped.detect import FrameLike
from kestrel.ped.records import Detections

U8 = npt.NDArray[Any]  # uint8 images (cv2 stubs type them loosely)
M33 = npt.NDArray[np.float64]


@dataclass(slots=True)
class MtiConfig:
    lag_s: float = 1.0  # time between compared frames: a target must move its own length in it
    work_width: int = 1280  # change detection runs at most this wide (full size / an integer)
    # ... and, when the first frame's GSD is known, at the coarsest integer scale where a `target_m`
    # long target still spans `target_px` working pixels: detail smaller than a vehicle, which
    # shimmers under zoom and resampling, is averaged away, and it is cheaper (0: off).
    target_m: float = 4.0
    target_px: float = 9.0
    feature_width: int = 360  # ego-motion runs at most this wide
    max_features: int = 200
    # Top up the tracked corners with fresh ones in every `top_up_cell`-pixel square (feature image)
    # that holds none, whenever they span less than `top_up_span` of the picture's width or height
    # (before: only once fewer than half were left). Tracked corners drift off with the view while
    # the camera pans, and what is left bunches up on the side the view leaves, so the homography
    # was extrapolated over the side where new ground comes in; those errors chain over the lag into
    # bursts of boxes on still ground along that edge (false tracks on minute-long aerial clips 311
    # and 312: 11 -> 0, 19 -> 5). Against the true homography (the synthetic clip's exact KLV),
    # worst of 25 points over 312's 60 s: p90 1.11 -> 0.37 px. Topping up every frame did better
    # there (p90 0.22 px anywhere farther than 7 px from a tracked corner) but swaps long-tracked,
    # steady corners for fresh ones on texture that needs none (orbit 101 1.0 -> 0.987; in empty
    # squares only, crossing 202's identity switches 1 -> 3): the span leaves a well-spread set alone.
    top_up: bool = True
    top_up_cell: int = 40
    top_up_span: float = 0.9
    min_inliers: int = 12
    diff_threshold: float = 16.0  # grey levels, floor of the adaptive threshold
    noise_k: float = 5.0  # threshold >= mean + noise_k * std of the frame's difference
    # Longest blob side, metres (when the GSD is known). 2 m (was 1.2): on the aerial tuning clips
    # nearly every box shorter than 2 m was a corner or strip of a slow or turning car (IoU < 0.3
    # with it: a miss and a false box) that the tracker then followed or confirmed as a track of
    # its own; vehicles are 4-9 m. A walking person seen from above is smaller: set 1.2 for them.
    min_size_m: float = 2.0
    max_size_m: float = 30.0
    min_area_px: int = 8  # full-resolution pixels (always applied)
    max_size_px: int = 160  # longest side, full-resolution pixels (only without a GSD)
    max_aspect: float = 5.0  # longest / shortest box side (vehicles, people, boats: < 5)
    # Burned-in HUD mask (grey levels; 0 = off, try 3): pixels unchanged *on screen* while the camera
    # moved are treated as overlay. Off by default: it also hides a target the operator keeps
    # fixed on screen (a common way to watch one).
    screen_static_level: int = 0
    border_px: int = 3  # working pixels ignored along every warped border
    chroma: bool = True  # also difference colour (Cr, Cb): a red car on brown soil has little luma contrast
    edge_px: float = 0.5  # full-res pixels: edges sit inside the partly covered extreme pixels
    box_refine: float = 0.3  # box = pixels above this fraction of the blob's peak difference (0: off)
    chroma_gain: float = 1.0  # chroma differences are smaller than luma ones for the same contrast
    # Hysteresis: blobs are seeded at the threshold and grown into connected change above this
    # fraction of it, so a faint (ground-coloured) mover gives a whole box, not a partial one.
    # 1.0 = off (one threshold).
    grow_frac: float = 0.6
    # Split a faint mover off a bright one's blob when its weak change outside the bright box
    # covers at least this fraction of the bright box's area (0: off).
    split_frac: float = 0.25
    default_fps: float = 30.0  # used when frames carry no PTS
    # "past": compare frame c with c-k and c-2k (no look-ahead: each frame is finished when it
    # arrives, once 2k frames of history exist; the first 2k frames are finished the symmetric
    # way, so output starts ~3k frames into a stream); "symmetric": with c-k and c+k (every
    # result comes k frames late).
    refs: str = "past"
    # Re-register the centre frame directly onto each reference (LK from the centre's tracked
    # corners, the chained homography as the first guess): chaining k frame-to-frame estimates
    # drifts by pixels under zoom and pans, and high-contrast clutter then looks like motion.
    refine: bool = True
    # ... but only every `refine_every` centre frames (per reference offset). In between, the last
    # measured correction (measured registration o inverse chained one, a near-identity homography)
    # is carried onto the next frame pair along the frame-to-frame chain: the chain then drifts only
    # over the few frames since the last measurement, not over k. LK on working-size images is the
    # most expensive step of a frame; 1 = every frame.
    refine_every: int = 4
    # Pyramid levels of that LK (the chained first guess is within a pixel or two): 0 builds no
    # pyramid of the two working-size frames, ~20 % of a frame's CPU less than 1 at equal quality.
    refine_levels: int = 0
    # Merge blob fragments (a windscreen or a ground-coloured bonnet splits a car in two) closer than
    # `merge_m` when the union is no longer than `merge_max_m` (metres from the GSD; pixels:
    # `merge_px` without one). 0: off, the default: it gained ~0.01 recall on the aerial scenario
    # but fused crossing cars (2 identity switches per crossing clip), so it is opt-in.
    merge_m: float = 0.0
    merge_max_m: float = 11.0
    merge_px: float = 3.0
    # Texture margin: a pixel must leave the 3x3 min..max of the warped reference by this fraction
    # of that range, too. Fine, contrasty detail (roof edges, parked cars) shimmers under
    # resampling and zoom by a fraction of its own contrast; a vehicle on even ground does not
    # care. 0: off.
    texture_margin: float = 0.5
    # Start-up and after a reset ("past" only): with less than 2k frames of history, frame c is
    # compared with c - k' and c - 2k', k' = c // 2 >= `min_lag_s` (fast movers show within a few
    # frames; the box grows as the history does). The first 2 * min_lag frames come back empty
    # at once. 0: the old warm-up (look ahead up to 2k frames for the first 2k frames).
    min_lag_s: float = 0.0
    # Shorter warm-up ("past" only, `min_lag_s` 0): the first frames look ahead by this lag instead
    # of k (c+w, c+2w; then c-w, c+w), then past pairs c-k', c-2k' with k' = max(w, c // 3) growing to
    # k (c - 3k', frame 0, is the far reference that checks them). Results start ~3w into the
    # stream instead of 2k. 0: off (look ahead by k).
    warmup_lag_s: float = 0.0
    # Start-up strips (with `min_lag_s` or `warmup_lag_s`, while a frame's farther reference is less
    # than k back): against short past lags a slow car is two strips, its leading edge and the ghost of
    # where it just was behind it (a uniform body matches itself; the far reference, frame 0, still
    # had the car there, so the ghost survives), born as two tracks. Two boxes closer than
    # `startup_join_m` become their union when it stays vehicle-sized and each is at most
    # `fuse_max_side` of it (the car now and just before: IoU > 0.6 with the car), and boxes still
    # shorter than `startup_min_m` are dropped (strips). 0: off. Opt-in (`MtiConfig.early_start()`):
    # aerial 301-306 with `min_lag_s` 0.1, first report 2.11 -> 0.56 s for recall -0.023, IDF1 -0.012;
    # crossing recall -0.07 (frames 0-8 have no result; docs/ped.md, "First report"). Those frames carry
    # the camera motion, so the tracker's back-fill reaches them: aerial recall per clip 0.89-0.98 ->
    # 0.92-0.98 with it (docs/ped.md, "First report, second look"); cars under its patch size stay unfilled.
    startup_join_m: float = 0.0
    startup_min_m: float = 0.0
    # ... (`min_lag_s`) not where a small vehicle (`start_vehicle_m`, length x width, at the first
    # frame's GSD) is known to cover fewer than this many pixels: there the look-ahead warm-up. Short
    # lags see a vehicle small in the picture as strips for longer (it moves few pixels in them), and
    # the tracker cannot follow it back into the frames before the first pair (its back-fill needs a
    # patch of `TrackerConfig.back_min_px`, 120): crossing / orbit (0.49 m/px, 34 px) lost 0.06-0.07
    # recall with `mti-early`, now unchanged. 0: wherever `min_lag_s` is set.
    start_min_px: float = 120.0
    start_vehicle_m: tuple[float, float] = (4.5, 1.8)
    # Far reference ("past" only; lag `far_k` * k, or the oldest buffered frame covering the blob):
    # each blob is checked against it in a small window around the blob (no full-frame cost).
    # - ghost: a region that was under the car at c - k and c - 2k but is ground now differs from
    #   both references like a mover does; it does not differ from the far one (ground then too)
    #   unless the car is slower than length / ((far_k - 1) k). Blobs whose pixels mostly match
    #   the far reference are dropped.
    # - extent: a slow car now overlaps itself at c - k, so only its leading strip differs from
    #   both references; against the far reference the whole car differs. The box grows to the
    #   connected far-reference change around the blob (if it stays vehicle-sized).
    # 0: off.
    far_k: int = 4
    gsd_every: int = 15  # frames between GSD grids for the size gate (0 .. 1: every frame)
    # The far reference grows a box only while it stays vehicle-sized: at most `merge_max_m` along
    # the picture's x and along its y, each from the GSD along that axis at the blob (`per_box_gsd`).
    # False: the longest side against the GSD at the picture's centre (the geometric mean of both
    # axes). An oblique view foreshortens y, and its near half has a finer GSD than the centre, so a
    # long vehicle lying along x there was refused its whole box (minute-long aerial clip 323: an
    # 8.6 m truck at 3.4 m/s, 52 px long, limit 53 px; kept as its front half, IoU < 0.3).
    per_box_gsd: bool = True
    far_chroma: bool = True  # ... colour too (a ground-coloured car); ~half of the check's cost
    # A blob needs this fraction of its pixels changed vs the far reference (0.35 before the third
    # pass: half-changed blobs were mostly a slow car's trailing strip; 0.5 on aerial seeds 301-306:
    # seed 305 precision 0.806 -> 0.897, the rest within 0.004).
    ghost_frac: float = 0.5
    # ("past" only) where the pair's references never saw the ground (the camera panned onto it),
    # fall back to shorter pairs (lag/2, lag) then (lag/4, lag/2) there (False: nothing is found
    # there until the ground has been in view for 2 lags).
    fill_uncovered: bool = True
    # ... halving the pair each level: (lag/2, lag), (lag/4, lag/2), (lag/8, lag/4). 3 since the eighth
    # pass (was 2): a car on ground the camera panned onto 0.27 s ago is found, not 0.5 s; minute-long
    # aerial clips, targets reported > 0.5 s after coming into view 55 -> 43, false tracks 22 -> 19.
    fill_levels: int = 3
    fill_min_frac: float = 0.05  # ... when that area is at least this fraction of the frame (each box costs)
    fill_unchecked: bool = True  # ... keeping blobs there that no older frame can check (ghost, extent)
    fill_chroma: bool = True  # ... comparing colour too (a ground-coloured car), at ~2x the cost
    # Blob fragments of one car (a windscreen, a ground-coloured bonnet) that the far reference's
    # change joins into one vehicle-sized region become one box. On since the third pass (with
    # `min_size_m` 2): aerial tuning seeds 301-306, medians, precision 0.926 -> 0.948, recall
    # 0.893 -> 0.915 over `min_size_m` 2 alone; it costs the crossing scenario ~0.015 recall (a
    # faint car touching a bright one is fused now and then).
    fuse_fragments: bool = True
    fuse_max_side: float = 0.7  # ... when each fragment's longest side is at most this part of the union's

    @classmethod
    def before_far(cls) -> MtiConfig:
        """The default before the far reference and the shorter pairs (for same-run comparison in
        bench/ped.py)."""
        return cls(far_k=0, fill_uncovered=False, refine_levels=1, min_size_m=1.2, fuse_fragments=False,
                   ghost_frac=0.35)

    @classmethod
    def second_pass(cls) -> MtiConfig:
        """The default after the detector's second pass (far reference, shorter pairs), before the
        third (`mti-2p` in bench/ped.py, for same-run comparison)."""
        return cls(min_size_m=1.2, fuse_fragments=False, ghost_frac=0.35)

    @classmethod
    def sixth_pass(cls) -> MtiConfig:
        """The default before the corners were topped up (`top_up`; `mti-6p` in bench/ped.py)."""
        return cls(top_up=False)

    @classmethod
    def seventh_pass(cls) -> MtiConfig:
        """The default before the eighth pass: the far reference's size limit from the picture's centre
        (`per_box_gsd`), two levels of shorter pairs (`fill_levels`); `mti-7p` in bench/ped.py."""
        return cls(per_box_gsd=False, fill_levels=2)

    @classmethod
    def early_start(cls) -> MtiConfig:
        """Opt-in start-up that reports sooner (past-only lags from frame 9, start-up strips joined;
        not where vehicles are known to be small in the picture, `start_min_px`): first report ~0.5 s
        instead of ~2.1 s on the aerial scenario, for some recall (`mti-early` in bench/ped.py;
        docs/ped.md "First report" and "... sixth pass")."""
        return cls(min_lag_s=0.1, startup_join_m=6.0, startup_min_m=3.0)

    @classmethod
    def previous(cls) -> MtiConfig:
        """The settings before issue 9 (`--detector mti-v1`), kept to measure against."""
        return cls(refs="symmetric", refine=False, lag_s=1.0, merge_m=0.0, target_m=0.0, texture_margin=0.0,
                   min_lag_s=0.0, far_k=0, fill_uncovered=False, min_size_m=1.2, fuse_fragments=False,
                   ghost_frac=0.35)


@dataclass(slots=True)
class _Slot:
    index: int
    pts: float | None
    grey: U8  # working size
    chroma: U8 | None  # Cr, Cb at half the working size (None for grey video)
    to_newest: M33  # maps this frame's working pixels to the newest frame's
    sensor: Any
    corners: npt.NDArray[Any] | None = None  # tracked corners, working pixels [N, 1, 2]
    # (lag, W): the registration used for this frame's farther reference (ref -> this frame)
    reg: tuple[int, M33] | None = None


Box = tuple[Any, Any, Any, Any]  # x0, y0, x1, y1


def _union_pairs(boxes: list[Box], areas: list[Any], confs: list[Any], gap: float,
                 accept: Callable[[Box, Box, Box], bool]) -> tuple[list[Box], list[Any], list[Any]]:
    """Replace the first pair whose gaps (x and y) are both <= `gap` and that `accept(a, b, union)`
    takes by its union (areas summed, the higher confidence), and again until no pair is left.
    O(n^2) per pass over a frame's few blobs."""
    joined = True
    while joined:
        joined = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                if max(a[0], b[0]) - min(a[2], b[2]) > gap or max(a[1], b[1]) - min(a[3], b[3]) > gap:
                    continue
                u = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                if not accept(a, b, u):
                    continue
                boxes[i], areas[i], confs[i] = u, areas[i] + areas[j], max(confs[i], confs[j])
                del boxes[j], areas[j], confs[j]
                joined = True
                break
            if joined:
                break
    return boxes, areas, confs


class MtiDetector:
    """See the module docstring. `detect()` returns frames finished so far, in order."""

    finds_movers = True

    def __init__(self, config: MtiConfig | None = None, **overrides: Any) -> None:
        cfg = config or MtiConfig()
        for key, value in overrides.items():
            if not hasattr(cfg, key):
                raise TypeError(f"unknown MTI option {key!r}")
            setattr(cfg, key, value)
        self.cfg = cfg
        self.k: int | None = None  # lag in frames, fixed once the frame rate is known
        self.delay = 0
        self._buf: deque[_Slot] = deque()
        self._next_centre = 0  # position in `_buf` order, as a frame counter since the last reset
        self._prev_feat: U8 | None = None
        self._prev_pts: npt.NDArray[Any] | None = None
        self._first_pts: float | None = None
        self._scale_work = 1.0  # full / working
        self._scale_feat = 1.0  # working / feature
        self._shape: tuple[int, int] | None = None
        self._kernel3 = np.ones((3, 3), np.uint8)
        self._kernel_open = np.ones((5, 5), np.uint8)
        self._kernel_close = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
        self.registration_failures = 0
        # per reference offset (ref - centre): (correction D, the centre slot it was measured on, age)
        self._corr: dict[int, tuple[M33, _Slot, int]] = {}
        self._min_k = 0  # shortest start-up lag (frames); 0: look-ahead warm-up
        self._early_ok = True  # the past-only start-up may be used (see `start_min_px`)
        self._warm_k = 0  # look-ahead lag of a short warm-up (frames); 0: k
        self._far = 0  # far reference lag (frames); 0: off
        self._levels: list[tuple[int, int, U8, int]] = []  # this centre's shorter pairs: x0, y0, cover, lag
        self._main_lag = 0
        self._startup = False  # this centre's farther reference is less than k back (start-up lags)
        self._gsd_cache: tuple[int, npt.NDArray[np.float64] | None, float, float] | None = None
        self._max_px: tuple[Any, float, int] | None = None  # (sensor model, longest vehicle in working px, frame)
        self._warps_now: dict[int, M33] = {}  # this centre's registered references (buffer position -> W)
        self._short: tuple[float, ...] = (0.5,) * self.cfg.fill_levels if self.cfg.refs == "past" and self.cfg.fill_uncovered else ()

    # ---------------------------------------------------------------- stream handling
    def detect(self, frame: FrameLike, sensor: Any = None) -> list[Detections]:
        img: U8 = frame.image
        grey: U8 = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        h, w = grey.shape
        out: list[Detections] = []
        if self._shape != (h, w):
            out += self._reset_flush()
            self._shape = (h, w)
            # integer factors: cv2's INTER_AREA has a fast path for them (and boxes stay on a grid)
            self._scale_work = float(max(1, math.ceil(w / self.cfg.work_width), self._gsd_scale(sensor, w, h)))
            ww = int(round(w / self._scale_work))
            self._scale_feat = float(max(1, math.ceil(ww / self.cfg.feature_width)))
            if self.k is None:  # the start-up is chosen once, on the first frame
                self._early_ok = self._big_enough(sensor, w, h)
        if self.k is None:
            if self._first_pts is None:
                self._first_pts = frame.pts
            if frame.pts is not None and self._first_pts is not None and frame.pts > self._first_pts:
                fps = 1.0 / (frame.pts - self._first_pts)
                self._set_lag(fps)
            elif frame.pts is None and self._buf:
                self._set_lag(self.cfg.default_fps)
        work = self._resize(grey, self._scale_work)
        chroma: U8 | None = None
        if self.cfg.chroma and img.ndim == 3:
            # Video chroma is 4:2:0 anyway: at half the working size nothing is lost. Shrink the
            # BGR image first, then convert (cheaper than converting the full frame).
            wh, ww = work.shape
            small = cv2.resize(img, ((ww + 1) // 2, (wh + 1) // 2), interpolation=cv2.INTER_AREA)
            ycc = cv2.cvtColor(small, cv2.COLOR_BGR2YCrCb)
            chroma = np.empty(ycc.shape[:2] + (2,), np.uint8)
            cv2.mixChannels([ycc], [chroma], [1, 0, 2, 1])  # Cr, Cb: ~4x cheaper than a numpy strided copy
        feat = self._resize(work, self._scale_feat)
        if self._buf:
            H = self._ego_motion(feat)
            if H is None:  # lost registration (cut, blur, no texture): restart the window here
                self.registration_failures += 1
                out += self._reset_flush()
                self._track_init(feat)
            else:
                for slot in self._buf:
                    slot.to_newest = H @ slot.to_newest
        else:
            self._track_init(feat)
        corners = None if self._prev_pts is None else self._prev_pts * np.float32(self._scale_feat)
        self._buf.append(_Slot(frame.index, frame.pts, work, chroma, np.eye(3), sensor, corners))
        out += self._emit(final=False)
        return out

    def _big_enough(self, sensor: Any, w: int, h: int) -> bool:
        """Is a small vehicle not known to cover fewer than `start_min_px` pixels at the centre of this
        first frame? (No sensor model: not known.)"""
        if self.cfg.start_min_px <= 0:
            return True
        gsd = self._gsd(sensor, np.array([[w / 2 - 1, h / 2 - 1, w / 2 + 1, h / 2 + 1]], np.float64))
        if gsd is None:
            return True
        length, width = self.cfg.start_vehicle_m
        return length * width / float(gsd[0, 0]) ** 2 >= self.cfg.start_min_px

    def _gsd_scale(self, sensor: Any, w: int, h: int) -> int:
        if self.cfg.target_m <= 0 or sensor is None:
            return 1
        gsd = self._gsd(sensor, np.array([[w / 2 - 1, h / 2 - 1, w / 2 + 1, h / 2 + 1]], np.float64))
        if gsd is None:
            return 1
        return max(1, int(self.cfg.target_m / float(gsd[0, 0]) / self.cfg.target_px))

    def flush(self) -> list[Detections]:
        return self._reset_flush()

    def _set_lag(self, fps: float) -> None:
        fps = fps if math.isfinite(fps) and fps > 0 else self.cfg.default_fps
        self.k = max(1, int(round(self.cfg.lag_s * fps)))
        self.delay = 0 if self.cfg.refs == "past" else self.k
        past = self.cfg.refs == "past"
        early = past and self.cfg.min_lag_s > 0 and self._early_ok
        self._min_k = max(1, int(round(self.cfg.min_lag_s * fps))) if early else 0
        self._far = self.cfg.far_k * self.k if past and self.cfg.far_k > 2 else 0
        warm = int(round(self.cfg.warmup_lag_s * fps)) if past and self.cfg.warmup_lag_s > 0 else 0
        self._warm_k = warm if 0 < warm < self.k else 0

    def _reset_flush(self) -> list[Detections]:
        out = self._emit(final=True)
        self._buf.clear()
        self._corr.clear()
        self._next_centre = 0
        self._prev_feat = None
        self._prev_pts = None
        return out

    @staticmethod
    def _resize(img: U8, scale: float) -> U8:
        if scale == 1.0:
            return img
        h, w = img.shape
        return cv2.resize(img, (int(round(w / scale)), int(round(h / scale))), interpolation=cv2.INTER_AREA)

    def _emit(self, final: bool) -> list[Detections]:
        """Finish every centre frame whose reference frames are available (all of them if final)."""
        out: list[Detections] = []
        k = self.k or 1
        n = len(self._buf) - 1  # newest position
        past = self.cfg.refs == "past"
        while self._next_centre <= n:
            c = self._next_centre
            refs: tuple[int, ...] | None = None
            if past and c - 2 * k >= 0:
                refs = (c - k, c - 2 * k)
            elif past and self._min_k and self.k is not None:
                ke = c // 3 if self._far else c // 2  # (c - 3k' is the far reference)
                if ke < self._min_k:  # too little history for any lag: nothing to say yet
                    slot = self._buf[c]
                    # ... but the camera motion is known: the tracker follows a track's look back
                    # into these frames once it is confirmed (back-fill)
                    out.append(Detections(frame_index=slot.index, pts=slot.pts, homography=self._to_prev(c)))
                    self._next_centre += 1
                    continue
                refs = (c - ke, c - 2 * ke)
            elif past and self._warm_k:
                kw = self._warm_k
                if c >= 2 * kw:
                    ke = max(kw, min(k, c // 3))
                    refs = (c - ke, c - 2 * ke)
                elif c >= kw and c + kw <= n:
                    refs = (c - kw, c + kw)
                elif c < kw and c + 2 * kw <= n:
                    refs = (c + kw, c + 2 * kw)
                elif final:
                    refs = self._fallback_refs(c, n, k)
            elif c - k >= 0 and c + k <= n:  # symmetric, and the first 2k frames of "past" (warm-up)
                refs = (c - k, c + k)
            elif c - k < 0 and c + 2 * k <= n:
                refs = (c + k, c + 2 * k)
            elif final:
                refs = self._fallback_refs(c, n, k)
            if refs is None:
                break
            out.append(self._detect_centre(c, refs))
            self._next_centre += 1
        # Keep what future centres still need: positions >= next_centre - k (- 2k when past).
        keep = max(2 * k, self._far) if past else k
        drop = max(0, self._next_centre - keep) if not final else 0
        for _ in range(drop):
            self._buf.popleft()
        self._next_centre -= drop
        return out

    @staticmethod
    def _fallback_refs(c: int, n: int, k: int) -> tuple[int, ...]:
        """End of stream / short stream: the two buffered frames farthest from `c` *and* from each
        other (a ghost is only cancelled if the two references are far apart in time too)."""
        if c - 2 * k >= 0:
            return (c - k, c - 2 * k)
        others = [j for j in range(n + 1) if j != c]
        if len(others) < 2:
            return tuple(others)
        best, pair = -1, (others[0], others[1])
        for i, a in enumerate(others):
            for b in others[i + 1:]:
                score = min(abs(a - c), abs(b - c), abs(a - b))
                if score > best:
                    best, pair = score, (a, b)
        return pair

    # ---------------------------------------------------------------- ego-motion
    def _track_init(self, feat: U8) -> None:
        self._prev_feat = feat
        self._prev_pts = self._corners(feat)

    def _corners(self, feat: U8, mask: U8 | None = None) -> npt.NDArray[Any] | None:
        pts = cv2.goodFeaturesToTrack(feat, self.cfg.max_features, 0.01, 7, blockSize=5, mask=mask)
        return None if pts is None else pts.astype(np.float32)

    def _spans(self, pts: npt.NDArray[Any], shape: tuple[int, ...]) -> bool:
        """Do the corners reach across `top_up_span` of the picture, both ways?"""
        if self.cfg.top_up_span <= 0:
            return False
        xy = pts.reshape(-1, 2)
        ext = xy.max(axis=0) - xy.min(axis=0)
        return bool(ext[0] >= self.cfg.top_up_span * shape[1] and ext[1] >= self.cfg.top_up_span * shape[0])

    def _top_up(self, feat: U8, pts: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """The tracked corners (evenly thinned to `max_features`) and up to `max_features` fresh ones in
        the `top_up_cell` squares that hold none of them. At most 2 x `max_features` to track."""
        n, cell = self.cfg.max_features, max(1, self.cfg.top_up_cell)
        if len(pts) > n:
            pts = pts[np.linspace(0, len(pts) - 1, n).astype(np.intp)]
        h, w = feat.shape
        xy = np.round(pts.reshape(-1, 2)).astype(np.intp)
        ok = (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
        hit = np.zeros((-(-h // cell), -(-w // cell)), np.uint8)
        hit[xy[ok, 1] // cell, xy[ok, 0] // cell] = 255
        free = cv2.bitwise_not(np.repeat(np.repeat(hit, cell, 0), cell, 1)[:h, :w])
        if not free.any():
            return pts
        fresh = self._corners(feat, free)
        return pts if fresh is None else np.concatenate([pts, fresh])

    def _ego_motion(self, feat: U8) -> M33 | None:
        """Homography mapping the previous frame's working pixels to this frame's, or None."""
        prev, p0 = self._prev_feat, self._prev_pts
        self._prev_feat = feat
        if prev is None or prev.shape != feat.shape:
            self._prev_pts = self._corners(feat)
            return None
        if p0 is None or len(p0) < self.cfg.max_features // 2:
            p0 = self._corners(prev)
            if p0 is None:
                self._prev_pts = self._corners(feat)
                return None
        elif self.cfg.top_up and not self._spans(p0, prev.shape):
            p0 = self._top_up(prev, p0)
        p1, st, _err = cv2.calcOpticalFlowPyrLK(prev, feat, p0, None, winSize=(13, 13), maxLevel=3)  # type: ignore[call-overload]
        ok = st.reshape(-1) == 1
        a, b = p0[ok], p1[ok]
        if len(a) < self.cfg.min_inliers:
            self._prev_pts = self._corners(feat)
            return None
        H, inl = cv2.findHomography(a, b, cv2.RANSAC, 1.0)
        if H is None or inl is None or int(inl.sum()) < self.cfg.min_inliers:
            self._prev_pts = self._corners(feat)
            return None
        self._prev_pts = b[inl.reshape(-1) == 1].reshape(-1, 1, 2)
        s = self._scale_feat
        S = np.array([[s, 0, 0], [0, s, 0], [0, 0, 1]], np.float64)
        Sinv = np.array([[1 / s, 0, 0], [0, 1 / s, 0], [0, 0, 1]], np.float64)
        return S @ H @ Sinv

    # ---------------------------------------------------------------- change detection
    def _detect_centre(self, c: int, refs: tuple[int, ...]) -> Detections:
        slot = self._buf[c]
        cur = slot.grey
        h, w = cur.shape
        valid: U8 = np.zeros((h, w), np.uint8)
        b = self.cfg.border_px
        inset = np.array([[b, b], [w - 1 - b, b], [w - 1 - b, h - 1 - b], [b, h - 1 - b]], np.float64)
        cv2.fillConvexPoly(valid, inset.astype(np.int32), 255)
        to_c = np.linalg.inv(slot.to_newest)
        diff: U8 | None = None
        self._warps_now.clear()
        on_screen: U8 | None = None  # unchanged in screen coordinates although the camera moved
        warps: list[M33] = []
        centre = np.array([[[w / 2, h / 2]]], np.float64)
        for r in refs:
            ref = self._buf[r]
            W = to_c @ ref.to_newest  # ref working pixels -> centre working pixels
            if self.cfg.refine:
                W = self._registered(slot, ref, r - c, W)
            self._warps_now[r] = W
            if r == min(refs) and r < c:
                slot.reg = (c - r, W)
            d = self._tolerant_diff(cur, ref.grey, W)
            if self.cfg.screen_static_level > 0:
                moved = float(np.hypot(*(cv2.perspectiveTransform(centre, W) - centre).reshape(2)))
                if moved >= 2.0:
                    # Burned-in overlays (HUD text, crosshair, black bars) ride with the screen: the
                    # same on screen as the reference, yet different from the registered reference.
                    _, same = cv2.threshold(cv2.absdiff(cur, ref.grey), self.cfg.screen_static_level, 255,
                                            cv2.THRESH_BINARY_INV)
                    _, moving = cv2.threshold(d, self.cfg.diff_threshold, 255, cv2.THRESH_BINARY)
                    same = cv2.bitwise_and(same, moving)
                    on_screen = same if on_screen is None else cv2.bitwise_and(on_screen, same)
                else:
                    on_screen = np.zeros((h, w), np.uint8)
            warps.append(W)
            if slot.chroma is not None and ref.chroma is not None:
                ch, cw = slot.chroma.shape[:2]
                sx, sy = cw / w, ch / h
                Wc = np.diag([sx, sy, 1.0]) @ W @ np.diag([1 / sx, 1 / sy, 1.0])
                dc = self._tolerant_diff(slot.chroma, ref.chroma, Wc)
                dc = cv2.max(dc[:, :, 0], dc[:, :, 1])
                dc = cv2.resize(dc, (w, h), interpolation=cv2.INTER_LINEAR)
                d = cv2.max(d, cv2.convertScaleAbs(dc, alpha=self.cfg.chroma_gain))
            quad = cv2.perspectiveTransform(inset.reshape(-1, 1, 2), W).reshape(-1, 2)
            m = np.zeros((h, w), np.uint8)
            cv2.fillConvexPoly(m, np.round(quad).astype(np.int32), 255)
            valid = cv2.bitwise_and(valid, m)
            diff = d if diff is None else cv2.min(diff, d)
        if diff is None:
            return Detections.empty(slot.index, slot.pts)
        self._levels.clear()
        self._main_lag = c - min(refs)
        self._startup = self._main_lag < (self.k or 1) and max(refs) < c
        if self._short and len(refs) == 2 and max(refs) < c:
            self._fill_uncovered(slot, c, c - max(refs), inset, diff, valid)
        if on_screen is not None and cv2.countNonZero(on_screen):
            # ignore the overlay where it is, and where each reference's copy of it lands
            hud = cv2.dilate(on_screen, self._kernel_close)
            masked = hud.copy()
            for W in warps:
                masked = cv2.bitwise_or(masked, cv2.warpPerspective(hud, W, (w, h), flags=cv2.INTER_NEAREST))
            valid = cv2.bitwise_and(valid, cv2.bitwise_not(masked))
        homography = self._to_prev(c, to_c)
        mean, std = cv2.meanStdDev(diff, mask=valid)
        thr = max(self.cfg.diff_threshold, float(mean[0, 0]) + self.cfg.noise_k * float(std[0, 0]))
        _, seeds = cv2.threshold(diff, thr, 255, cv2.THRESH_BINARY)
        seeds = cv2.bitwise_and(seeds, valid)
        low = thr * min(1.0, self.cfg.grow_frac)
        if low < thr:  # hysteresis: weaker change counts only where connected to a seed
            _, mask = cv2.threshold(diff, low, 255, cv2.THRESH_BINARY)
            mask = cv2.bitwise_and(mask, valid)
        else:
            mask = seeds
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, self._kernel_close)
        # Blobs: outer contours are ~40x cheaper than labelling every pixel on a sparse mask.
        contours, _hier = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        rows = []
        for cnt in contours:
            x, y, bw, bh = cv2.boundingRect(cnt)
            if low < thr and not cv2.countNonZero(seeds[y:y + bh, x:x + bw]):
                continue  # weak change with no seed in its box: noise
            rows.append((x, y, bw, bh, cv2.countNonZero(mask[y:y + bh, x:x + bw])))
        stats = np.array(rows, np.int64).reshape(-1, 5)
        dets = self._blobs(slot, stats, diff, thr, low, self._far_refs(c))
        dets.homography = homography
        return dets

    def _to_prev(self, c: int, to_c: npt.NDArray[np.floating[Any]] | None = None) -> M33 | None:
        """Previous frame -> centre `c`, full-resolution pixels (None for the first frame buffered).
        `to_c`: the inverse of centre `c`'s `to_newest`, when the caller has it already."""
        if c < 1:
            return None
        s = self._scale_work
        if to_c is None:
            to_c = np.linalg.inv(self._buf[c].to_newest)
        return np.asarray(np.diag([s, s, 1.0]) @ to_c @ self._buf[c - 1].to_newest @ np.diag([1 / s, 1 / s, 1.0]),
                          np.float64)

    def _fill_uncovered(self, slot: _Slot, c: int, lag: int, inset: npt.NDArray[np.float64], diff: U8,
                        valid: U8) -> None:
        """Where the pair's references did not see the ground (the camera panned onto it), compare
        with a shorter pair (lag / 2 and lag, then lag / 4 and lag / 2) inside the bounding box of
        what is left uncovered: a target driving into a newly seen area is found at once, not 2
        lags later. Writes into `diff` and `valid` in place. Cost: proportional to that box."""
        h, w = diff.shape
        todo: U8 = np.zeros((h, w), np.uint8)
        cv2.fillConvexPoly(todo, inset.astype(np.int32), 255)
        todo = cv2.bitwise_and(todo, cv2.bitwise_not(valid))
        for frac in self._short:
            a = max(1, int(round(lag * frac)))
            if a >= lag or c - 2 * a < 0:
                return
            opened = cv2.morphologyEx(todo, cv2.MORPH_OPEN, self._kernel_open)
            if cv2.countNonZero(opened) < max(self.cfg.min_area_px, self.cfg.fill_min_frac * h * w):
                return
            # strips thinner than a small vehicle hold no whole target: not worth a warp
            for rect in self._rects(opened, self.cfg.border_px):
                self._fill_rect(slot, c, a, rect, inset, diff, valid, todo)
            lag = a

    @staticmethod
    def _rects(mask: U8, border: int = 0) -> list[tuple[int, int, int, int]]:
        """Boxes covering the nonzero pixels of `mask` (what the pair's references did not see: bands
        along the frame's edges) without much else: a band per edge (rows or columns mostly set,
        from the edge inwards), then a box around each piece left. Even coordinates (chroma is
        at half size). `border`: pixels along the edges that count as set for finding the bands.
        O(pixels) in two cv2.reduce passes."""
        h, w = mask.shape
        if not cv2.countNonZero(mask):
            return []
        mask = mask.copy()
        if border > 0:
            mask[:border], mask[h - border:], mask[:, :border], mask[:, w - border:] = 255, 255, 255, 255
        rows = cv2.reduce(mask, 1, cv2.REDUCE_AVG, dtype=cv2.CV_32F).reshape(-1) > 255 * 0.3
        t = int(np.argmin(rows)) if not rows.all() else h
        bt = h - (int(np.argmin(rows[::-1])) if not rows.all() else h)
        rest = mask
        out: list[tuple[int, int, int, int]] = []
        if t > 0:
            out.append((0, 0, w, t))
            rest[:t] = 0
        if bt < h and bt > t:
            out.append((0, bt, w, h))
            rest[bt:] = 0
        cols = cv2.reduce(rest, 0, cv2.REDUCE_AVG, dtype=cv2.CV_32F).reshape(-1) > 255 * 0.3 * (bt - t) / h
        lft = int(np.argmin(cols)) if not cols.all() else w
        rgt = w - (int(np.argmin(cols[::-1])) if not cols.all() else w)
        if lft > 0:
            out.append((0, t, lft, bt))
            rest[:, :lft] = 0
        if rgt < w and rgt > lft:
            out.append((rgt, t, w, bt))
            rest[:, rgt:] = 0
        if border > 0:
            rest[:border], rest[h - border:], rest[:, :border], rest[:, w - border:] = 0, 0, 0, 0
        contours, _hier = cv2.findContours(rest, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        for cnt in contours:  # what is left: one box per piece
            x, y, bw, bh = cv2.boundingRect(cnt)
            if min(bw, bh) >= 6:  # a sliver holds no whole target
                out.append((x, y, x + bw, y + bh))
        even = [(x0 & ~1, y0 & ~1, min(w, (x1 + 1) & ~1), min(h, (y1 + 1) & ~1)) for x0, y0, x1, y1 in out]
        # a band no thicker than the ignored border (+ a few pixels) holds nothing to look at
        return [r for r in even if min(r[2] - r[0], r[3] - r[1]) >= border + 4]

    def _fill_rect(self, slot: _Slot, c: int, a: int, rect: tuple[int, int, int, int],
                   inset: npt.NDArray[np.float64], diff: U8, valid: U8, todo: U8) -> None:
        """One box of `_fill_uncovered`: pair (c - a, c - 2a) along the frame-to-frame chain (over
        these short lags it drifts little; no extra registration)."""
        h, w = diff.shape
        x0, y0, x1, y1 = rect
        T = np.array([[1.0, 0, -x0], [0, 1.0, -y0], [0, 0, 1.0]])
        cur = slot.grey[y0:y1, x0:x1]
        to_c = np.linalg.inv(slot.to_newest)
        sub: U8 | None = None
        cover: U8 = todo[y0:y1, x0:x1].copy()
        for r in (c - a, c - 2 * a):
            ref = self._buf[r]
            W = self._warps_now.get(r)
            if W is None:
                W = to_c @ ref.to_newest
            d = self._tolerant_diff(cur, ref.grey, T @ W)
            if self.cfg.fill_chroma and slot.chroma is not None and ref.chroma is not None:
                ch, cw = slot.chroma.shape[:2]
                sx, sy = cw / w, ch / h
                cx0, cy0 = x0 // 2, y0 // 2
                cx1, cy1 = min(cw, (x1 + 1) // 2), min(ch, (y1 + 1) // 2)
                Wc = (np.array([[1.0, 0, -cx0], [0, 1.0, -cy0], [0, 0, 1.0]]) @ np.diag([sx, sy, 1.0]) @ W
                      @ np.diag([1 / sx, 1 / sy, 1.0]))
                dc = self._tolerant_diff(slot.chroma[cy0:cy1, cx0:cx1], ref.chroma, Wc)
                dc = cv2.resize(cv2.max(dc[:, :, 0], dc[:, :, 1]), (x1 - x0, y1 - y0),
                                interpolation=cv2.INTER_LINEAR)
                d = cv2.max(d, cv2.convertScaleAbs(dc, alpha=self.cfg.chroma_gain))
            quad = cv2.perspectiveTransform(inset.reshape(-1, 1, 2), T @ W).reshape(-1, 2)
            m = np.zeros((y1 - y0, x1 - x0), np.uint8)
            cv2.fillConvexPoly(m, np.round(quad).astype(np.int32), 255)
            cover = cv2.bitwise_and(cover, m)
            sub = d if sub is None else cv2.min(sub, d)
        assert sub is not None
        d_roi, v_roi = diff[y0:y1, x0:x1], valid[y0:y1, x0:x1]
        cv2.copyTo(sub, cover, d_roi)
        self._levels.append((x0, y0, cover, 2 * a))
        cv2.bitwise_or(v_roi, cover, dst=v_roi)
        todo[y0:y1, x0:x1] = cv2.bitwise_and(todo[y0:y1, x0:x1], cv2.bitwise_not(cover))

    def _registered(self, slot: _Slot, ref: _Slot, offset: int, W: M33) -> M33:
        """Ref -> centre working pixels: the chained `W` corrected by the last measured
        correction for this offset (carried onto this centre), re-measured every `refine_every`."""
        prev = self._corr.get(offset)
        age = 0
        if prev is not None and any(s is prev[1] for s in self._buf):
            D, pslot, age = prev
            T = np.linalg.inv(slot.to_newest) @ pslot.to_newest  # previous centre -> this centre
            W = T @ D @ np.linalg.inv(T) @ W
        else:
            prev = None
        if prev is None or age + 1 >= max(1, self.cfg.refine_every):
            W = self._refine(slot, ref, W)
            age = -1
        chained = np.linalg.inv(slot.to_newest) @ ref.to_newest
        self._corr[offset] = (W @ np.linalg.inv(chained), slot, age + 1)
        return W

    def _refine(self, slot: _Slot, ref: _Slot, W: M33) -> M33:
        """W (ref -> centre, working pixels) re-estimated from the centre's corners found in the
        reference by LK, starting where W puts them; W unchanged when too few agree."""
        pc = slot.corners
        if pc is None or len(pc) < self.cfg.min_inliers:
            return W
        guess = cv2.perspectiveTransform(pc.astype(np.float64), np.linalg.inv(W)).astype(np.float32)
        pr, st, _err = cv2.calcOpticalFlowPyrLK(slot.grey, ref.grey, pc, guess.copy(), winSize=(15, 15),  # type: ignore[call-overload]
                                                maxLevel=self.cfg.refine_levels,
                                                flags=cv2.OPTFLOW_USE_INITIAL_FLOW)
        ok = st.reshape(-1) == 1
        if int(ok.sum()) < self.cfg.min_inliers:
            return W
        H, inl = cv2.findHomography(pr[ok], pc[ok], cv2.RANSAC, 1.0)
        if H is None or inl is None or int(inl.sum()) < self.cfg.min_inliers:
            return W
        return np.asarray(H, np.float64)

    def _tolerant_diff(self, cur: U8, ref: U8, W: M33) -> U8:
        """|cur - warp(ref)|, but 0 wherever cur lies within the 3x3 min..max of the warped ref:
        a 1-pixel registration error on texture does not look like motion."""
        h, w = cur.shape[:2]
        warped = cv2.warpPerspective(ref, W, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
        hi = cv2.dilate(warped, self._kernel3)
        lo = cv2.erode(warped, self._kernel3)
        d = cv2.max(cv2.subtract(cur, hi), cv2.subtract(lo, cur))
        if self.cfg.texture_margin > 0:
            d = cv2.subtract(d, cv2.convertScaleAbs(cv2.subtract(hi, lo), alpha=self.cfg.texture_margin))
        return d

    def _far_refs(self, c: int) -> list[tuple[_Slot, M33, M33, int]]:
        """Far references of centre `c`, longest lag first: (frame, far -> centre registration in
        working pixels, its inverse, lag). First c - 2L composed of two measured registrations
        (c-L -> c) o (c-2L -> c-L), L the pair's farther lag, when both exist; then buffered frames
        at shorter lags along the frame-to-frame chain (for blobs whose window the first one did
        not see, or found by a shorter pair)."""
        slot = self._buf[c]
        if not self._far or slot.reg is None:
            return []
        out: list[tuple[_Slot, M33, M33, int]] = []
        lag, W = slot.reg
        if c - 2 * lag >= 0 and 2 * lag <= self._far:
            mid = self._buf[c - lag]
            if mid.reg is not None and mid.reg[0] == lag:
                Wf = W @ mid.reg[1]
                out.append((self._buf[c - 2 * lag], Wf, np.asarray(np.linalg.inv(Wf), np.float64), 2 * lag))
        if out and not self._levels:
            return out  # steady state, no shorter pairs this frame: the measured one is enough
        k = self.k or 1
        to_c = np.linalg.inv(slot.to_newest)
        for f in (4.0, 3.0, 2.0, 1.5, 1.0, 0.75):
            lg = min(c, int(round(f * k)), self._far)
            if lg <= 0 or any(lg == o[3] for o in out):
                continue
            far = self._buf[c - lg]
            Wf = to_c @ far.to_newest
            out.append((far, Wf, np.asarray(np.linalg.inv(Wf), np.float64), lg))
        return out

    def _far_box(self, slot: _Slot, fars: list[tuple[_Slot, M33, M33, int]], box: tuple[int, int, int, int],
                 diff: U8, low: float, others: list[tuple[int, int, int, int]],
                 max_px: tuple[float, float]) -> tuple[int, int, int, int] | None:
        """One blob box (working pixels) checked against the far reference in a window around it:
        None (a ghost), the box grown to the far-reference change connected to it, or the box as is
        (window not covered by the far frame, or growth not vehicle-like). O(window pixels)."""
        h, w = slot.grey.shape
        x0, y0, x1, y1 = box
        pad = max(x1 - x0, y1 - y0) + 2
        wx0, wy0, wx1, wy1 = max(0, x0 - pad), max(0, y0 - pad), min(w, x1 + pad), min(h, y1 + pad)
        b = self.cfg.border_px
        quad = np.array([[[wx0, wy0]], [[wx1, wy0]], [[wx1, wy1]], [[wx0, wy1]]], np.float64)
        min_lag = self._pair_lag((x0 + x1) // 2, (y0 + y1) // 2)
        # a blob from a shorter pair that no older frame can check: kept only if `fill_unchecked`
        unchecked = box if min_lag >= self._main_lag or self.cfg.fill_unchecked else None
        for ref, Wf, Wf_inv, lag in fars:  # noqa: B007 (the loop picks the one used below)
            if lag <= min_lag:
                return unchecked  # no frame older than the blob's own references saw all of the window
            back = cv2.perspectiveTransform(quad, Wf_inv).reshape(-1, 2)
            if back.min() >= b and back[:, 0].max() <= w - 1 - b and back[:, 1].max() <= h - 1 - b:
                break
        else:
            return unchecked
        T = np.array([[1.0, 0, -wx0], [0, 1.0, -wy0], [0, 0, 1.0]])
        df = self._tolerant_diff(slot.grey[wy0:wy1, wx0:wx1], ref.grey, T @ Wf)
        if self.cfg.far_chroma and slot.chroma is not None and ref.chroma is not None:
            ch, cw = slot.chroma.shape[:2]
            sx, sy = cw / w, ch / h
            cx0, cy0 = int(wx0 * sx), int(wy0 * sy)
            cx1, cy1 = max(cx0 + 1, int(math.ceil(wx1 * sx))), max(cy0 + 1, int(math.ceil(wy1 * sy)))
            Wc = np.array([[1.0, 0, -cx0], [0, 1.0, -cy0], [0, 0, 1.0]]) @ np.diag([sx, sy, 1.0]) @ Wf @ \
                np.diag([1 / sx, 1 / sy, 1.0])
            dc = self._tolerant_diff(slot.chroma[cy0:cy1, cx0:cx1], ref.chroma, Wc)
            dc = cv2.max(dc[:, :, 0], dc[:, :, 1])
            # chroma pixel (i, j) covers working pixels from (i / s): map back with the same grid
            dc = cv2.warpAffine(dc, np.array([[sx, 0, wx0 * sx - cx0], [0, sy, wy0 * sy - cy0]]),
                                (wx1 - wx0, wy1 - wy0), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
            df = cv2.max(df, cv2.convertScaleAbs(dc, alpha=self.cfg.chroma_gain))
        blob = np.zeros(df.shape, np.uint8)
        bx0, by0 = x0 - wx0, y0 - wy0
        blob[by0:by0 + (y1 - y0), bx0:bx0 + (x1 - x0)] = diff[y0:y1, x0:x1] >= low
        n = cv2.countNonZero(blob)
        if n == 0:
            return box
        changed = (df >= low).astype(np.uint8)
        if cv2.countNonZero(cv2.bitwise_and(changed, blob)) < self.cfg.ghost_frac * n:
            return None
        grown = cv2.morphologyEx(cv2.bitwise_or(changed, blob), cv2.MORPH_CLOSE, self._kernel3)
        _n, labels, st, _c = cv2.connectedComponentsWithStats(grown, connectivity=8)
        ids = np.unique(labels[blob > 0])
        st = st[ids[ids > 0]]
        if len(st) == 0:
            return box
        g = (wx0 + int(st[:, 0].min()), wy0 + int(st[:, 1].min()), wx0 + int((st[:, 0] + st[:, 2]).max()),
             wy0 + int((st[:, 1] + st[:, 3]).max()))
        gw, gh = g[2] - g[0], g[3] - g[1]
        if gw > max_px[0] or gh > max_px[1] or max(gw, gh) > self.cfg.max_aspect * min(gw, gh):
            return box
        longest = self.cfg.fuse_max_side * max(gw, gh)
        for o in others:
            if o != box and g[0] <= (o[0] + o[2]) / 2 <= g[2] and g[1] <= (o[1] + o[3]) / 2 <= g[3]:
                # another blob inside: fragments of one car (one vehicle-sized connected change
                # against the far frame) if neither spans the union; two crossing or passing cars
                # each span it (a whole car is as long as the union), so they are never fused
                inside = g[0] <= o[0] and g[1] <= o[1] and o[2] <= g[2] and o[3] <= g[3]
                small = max(o[2] - o[0], o[3] - o[1]) <= longest and max(x1 - x0, y1 - y0) <= longest
                if not (self.cfg.fuse_fragments and inside and small):
                    return box
        return g

    def _join_strips(self, work: list[tuple[int, int, int, int]], areas: list[int], confs: list[float],
                     max_px: float) -> tuple[list[tuple[int, int, int, int]], list[int], list[float]]:
        """Start-up: a slow car against short lags is two strips (its leading edge, and the ghost of
        where it just was behind it; a uniform body matches itself). Join two boxes into their union
        when the gap between them is under `startup_join_m`, the union stays vehicle-sized (`max_px`
        = `merge_max_m`, aspect <= `max_aspect`) and each box is at most `fuse_max_side` of the
        union's longest side (two whole cars each span it, so they are never joined). O(n^2) over a
        frame's few blobs."""
        gap = self.cfg.startup_join_m * max_px / self.cfg.merge_max_m
        max_aspect, fuse = self.cfg.max_aspect, self.cfg.fuse_max_side

        def vehicle_sized(a: Box, b: Box, u: Box) -> bool:
            uw, uh = u[2] - u[0], u[3] - u[1]
            longest = max(uw, uh)
            if longest > max_px or longest > max_aspect * max(1, min(uw, uh)):
                return False
            side = fuse * longest
            return max(a[2] - a[0], a[3] - a[1]) <= side and max(b[2] - b[0], b[3] - b[1]) <= side

        boxes, ar, cs = _union_pairs(list(work), list(areas), list(confs), gap, vehicle_sized)
        return [(int(b[0]), int(b[1]), int(b[2]), int(b[3])) for b in boxes], ar, cs

    def _pair_lag(self, x: int, y: int) -> int:
        """The farther lag of the pair that gave working pixel (x, y) its difference."""
        for x0, y0, cover, lag in self._levels:
            if 0 <= y - y0 < cover.shape[0] and 0 <= x - x0 < cover.shape[1] and cover[y - y0, x - x0]:
                return lag
        return self._main_lag

    def _blobs(self, slot: _Slot, stats: npt.NDArray[Any], diff: U8, thr: float, low: float,
               far: list[tuple[_Slot, M33, M33, int]] | None = None) -> Detections:
        """Blob stats (x, y, w, h, area; working pixels) -> tightened, gated full-resolution boxes."""
        s = self._scale_work
        boxes: list[tuple[float, float, float, float]] = []
        areas: list[int] = []
        confs: list[float] = []
        e = self.cfg.edge_px  # the extreme pixels are only partly covered
        work: list[tuple[int, int, int, int]] = []  # working-pixel boxes, same order
        for bx, by, bw, bh, area in stats:
            sub = diff[by:by + bh, bx:bx + bw]
            peak = float(sub.max())
            x0, y0, x1, y1 = bx, by, bx + bw, by + bh
            cut = max(low, self.cfg.box_refine * peak)
            if self.cfg.box_refine > 0:  # tight box: pixels above a fraction of the blob's peak
                ys, xs = np.nonzero(sub >= cut)
                if len(xs):
                    x0, y0, x1, y1 = bx + xs.min(), by + ys.min(), bx + xs.max() + 1, by + ys.max() + 1
                    if self.cfg.split_frac > 0 and cut > low:
                        part = self._faint_partner(sub, (x0 - bx, y0 - by, x1 - bx, y1 - by), low)
                        if part is not None and part[4] >= self.cfg.split_frac * (x1 - x0) * (y1 - y0):
                            px0, py0, px1, py1, pa, ppeak = part
                            work.append((int(bx + px0), int(by + py0), int(bx + px1), int(by + py1)))
                            areas.append(pa)
                            confs.append(min(1.0, ppeak / (3.0 * thr)))
            work.append((int(x0), int(y0), int(x1), int(y1)))
            areas.append(int(area))
            confs.append(min(1.0, peak / (3.0 * thr)))
        if far and work:
            # the longest vehicle in working pixels, from the GSD at the centre: refreshed when a
            # sensor model appears or goes, and every 30 frames (a ground intersection costs ~1 ms)
            if self._max_px is None or (self._max_px[0] is None) != (slot.sensor is None) or \
                    slot.index - self._max_px[2] >= 30:
                gh, gw = slot.grey.shape
                gsd = self._gsd(slot.sensor, np.array([[gw / 2 * s - 1, gh / 2 * s - 1, gw / 2 * s + 1,
                                                        gh / 2 * s + 1]]))
                self._max_px = (slot.sensor, (self.cfg.merge_max_m / float(gsd[0, 0]) if gsd is not None
                                              else self.cfg.max_size_px) / s, slot.index)
            max_px = self._max_px[1]
            # ... or along x and y at each blob (`per_box_gsd`)
            each: list[tuple[float, float]] = [(max_px, max_px)] * len(work)
            if self.cfg.per_box_gsd:
                gb = self._gsd_grid(slot, np.array(work, np.float64) * s, axes=True)
                if gb is not None:
                    each = [(self.cfg.merge_max_m / float(gx) / s, self.cfg.merge_max_m / float(gy) / s) for gx, gy in gb]
            kept = [(i, self._far_box(slot, far, b, diff, low, work, each[i])) for i, b in enumerate(work)]
            # fragments grown into one car: keep the first, drop the rest (same box, or inside it)
            grown = [g for i, g in kept if g is not None and g != work[i]]
            kept = [(i, g) for j, (i, g) in enumerate(kept) if g is not None and not any(
                o != g and o[0] <= g[0] and o[1] <= g[1] and g[2] <= o[2] and g[3] <= o[3] for o in grown)
                and g not in [h for _i, h in kept[:j]]]
            work = [g for _i, g in kept if g is not None]
            areas = [areas[i] for i, g in kept if g is not None]
            confs = [confs[i] for i, g in kept if g is not None]
            if self._startup and self.cfg.startup_join_m > 0 and slot.sensor is not None and len(work) > 1:
                work, areas, confs = self._join_strips(work, areas, confs, max_px)
        boxes = [(x0 * s + e, y0 * s + e, x1 * s - e, y1 * s - e) for x0, y0, x1, y1 in work]
        xyxy = np.array(boxes, np.float64).reshape(-1, 4)
        conf = np.array(confs, np.float32)
        area_px = np.array(areas, np.int64)
        if self.cfg.merge_m > 0 and len(xyxy) > 1:
            xyxy, conf, area_px = self._merge(slot, xyxy, conf, area_px)
        bw_px, bh_px = xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]
        longest_px, shortest_px = np.maximum(bw_px, bh_px), np.minimum(bw_px, bh_px)
        keep = (area_px * s * s >= self.cfg.min_area_px) & (shortest_px >= 1.5)
        keep &= longest_px <= self.cfg.max_aspect * shortest_px  # no lines, edge strips, text strokes
        gsd = self._gsd_grid(slot, xyxy[keep]) if keep.any() else None
        if gsd is not None:
            longest_m = longest_px[keep] * gsd
            lo = max(self.cfg.min_size_m, self.cfg.startup_min_m) if self._startup else self.cfg.min_size_m
            keep[keep] = (longest_m >= lo) & (longest_m <= self.cfg.max_size_m)
        else:
            keep &= longest_px <= self.cfg.max_size_px
        return Detections(xyxy=xyxy[keep].astype(np.float32), confidence=conf[keep],
                          class_id=np.zeros(int(keep.sum()), np.int64), frame_index=slot.index, pts=slot.pts)

    def _merge(self, slot: _Slot, xyxy: npt.NDArray[np.float64], conf: npt.NDArray[np.float32],
               area: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """Union boxes whose gap is < merge distance while the union stays vehicle-sized. O(n^2)
        per pass over a frame's few blobs."""
        h, w = slot.grey.shape
        s = self._scale_work
        centre = np.array([[w * s / 2 - 1, h * s / 2 - 1, w * s / 2 + 1, h * s / 2 + 1]])
        gsd = self._gsd(slot.sensor, centre)
        gap, longest = ((self.cfg.merge_m / float(gsd[0, 0]), self.cfg.merge_max_m / float(gsd[0, 0])) if gsd is not None
                        else (self.cfg.merge_px, float(self.cfg.max_size_px)))
        boxes, ar, cs = _union_pairs([tuple(b) for b in xyxy], list(area), list(conf), gap,
                                     lambda _a, _b, u: max(u[2] - u[0], u[3] - u[1]) <= longest)
        return (np.array(boxes, np.float64).reshape(-1, 4), np.array(cs, np.float32),
                np.array(ar, np.int64))

    @staticmethod
    def _faint_partner(sub: U8, box: tuple[int, int, int, int], low: float) -> tuple[int, ...] | None:
        """A faint mover merged into a bright one's blob (they touch at a crossing): the biggest
        connected part of the blob's weak change outside the bright box grown by 1 px, as
        (x0, y0, x1, y1, area, peak) in `sub` pixels, or None. O(blob pixels)."""
        rest = (sub >= low).astype(np.uint8)
        x0, y0, x1, y1 = box
        rest[max(0, y0 - 1):y1 + 1, max(0, x0 - 1):x1 + 1] = 0
        n, labels, st, _c = cv2.connectedComponentsWithStats(rest, connectivity=8)
        if n < 2:
            return None
        j = 1 + int(np.argmax(st[1:, cv2.CC_STAT_AREA]))
        x, y, w, h, a = (int(v) for v in st[j])
        peak = int(sub[labels == j].max())
        return (x, y, x + w, y + h, a, peak)

    def _gsd_grid(self, slot: _Slot, xyxy: npt.NDArray[np.float64], axes: bool = False) -> npt.NDArray[np.float64] | None:
        """GSD at each box centre from a 5x5 grid over the frame, computed once per `gsd_every`
        frames (a ground intersection costs ~1 ms; the size gate needs metres to ~10 %, and the
        GSD changes with zoom and range over seconds, not frames). `axes`: [N, 2], metres per pixel
        along the picture's x and y (an oblique view foreshortens y), else [N] (their geometric mean)."""
        g = self._gsd_cache
        if slot.sensor is None:
            return None
        if g is None or slot.index - g[0] >= self.cfg.gsd_every or slot.index < g[0]:
            h, w = slot.grey.shape
            s = self._scale_work
            us, vs = np.meshgrid((np.arange(5) + 0.5) * w * s / 5, (np.arange(5) + 0.5) * h * s / 5)
            c = np.stack([us.ravel() - 1, vs.ravel() - 1, us.ravel() + 1, vs.ravel() + 1], 1)
            grid = self._gsd(slot.sensor, c)
            self._gsd_cache = g = (slot.index, None if grid is None else grid.reshape(5, 5, 3), w * s, h * s)
        if g[1] is None:
            return None
        iu = np.clip(((xyxy[:, 0] + xyxy[:, 2]) / 2 / g[2] * 5).astype(int), 0, 4)
        iv = np.clip(((xyxy[:, 1] + xyxy[:, 3]) / 2 / g[3] * 5).astype(int), 0, 4)
        return np.asarray(g[1][iv, iu, 1:] if axes else g[1][iv, iu, 0], np.float64)

    @staticmethod
    def _gsd(sensor: Any, xyxy: npt.NDArray[np.float64]) -> npt.NDArray[np.float64] | None:
        """[N, 3] metres per full-resolution pixel at each box centre: the geometric mean, then along
        the picture's x, then along its y (an oblique view foreshortens y); one vectorised ground
        intersection for all boxes. None without a usable sensor model."""
        if sensor is None or len(xyxy) == 0:
            return None
        from kestrel.geo.geodesy import geodetic_to_ecef

        u = (xyxy[:, 0] + xyxy[:, 2]) / 2
        v = (xyxy[:, 1] + xyxy[:, 3]) / 2
        uv = np.concatenate([np.stack([u - 0.5, v], 1), np.stack([u + 0.5, v], 1),
                             np.stack([u, v - 0.5], 1), np.stack([u, v + 0.5], 1)])
        try:
            g = np.asarray(sensor.pixels_to_ground(uv), np.float64)
        except Exception:  # a model that cannot answer here: fall back to the pixel gate
            return None
        if not np.isfinite(g).all():
            return None
        p = geodetic_to_ecef(g[:, 0], g[:, 1], g[:, 2]).reshape(4, -1, 3)
        area = np.linalg.norm(np.cross(p[1] - p[0], p[3] - p[2]), axis=-1)
        gsd = np.sqrt(area)
        if not np.all(gsd > 0):
            return None
        return np.stack([gsd, np.linalg.norm(p[1] - p[0], axis=-1), np.linalg.norm(p[3] - p[2], axis=-1)], 1)

