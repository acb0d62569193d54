"""Tracker: births, coasting, id stability through crossings, ground-mode speed and heading."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kestrel.geo.geodesy import LocalFrame
from kestrel.ped.records import Detections, TrackState
from kestrel.ped.track import Tracker, TrackerConfig
from tests.track_support import painted, scene

FPS = 30.0


def dets(i: int, centres: list[tuple[float, float]], ground: np.ndarray | None = None) -> Detections:
    c = np.array(centres, np.float32).reshape(-1, 2)
    xyxy = np.concatenate([c - [6, 4], c + [6, 4]], axis=1)
    return Detections(xyxy, np.ones(len(c)), np.zeros(len(c)), ground, frame_index=i, pts=i / FPS)


def run(frames: list[Detections], cfg: TrackerConfig | None = None) -> list:
    trk = Tracker(cfg)
    for d in frames:
        trk.update(d)
    return trk.finish()


def test_crossing_targets_keep_their_ids() -> None:
    frames = []
    for i in range(90):
        a = (20 + 3 * i, 100 + 0.2 * i)  # moving right
        b = (290 - 3 * i, 100 + 0.5 * i)  # moving left, passes through `a` around frame 45
        frames.append(dets(i, [a, b]))
    tracks = run(frames)
    assert len(tracks) == 2
    for tr in tracks:
        xs = tr.pixel_history[:, 0]
        assert len(tr.points) == 90
        assert np.all(np.diff(xs) > 0) or np.all(np.diff(xs) < 0)  # never swapped onto the other one


def test_birth_needs_n_of_m_and_clutter_never_confirms() -> None:
    rng = np.random.default_rng(0)
    frames = []
    for i in range(60):
        pts = [(50 + 2 * i, 80.0)]
        if i % 5 in (1, 3):  # the real target is missed 2 frames in 5: still confirmed
            pts = []
        pts += [tuple(rng.uniform(0, 320, 2))]  # one random clutter blob per frame, never repeating
        frames.append(dets(i, pts))
    tracks = run(frames)
    assert len(tracks) == 1
    assert tracks[0].id == 1 and tracks[0].state is TrackState.CONFIRMED


def test_coasting_keeps_the_id_and_long_gaps_end_the_track() -> None:
    frames = []
    for i in range(160):
        gone = 30 <= i < 45 or 60 <= i < 115  # 0.5 s gap (coasted), then a 1.8 s gap (lost)
        frames.append(dets(i, [] if gone else [(40 + 2 * i, 120.0)]))
    tracks = run(frames)
    assert [t.id for t in tracks] == [1, 2]
    assert tracks[0].state is TrackState.LOST
    assert [p.frame_index for p in tracks[0].points] == list(range(30)) + list(range(45, 60))
    assert tracks[1].points[0].frame_index == 115


def test_ground_mode_speed_heading_and_positions() -> None:
    lf = LocalFrame(38.9, -77.0, 0.0)
    frames = []
    truth = []
    for i in range(60):
        e, n = 7.0 * i / FPS, 7.0 * i / FPS  # north-east at 9.9 m/s
        jitter = np.random.default_rng(i).normal(0, 1.0, 2)
        llh = lf.to_geodetic(e + jitter[0], n + jitter[1], 0.0)
        truth.append(lf.to_geodetic(e, n, 0.0))
        frames.append(dets(i, [(100 + i, 100 - i)], np.array([[llh[0], llh[1], 0.0]])))
    trk = Tracker()
    for d in frames:
        trk.update(d)
    assert trk.mode == "ground"
    (tr,) = trk.finish()
    assert tr.speed_mps == pytest.approx(9.9, abs=1.0)
    assert tr.heading_deg == pytest.approx(45.0, abs=5.0)
    g = tr.ground_history
    err = [np.hypot(*(lf.ground_to_enu(a[0], a[1]) - lf.ground_to_enu(b[0], b[1]))) for a, b in zip(g[20:], truth[20:], strict=True)]
    assert np.median(err) < 0.8  # filtered positions beat the 1 m measurement noise


def test_flicker_in_place_never_confirms_but_a_mover_under_a_panning_camera_does() -> None:
    """Parallax-like blobs that jitter in place (relative to the ground) and a blob hopping between
    random places are not movers; a real mover is confirmed even though the camera pans faster
    than the mover moves (the detector's homography tells the tracker how the camera moved)."""
    rng = np.random.default_rng(5)
    frames = []
    pan = 4.0  # px per frame, camera motion
    for i in range(90):
        H = np.array([[1, 0, -pan], [0, 1, 0], [0, 0, 1]], float)  # scene shifts left on screen
        flicker = (200 - pan * i + rng.normal(0, 1.5), 60 + rng.normal(0, 1.5))  # static on the ground
        hopper = tuple(rng.uniform(0, 300, 2))
        mover = (100 - pan * i + 1.5 * i, 150.0)  # 1.5 px/frame relative to the ground
        d = dets(i, [flicker, hopper, mover])
        d.homography = H if i else None
        frames.append(d)
    tracks = run(frames)
    assert len(tracks) == 1
    pts = tracks[0].points
    assert len(pts) >= 80
    for p in pts:  # every point is the mover's
        assert abs((p.xyxy[0] + p.xyxy[2]) / 2 - (100 - pan * p.frame_index + 1.5 * p.frame_index)) < 0.01


def test_empty_frames_and_no_pts() -> None:
    trk = Tracker()
    for i in range(10):
        d = dets(i, [(10 + 3 * i, 10)]) if i % 3 else Detections.empty(i)
        d.pts = None
        trk.update(d)
    assert trk.mode == "pixel"
    assert len(trk.finish()) == 1


def test_records_indexing_and_round_trip() -> None:
    d = Detections(np.array([[0, 0, 4, 2], [10, 10, 20, 30]]), [0.9, 0.2], [1, 2],
                   np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]), frame_index=4, pts=0.5)
    assert len(d) == 2 and d.xyxy.dtype == np.float32 and d.class_id.dtype == np.int64
    strong = d[d.confidence > 0.5]
    assert len(strong) == 1 and strong.class_id.tolist() == [1] and strong.ground.tolist() == [[1.0, 2.0, 3.0]]
    assert strong.frame_index == 4 and strong.pts == 0.5
    np.testing.assert_allclose(d.centers, [[2, 1], [15, 20]])
    np.testing.assert_allclose(d.area, [8, 200])
    assert len(d[1]) == 1 and len(Detections.empty(3)) == 0
    with pytest.raises(ValueError):
        Detections(np.zeros((2, 4)), [1.0], [0, 0])
    tracks = run([dets(i, [(10 + 3 * i, 50)]) for i in range(20)])
    (tr,) = tracks
    back = type(tr).from_dict(tr.to_dict())
    assert back.to_dict() == tr.to_dict()
    assert back.points[3].xyxy == pytest.approx(tr.points[3].xyxy, abs=0.01)
    assert tr.first_seen_pts == 0.0 and tr.last_seen_pts == pytest.approx(19 / FPS)
    assert tr.pixel_history.shape == (20, 4) and np.isnan(tr.ground_history).all()
    assert tr.latest_ground is None and tr.review == "pending" and tr.label == "unknown"


