"""Pictures for tracker tests: a textured ground and a painted car on it (the tracker holds, follows
back and tells ghosts by looks, so those tests need pictures, not just boxes)."""

from __future__ import annotations

import cv2
import numpy as np


def scene(rng: np.random.Generator) -> np.ndarray:
    """A 400x240 grey ground with fine, random texture."""
    ground = cv2.GaussianBlur(rng.integers(20, 200, (240, 400), dtype=np.uint8), (0, 0), 1.5)
    return np.asarray(ground, np.uint8)


def painted(ground: np.ndarray, x: float, y: float) -> np.ndarray:
    """A copy of `ground` with a 30x14 car (light body, dark windscreen) centred at (x, y)."""
    img = ground.copy()
    x0, y0 = int(round(x - 15)), int(round(y - 7))
    img[y0:y0 + 14, x0:x0 + 30] = 210
    img[y0 + 3:y0 + 11, x0 + 18:x0 + 23] = 40
    return img
