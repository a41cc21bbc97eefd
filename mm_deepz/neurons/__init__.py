"""Neuron analysis: 3D detection, linking into tracks, activity traces, and their scores.

One part of the package used by ``mm-deepz track``, the neuron experiment and ``evaluate``
alike. Detection and linking use trackpy (chosen over laptrack, which links but does not
detect, and btrack, which needs a compiled core and a motion model file; see docs/tracking.md).
"""

from .detect import DetectionConfig, NeuronAnalysisError, detect_neurons
from .score import BANDS, MATCH_UM, band_name, detection_scores, match, pool_detection_scores, tracking_scores
from .track import LinkConfig, link_tracks, traces

__all__ = [
    "BANDS",
    "MATCH_UM",
    "DetectionConfig",
    "LinkConfig",
    "NeuronAnalysisError",
    "band_name",
    "detect_neurons",
    "detection_scores",
    "link_tracks",
    "match",
    "pool_detection_scores",
    "traces",
    "tracking_scores",
]