@pytest.mark.parametrize("direction", [1.0, -1.0])
def test_a_braking_cars_partial_blob_is_grown_back_from_its_leading_edge(direction: float) -> None:
    """A motion blob of a slowing car is its leading strip (the rest overlaps where it was): the
    track keeps its own size and grows the box backwards from the edge it moves towards, under
    a panning camera (sizes and velocity are ground-stabilised through the homography)."""
    pan = 3.0
    frames, fronts = [], []
    x = 150.0
    for i in range(70):
        speed = 2.0 if i < 40 else max(0.3, 2.0 - 0.06 * (i - 40))
        x += direction * speed
        length = 30.0 if i < 40 else max(4.0, 30.0 - 1.2 * (i - 40))  # strip shrinks while braking
        front = x - pan * i + direction * 15.0
        box = [front - length, 100.0, front, 112.0] if direction > 0 else [front, 100.0, front + length, 112.0]
        d = Detections(np.array([box]), [1.0], [0], frame_index=i, pts=i / FPS)
        d.homography = np.array([[1, 0, -pan], [0, 1, 0], [0, 0, 1]], float) if i else None
        frames.append(d)
        fronts.append(front)
    (tr,) = run(frames)
    late = [p for p in tr.points if p.frame_index >= 55]
    assert late and all(not p.held for p in late)
    for p in late:
        w = p.xyxy[2] - p.xyxy[0]
        assert w == pytest.approx(30.0, abs=1.0), p
        lead = p.xyxy[2] if direction > 0 else p.xyxy[0]
        assert lead == pytest.approx(fronts[p.frame_index], abs=0.01)  # the leading edge stays put
        assert p.xyxy[3] - p.xyxy[1] == pytest.approx(12.0, abs=0.01)
    raw = run(frames, TrackerConfig(fit_boxes=False))[0]
    assert raw.points[-1].xyxy[2] - raw.points[-1].xyxy[0] < 10  # what the blob alone gives


