"""Birth checks: may a tentative track be confirmed yet? Pure tests on its hits' boxes, each in
its own frame's pixels (where the picture showed them).

Goal (issue 9, false tracks): on the aerial tuning clips most short false tracks left were blobs at
the picture's border that never came into the picture: a blob fixed in the picture while the camera
pans (it "moves" over the ground exactly against the camera), pieces of a car leaving the picture.
A vehicle coming into view moves into the picture. The test never deletes a track: it only waits
(the hits are kept and get the id once it confirms). Worst case: O(hits) per check.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]


def border_gap(xyxy: F64, size: tuple[int, int]) -> F64:
    """[N, 4] distances (px) of each box to the left, top, right and bottom border of a
    `size` = (width, height) picture (negative: the box sticks out)."""
    b = np.asarray(xyxy, np.float64).reshape(-1, 4)
    w, h = size
    return np.stack([b[:, 0], b[:, 1], w - b[:, 2], h - b[:, 3]], axis=1)


def enters(xyxy: F64, size: tuple[int, int], edge_px: float, inward_px: float) -> bool:
    """Is a track whose boxes are `xyxy` (oldest first, each in its frame's pixels) clear of the
    border (its newest box at least `edge_px` inside), or coming into the picture (its newest box's
    centre at least `inward_px` further from the border that box is nearest than its first box's
    centre was: a box cut by the border keeps touching it while the vehicle comes in)?"""
    gaps = border_gap(xyxy, size)
    if len(gaps) == 0 or edge_px <= 0:
        return True
    side = int(np.argmin(gaps[-1]))
    if gaps[-1, side] >= edge_px:
        return True
    b = np.asarray(xyxy, np.float64).reshape(-1, 4)
    c = border_gap(np.concatenate([(b[:, :2] + b[:, 2:]) / 2] * 2, axis=1), size)[:, side]
    return bool(c[-1] - c[0] >= inward_px)
