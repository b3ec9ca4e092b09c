"""The seed's hand-held variation of a camera path: a slow sway, a breathing zoom and, on paths
that ask for it, a slight roll. Smooth and periodic over the clip (whole cycles), so a loop
closes with matching velocity; the same seed always gives the same variation."""

from __future__ import annotations

import math

import numpy as np

# The seed's hand-held variation at strength 1: a slow sway of the window's centre (base-window
# units, the sum of one- and two-cycle sines with seeded phases and weights) and a breathing of
# the zoom. Strength scales it like the preset, so strength 0 stays a still frame. Whole cycles
# over the clip, so a loop closes with matching velocity.
DRIFT_X = 0.05
DRIFT_Y = 0.035
DRIFT_ZOOM = 0.025
# And a slight roll of the window about its centre (radians at strength 1: 1 degree), on paths
# made with `roll=True`: a rolled frame costs more (`affine`, `rolling.rolled`).
DRIFT_ROLL = math.radians(1.0)


def _wave(rng: np.random.Generator, t: np.ndarray) -> tuple[np.ndarray, float]:
    """One seeded sum of one- and two-cycle sines at times `t`, and the norm that keeps it
    within [-1, 1] (the sum of its weights)."""
    weights = rng.uniform(0.4, 1.0, 2) * rng.choice((-1.0, 1.0), 2)
    phases = rng.uniform(0.0, 2.0 * np.pi, 2)
    wave = sum(
        w * np.sin(2.0 * np.pi * k * t + p) for k, w, p in zip((1, 2), weights, phases, strict=True)
    )
    return np.asarray(wave), float(np.sum(np.abs(weights)))


def drift(seed: int, strength: float, t: np.ndarray) -> tuple[np.ndarray, ...]:
    """The seed's sway and breathing (dx, dy, zoom factor) at times `t`."""
    rng = np.random.default_rng(seed)
    out = []
    for amplitude in (DRIFT_X, DRIFT_Y, DRIFT_ZOOM):
        wave, norm = _wave(rng, t)
        out.append(amplitude * strength * wave / norm)
    dx, dy, dz = out
    return dx, dy, 1.0 + dz


def drift_roll(seed: int, strength: float, t: np.ndarray) -> np.ndarray:
    """The seed's roll (radians) at times `t`."""
    rng = np.random.default_rng((seed, 1))  # its own stream: `drift`'s stays what it was
    wave, norm = _wave(rng, t)
    return np.asarray(DRIFT_ROLL * strength * wave / norm)