def test_a_fragment_riding_along_a_confirmed_car_never_becomes_a_track_but_a_second_car_does() -> None:
    """A small blob that keeps a fixed offset from a tracked car (a split-off piece of it) is not
    a new mover; a car of the same size driving the other way past it is."""
    frames = []
    for i in range(90):
        car = (40 + 3 * i, 100.0)
        boxes = [[car[0] - 15, 94, car[0] + 15, 106]]
        if i >= 20:  # the fragment shows up once the car is tracked, 35 px ahead of it, 8x6
            boxes.append([car[0] + 31, 97, car[0] + 39, 103])
        if i >= 30:  # an oncoming car of the same size on the other lane
            boxes.append([330 - 3 * (i - 30) - 15, 124, 330 - 3 * (i - 30) + 15, 136])
        frames.append(Detections(np.array(boxes), np.ones(len(boxes)), np.zeros(len(boxes)), frame_index=i,
                                 pts=i / FPS))
    tracks = run(frames)
    assert len(tracks) == 2
    assert all(abs((p.xyxy[2] - p.xyxy[0]) - 30) < 0.01 for tr in tracks for p in tr.points)
    assert len(run(frames, TrackerConfig(companion_area=0.0))) == 3  # without the test: a third track


def test_a_slow_mover_is_confirmed_within_half_a_second_but_flicker_never() -> None:
    """2 m/s at 0.2 m/px is 10 px/s: confirmed within 0.6 s of its first detection although it has
    not moved its own length (the previous rule waited ~3 s); noise in place never confirms."""
    rng = np.random.default_rng(3)
    frames = []
    for i in range(120):
        slow = (100 + 10 * i / FPS + rng.normal(0, 1.0), 50 + rng.normal(0, 1.0))
        flicker = (250 + rng.normal(0, 1.5), 200 + rng.normal(0, 1.5))
        frames.append(dets(i, [slow, flicker]))
    (tr,) = run(frames)
    assert tr.confirmed_frame is not None and tr.confirmed_frame <= 18
    old = run(frames, TrackerConfig.previous())
    assert len(old) == 1 and old[0].confirmed_frame is not None and old[0].confirmed_frame > 30


def test_a_confirmed_track_does_not_reverse_onto_the_ghost_behind_its_car() -> None:
    """A past-reference change detector leaves a small ghost blob behind a slow car (ground now,
    car in both references). When the car's own blob is missed for a few frames the ghost is the
    only candidate near the track: the track must coast, not jump back onto it (ground mode,
    0.2 m per pixel, as on the aerial clips)."""
    lf = LocalFrame(36.2, -115.9, 0.0)
    frames = []
    for i in range(80):
        cx = 60 + 2 * i
        boxes = [] if 40 <= i < 46 else [[cx - 15, 94, cx + 15, 106]]
        if i >= 30:
            boxes.append([cx - 34, 96, cx - 22, 104])  # the ghost, 28 px behind the car's centre
        b = np.array(boxes, float).reshape(-1, 4)
        llh = [lf.to_geodetic((x1 + x2) / 2 * 0.2, -(y1 + y2) / 2 * 0.2, 0.0) for x1, y1, x2, y2 in b]
        g = np.array([[a[0], a[1], 0.0] for a in llh]).reshape(-1, 3)
        frames.append(Detections(b, np.ones(len(b)), np.zeros(len(b)), g, frame_index=i, pts=i / FPS))
    tracks = run(frames)
    car = tracks[0]
    assert [p.frame_index for p in car.points if not p.held] == [i for i in range(80) if not 40 <= i < 46]
    for p in car.points:
        assert (p.xyxy[0] + p.xyxy[2]) / 2 == pytest.approx(60 + 2 * p.frame_index, abs=0.01)
    old = run(frames, TrackerConfig(behind_boxes=0.0))
    assert any(abs((p.xyxy[0] + p.xyxy[2]) / 2 - (60 + 2 * p.frame_index)) > 20 for p in old[0].points)


