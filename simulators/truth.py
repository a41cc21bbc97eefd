"""Ground truth of a simulated specimen: where its neurons are and how active, at any time.

Positions are given in the frame of the camera image at the world's stage position, the
way the neuron analysis reports detections: y and x in µm from the centre of the frame's
first pixel, z in µm of stage focus. That makes detections and truth directly comparable.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .phantoms import worm
from .world import SimWorld


def neuron_truth(world: SimWorld, t_s: float, margin_um: float = 0.0) -> dict[str, np.ndarray]:
    """Neurons inside the field of view at specimen time ``t_s``: ``id``, ``z_um``, ``y_um``,
    ``x_um`` and ``brightness`` (photons/ms at the reference power, activity included).

    ``margin_um``: also drop neurons this close to the frame's edge (half cut off there).
    """
    em = world.phantom.emitters
    fov = world.field_of_view_at(t_s)
    h, w = fov.shape
    p = fov.pixel_size_um
    x = em.xyz[:, 0] - fov.center_xy_um[0] + (w - 1) / 2 * p
    y = em.xyz[:, 1] - fov.center_xy_um[1] + (h - 1) / 2 * p
    inside = (
        (x >= margin_um) & (x <= (w - 1) * p - margin_um) & (y >= margin_um) & (y <= (h - 1) * p - margin_um)
    )
    ids = np.flatnonzero(inside)
    return {
        "id": ids,
        "z_um": em.xyz[ids, 2],
        "y_um": y[ids],
        "x_um": x[ids],
        "brightness": em.brightness_at(t_s)[ids],
    }


def stack_neurons(
    spec: dict[str, Any], shape: tuple[int, int], z_span_um: tuple[float, float], margin_um: float = 0.0
) -> dict[str, np.ndarray]:
    """The true neurons of a simulated worm stack pair (its ``PairSpec`` as a dict: seed, xy_um,
    time_s) inside the field and the stack's z span, as :func:`neuron_truth` gives them."""
    world = SimWorld(worm(seed=int(spec["seed"])), sensor_shape=(int(shape[0]), int(shape[1])), seed=0)
    world.xy_um = tuple(spec.get("xy_um", (0.0, 0.0)))
    truth = neuron_truth(world, float(spec.get("time_s", 0.0)), margin_um)
    keep = (truth["z_um"] >= z_span_um[0]) & (truth["z_um"] <= z_span_um[1])
    return {k: v[keep] for k, v in truth.items()}


def worm_truth(
    spec: dict[str, Any], shape: tuple[int, int], z_span_um: tuple[float, float], margin_um: float = 0.0
) -> dict[str, np.ndarray] | None:
    """The simulator's truth provider (entry-point group ``mm_deepz.truth``): :func:`stack_neurons` for
    a stack pair of a simulated worm, None for any other specimen."""
    if spec.get("phantom") != "worm" or "seed" not in spec:
        return None
    return stack_neurons(spec, shape, z_span_um, margin_um)