def test_a_car_that_stops_is_held_on_its_appearance_and_keeps_its_id() -> None:
    """The detector sees nothing while a car stands (2 s here); the track looks for its own
    patch around where it should be, reports held boxes on the car and takes the car's blobs back
    when it drives on: one track, one id, points on the car all along."""
    ground = scene(np.random.default_rng(7))
    xs = []
    x = 60.0
    for i in range(180):  # 3 m/s (0.2 m/px), brakes at 2.5 m/s² from frame 50, stands, starts again
        v = 0.5 if i < 50 else (max(0.0, 0.5 - 0.014 * (i - 50)) if i < 125 else min(0.5, 0.014 * (i - 125)))
        x += v
        xs.append(x)
    trk = Tracker()
    for i, x in enumerate(xs):
        standing = 60 <= i < 135  # slow or stopped: no blob
        box = np.zeros((0, 4)) if standing else np.array([[x - 15, 113, x + 15, 127]])
        d = Detections(box, np.ones(len(box)), np.zeros(len(box)), frame_index=i, pts=i / FPS)
        trk.update(d, painted(ground, x, 120))
    (tr,) = trk.finish()
    held = [p for p in tr.points if p.held]
    assert {p.frame_index for p in tr.points} == set(range(180))  # not one frame lost
    assert len(held) == 75
    for p in tr.points:
        assert (p.xyxy[0] + p.xyxy[2]) / 2 == pytest.approx(xs[p.frame_index], abs=2.0), p
        assert p.xyxy[2] - p.xyxy[0] == pytest.approx(30, abs=0.5)
    # without the picture: coasting only, the track is lost during the stop and a new one starts
    trk = Tracker()
    for i, x in enumerate(xs):
        box = np.zeros((0, 4)) if 60 <= i < 135 else np.array([[x - 15, 113, x + 15, 127]])
        trk.update(Detections(box, np.ones(len(box)), np.zeros(len(box)), frame_index=i, pts=i / FPS))
    assert len(trk.finish()) == 2


def test_a_hold_never_stays_on_the_ground_a_car_left() -> None:
    """A faint car (its patch is mostly the ground's texture) drives on under cover where the
    detector loses it: the ground it left matches its patch well, but staying there would mean
    stopping dead from 5 m/s; nothing is held there (the hold is a vehicle's, not a patch's)."""
    ground = scene(np.random.default_rng(8))
    for cfg, held_on_ground in ((TrackerConfig(), False), (TrackerConfig(hold_brake=1e6), True)):
        trk = Tracker(cfg)
        for i in range(120):
            x = 40 + 0.8 * i
            box = np.array([[x - 15, 113, x + 15, 127]]) if i < 70 else np.zeros((0, 4))
            img = ground.copy()
            if i < 70:  # the car, 20 grey levels above the ground, then gone under cover
                img[113:127, int(x) - 15:int(x) + 15] += 20
            trk.update(Detections(box, np.ones(len(box)), np.zeros(len(box)), frame_index=i, pts=i / FPS), img)
        (tr,) = trk.finish()
        off = [p for p in tr.points if abs((p.xyxy[0] + p.xyxy[2]) / 2 - (40 + 0.8 * p.frame_index)) > 8.0]
        assert bool(off) is held_on_ground, off[:3]


def test_a_turning_cars_box_takes_its_new_shape() -> None:
    """Boxes are axis-aligned: after a right-angle turn a 30x12 car is 12x30. The size a box is
    grown to comes from boxes seen on the same course, so the new shape is not padded to 30x30."""
    frames = []
    x, y = 50.0, 50.0
    for i in range(90):
        if i < 45:
            x += 1.5
            box = [x - 15, y - 6, x + 15, y + 6]
        else:
            y += 1.5
            box = [x - 6, y - 15, x + 6, y + 15]
        frames.append(Detections(np.array([box]), [1.0], [0], frame_index=i, pts=i / FPS))
    (tr,) = run(frames)
    for p in tr.points:
        if p.frame_index >= 60:
            assert p.xyxy[2] - p.xyxy[0] == pytest.approx(12, abs=0.01), p
            assert p.xyxy[3] - p.xyxy[1] == pytest.approx(30, abs=0.01), p
    padded = run(frames, TrackerConfig(fit_course=math.pi))[0]
    assert max(p.xyxy[2] - p.xyxy[0] for p in padded.points if p.frame_index >= 60) > 25


def _split_car_frames(lf: LocalFrame, gap_px: float) -> list[Detections]:
    """A 40 px car (8 m at 0.2 m/px, ground mode) seen as two blobs, 12 px front and back with a
    blob-less middle `gap_px` long... plus a same-sized car driving the other way (not a part)."""
    gsd = 0.2
    frames = []
    for i in range(60):
        x = 100.0 + 2.0 * i  # 12 m/s
        back, front = [x, 100, x + 12, 110], [x + 12 + gap_px, 100, x + 24 + gap_px, 110]
        other = 420.0 - 2.0 * i
        boxes = [back, front, [other, 140, other + 12, 150]]
        c = np.array([[(b[0] + b[2]) / 2, (b[1] + b[3]) / 2] for b in boxes])
        llh = [lf.to_geodetic(u * gsd, -v * gsd, 0.0) for u, v in c]
        frames.append(Detections(np.array(boxes), np.ones(3), np.zeros(3), np.array([[a, b, 0.0] for a, b, _ in llh]),
                                 frame_index=i, pts=i / FPS))
    return frames


def test_the_front_and_back_blobs_of_one_car_are_one_track_with_the_whole_box() -> None:
    """A car whose middle matches the ground shows as a front and a back blob of the same size
    riding together: one track, boxed over both (not two tracks on halves of it: each half is a
    miss and a false positive). Pieces that would make a vehicle longer than `part_max_m` stay
    apart; a car passing the other way stays a track of its own."""
    lf = LocalFrame(38.9, -77.0, 0.0)
    frames = _split_car_frames(lf, gap_px=16.0)  # whole car 40 px = 8 m
    tracks = run(frames)
    assert len(tracks) == 2, [tr.points[0].xyxy for tr in tracks]
    car = min(tracks, key=lambda tr: tr.points[0].xyxy[1])
    late = [p for p in car.points if p.frame_index >= 15]
    assert late and all(p.xyxy[2] - p.xyxy[0] == pytest.approx(40.0, abs=0.01) for p in late)
    assert len(run(frames, TrackerConfig(part_max_m=0.0))) == 3  # without parts: the halves are two tracks
    assert len(run(_split_car_frames(lf, gap_px=60.0))) == 3  # 84 px = 17 m: two vehicles


def test_a_track_gathers_the_pieces_of_its_car_into_one_box_of_its_size() -> None:
    """A tracked 30 px car later seen as a big back blob and a small front blob with a gap: the
    track takes the back one (nearest its prediction) and gathers the front one (their union
    stays within its size), so the box is the whole car, not the back blob grown further back."""
    frames, xs = [], []
    for i in range(60):
        x = 100.0 + 3.0 * i  # car centre; 30 x 12 px
        xs.append(x)
        if i < 30:
            boxes = [[x - 15, 100, x + 15, 112]]
        else:
            boxes = [[x - 15, 100, x + 3, 112], [x + 7, 101, x + 15, 111]]
        frames.append(Detections(np.array(boxes), np.ones(len(boxes)), np.zeros(len(boxes)), frame_index=i,
                                 pts=i / FPS))
    (tr,) = run(frames)
    split = [p for p in tr.points if p.frame_index >= 30]
    assert len(split) == 30
    for p in split:
        assert p.xyxy[0] == pytest.approx(xs[p.frame_index] - 15, abs=0.01), p
        assert p.xyxy[2] == pytest.approx(xs[p.frame_index] + 15, abs=0.01), p
    (off,) = run(frames, TrackerConfig(gather_slack=0.0))  # without: the back blob grown backwards
    assert all(p.xyxy[0] < xs[p.frame_index] - 25 for p in off.points if p.frame_index >= 35)


def test_a_piece_whose_track_lost_its_blob_is_a_mover_of_its_own() -> None:
    """The companion test needs a host that is being seen: when the big blob vanishes (the track
    coasts on a stale position) the small one riding with it is what is left of the vehicle and
    is confirmed within `companion_seen_s` plus the birth test, not after the coast runs out."""
    frames = []
    for i in range(90):
        x = 40.0 + 3.0 * i
        boxes = [[x - 15, 94, x + 15, 106]] if i < 40 else []
        if i >= 10:
            boxes.append([x + 31, 97, x + 39, 103])  # rides 35 px ahead, 8 x 6
        frames.append(Detections(np.array(boxes).reshape(-1, 4), np.ones(len(boxes)), np.zeros(len(boxes)),
                                 frame_index=i, pts=i / FPS))
    tracks = run(frames)
    assert len(tracks) == 2
    assert tracks[1].confirmed_frame is not None and 40 < tracks[1].confirmed_frame <= 40 + 15 + 6
    stale = run(frames, TrackerConfig(companion_seen_s=math.inf))
    assert len(stale) == 1 or stale[1].confirmed_frame >= 40 + 45  # held back until the coast ran out


def test_a_short_track_on_static_texture_is_not_held_where_it_vanished() -> None:
    """A false mover (a box sliding over static texture for half a second) that the detector then
    drops matches its own patch where it stands: it is not a car seen driving before a stop, so it
    is not held there (`hold_min_seen_s`); a car seen for longer is (see the stop test above)."""
    ground = scene(np.random.default_rng(9))
    frames = []
    for i in range(60):
        x = 100 + 0.5 * i
        box = np.array([[x - 15, 113, x + 15, 127]]) if i < 15 else np.zeros((0, 4))
        frames.append(Detections(box, np.ones(len(box)), np.zeros(len(box)), frame_index=i, pts=i / FPS))
    for cfg, held in ((TrackerConfig(), 0), (TrackerConfig(hold_min_seen_s=0.0), 1)):
        trk = Tracker(cfg)
        for d in frames:
            trk.update(d, ground)
        (tr,) = trk.finish()
        assert (sum(p.held for p in tr.points) > 0) == bool(held), cfg.hold_min_seen_s


def test_a_knot_of_nested_blobs_starts_no_track_but_a_car_touching_a_fragment_does() -> None:
    """Where the MTI loses the ground's registration it reports knots of nested and overlapping
    blobs that drift together; a box overlapping two or more others of its frame neither starts
    nor confirms a track (`knot_overlaps`). A car whose box touches one fragment is still a car."""
    frames = []
    for i in range(60):
        car = [40 + 3 * i - 15, 94, 40 + 3 * i + 15, 106]
        frag = [40 + 3 * i + 12, 100, 40 + 3 * i + 20, 108]  # overlaps the car only
        k = 200 + 1.5 * i  # the knot: one big blob with two smaller ones inside, drifting together
        knot = [[k - 40, 150, k + 40, 230], [k - 20, 160, k + 10, 200], [k - 5, 190, k + 25, 220]]
        boxes = np.array([car, frag, *knot], float)
        frames.append(Detections(boxes, np.ones(len(boxes)), np.zeros(len(boxes)), frame_index=i, pts=i / FPS))
    tracks = run(frames)
    assert len(tracks) == 1 and tracks[0].points[-1].xyxy[1] == pytest.approx(94.0)
    assert len(run(frames, TrackerConfig(knot_overlaps=0))) > 1  # without the rule: tracks on the knot


def test_a_piece_left_where_a_knot_was_starts_no_track_but_a_later_car_there_does() -> None:
    """The knot's last pieces drift on alone for a few frames after it breaks up: a detection whose
    centre lies where a knot was within `knot_memory_s` starts no track either (the knot's box is
    carried with the camera). A car driving through that place a second later is tracked."""
    pan = 2.0
    frames = []
    for i in range(90):
        shift = -pan * i  # the camera pans: the ground moves left in the picture
        boxes = []
        if i < 10:  # a knot over ground x 180..260 (picture x shifts with the pan)
            boxes += [[180 + shift, 150, 260 + shift, 230], [200 + shift, 160, 230 + shift, 200],
                      [215 + shift, 190, 245 + shift, 220]]
        elif i < 25:  # one piece drifting on inside the knot's place
            x = 215 + 0.8 * (i - 10) + shift
            boxes.append([x, 180, x + 14, 192])
        if i >= 45:  # a car through the same place 1.5 s later
            x = 120 + 4.0 * (i - 45) + shift
            boxes.append([x, 176, x + 30, 188])
        d = Detections(np.array(boxes, float).reshape(-1, 4), np.ones(len(boxes)), np.zeros(len(boxes)), frame_index=i,
                       pts=i / FPS)
        d.homography = np.array([[1, 0, -pan], [0, 1, 0], [0, 0, 1]], float) if i else None
        frames.append(d)
    tracks = run(frames)
    assert len(tracks) == 1 and tracks[0].points[0].frame_index >= 45  # the car only
    assert len(run(frames, TrackerConfig(knot_memory_s=0.0))) == 2  # without the memory: the piece too



def test_back_fill_starts_the_track_where_the_car_came_into_view() -> None:
    """The camera pans 4 px per frame onto new ground; a car (1 px per frame the other way on the
    ground) comes into view at frame 24, but the detector first reports it at frame 45 (no older
    frame saw that ground) and loses it for a few frames later. Once the track has been seen long
    enough, its look is followed back through the camera motion: held points on the car from frame
    24, and through the gap (linked back to its last point); none without back-fill."""
    tile = scene(np.random.default_rng(11))
    ground = np.concatenate([tile, tile[::-1], tile[:, ::-1]], axis=1)  # 1200 px wide: room to pan
    seen_from, gap, shift = 45, range(70, 79), np.array([[1.0, 0.0, -4.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    for cfg, first in ((TrackerConfig(), 24), (TrackerConfig(back_s=0.0), seen_from)):
        trk = Tracker(cfg)
        for i in range(95):
            sx = 500.0 - 5.0 * i  # on screen: ground x 500 - i, camera at 4 i
            img = painted(ground[:, 4 * i:4 * i + 400], sx, 120.0)
            seen = i >= seen_from and i not in gap
            box = np.array([[sx - 15, 113, sx + 15, 127]]) if seen else np.zeros((0, 4))
            trk.update(Detections(box, np.ones(len(box)), np.zeros(len(box)), frame_index=i, pts=i / FPS,
                                  homography=None if i == 0 else shift), img)
        (tr,) = trk.finish()
        frames = [p.frame_index for p in tr.points]
        assert frames == sorted(frames)
        assert frames[0] == first, frames[:5]
        for p in tr.points:
            assert (p.xyxy[0] + p.xyxy[2]) / 2 == pytest.approx(500.0 - 5.0 * p.frame_index, abs=2.0), p
        filled = {p.frame_index for p in tr.points if p.held}
        if cfg.back_s > 0:
            assert set(range(first, seen_from)) | set(gap) <= filled
        else:
            assert not filled & (set(range(seen_from)) | set(gap))


def test_back_fill_without_pictures_after_a_gap() -> None:
    """Frames without a picture (a corrupt stretch) empty the back-fill's memory: a track confirmed
    right then has nothing to follow back, and the run goes on."""
    tile = scene(np.random.default_rng(12))
    ground = np.concatenate([tile, tile[::-1], tile[:, ::-1]], axis=1)
    shift = np.array([[1.0, 0.0, -4.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    trk = Tracker()
    for i in range(80):
        sx = 500.0 - 5.0 * i
        img = painted(ground[:, 4 * i:4 * i + 400], sx, 120.0) if i < 47 else None
        box = np.array([[sx - 15, 113, sx + 15, 127]]) if i >= 44 else np.zeros((0, 4))
        trk.update(Detections(box, np.ones(len(box)), np.zeros(len(box)), frame_index=i, pts=i / FPS,
                              homography=None if i == 0 else shift), img)
    (tr,) = trk.finish()
    assert not any(p.held for p in tr.points) and tr.points[0].frame_index == 44
