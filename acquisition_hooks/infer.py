"""``mm-deepz infer``: make a run's virtual stacks after the fact, from its measured planes.

What a run could not make (the model was slower than the camera and the run was interrupted
before its backlog was made, a kill, a full disk since freed, a run with the model left out)
is made from the anchor planes on disk; the container then reads as if the run had made them.
Measured planes whose record update failed (a full disk) are found by their chunk files and
recorded first.
With another model than the run's, the stacks go to a new image ``virtual_<model>`` beside the
run's, recorded with that model's name, checksum and card, so two models can be compared on
the same measured planes. Each stack is marked complete as it is written: an interrupted
``infer`` goes on where it stopped.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mm_deepz.engine import Predictor
from mm_deepz.errors import DeepZError, StorageError
from mm_deepz.io import Recorder, record_key_parts
from mm_deepz.modelfile import DeepZModel, load_model

from .plan import DeepZPlan

logger = logging.getLogger(__name__)


@dataclass
class InferSummary:
    """What ``infer`` did."""

    image: str
    made: int
    already: int
    seconds: float
    #: measured time points found on disk but missing from the record (now recorded)
    recovered: int = 0
    #: time points whose measured planes could not be read (a damaged chunk), and why
    unreadable: dict[str, str] = field(default_factory=dict)
    #: files among the measured chunks that no run writes, left as they are
    ignored: list[str] = field(default_factory=list)


def image_for_model(attrs: dict[str, Any], model: DeepZModel) -> str:
    """The image ``model``'s stacks go to in a run with root attributes ``attrs``: ``virtual`` for the
    run's own model, else ``virtual_<model name>`` (with its checksum where that name is another's)."""
    if model.sha256 == (attrs.get("model") or {}).get("sha256"):
        return "virtual"
    stem = re.sub(r"[^A-Za-z0-9_-]", "_", Path(model.path or "model").stem)
    name = f"virtual_{stem}"
    models = attrs.get("virtual_models", {})
    if name in models and models[name]["sha256"] != model.sha256:
        name = f"virtual_{stem}_{str(model.sha256)[:8]}"
    return name


def _add_image_for(recorder: Recorder, model: DeepZModel) -> str:
    """:func:`image_for_model`, added to the run (and its model recorded) where it is new."""
    name = image_for_model(recorder.attrs, model)
    if name not in recorder.completed:
        recorder.add_image(name)
        models = recorder.attrs.get("virtual_models", {})
        recorder.update_attrs(
            virtual_models={
                **models,
                name: {"path": str(model.path), "sha256": model.sha256, "card": model.card.to_json()},
            }
        )
    return name


def deepz_time_points(record: dict[str, Any]) -> list[tuple[int, int]]:
    """The (time point, position) pairs of a run's record whose measured planes are the Deep-Z input
    planes (not full stacks measured with virtual z-stacking off, not time points with an anchor
    rejected)."""
    try:
        anchors = list(DeepZPlan(**record["plan"]).anchor_indices())
    except (KeyError, TypeError, ValueError, DeepZError):  # no Deep-Z plan (a pairs dataset, another tool's)
        return []
    return sorted(record_key_parts(k) for k, planes in record["planes_measured"].items() if planes == anchors)


def stacks_to_make(record: dict[str, Any], image: str = "virtual") -> list[tuple[int, int]]:
    """The Deep-Z time points (t, position) whose stack in ``image`` is not complete: what ``mm-deepz
    infer`` makes (the backlog, stacks the model failed or was making when the run was killed)."""
    done = set((record.get("completed") or {}).get(image, []))
    return [(t, p) for t, p in deepz_time_points(record) if t not in done]


def run_model(attrs: dict[str, Any], model_path: Path | None = None) -> DeepZModel:
    """``model_path``'s model, or by default the one the run with root attributes ``attrs`` recorded."""
    if model_path is None:
        model_path = Path((attrs.get("model") or {}).get("path") or "")
        if not model_path.is_file():
            raise DeepZError(
                f"The run's model file {str(model_path) or '(none recorded)'} is not here: give one with "
                "--model."
            )
    return load_model(model_path)


def infer_missing(
    path: Path,
    model_path: Path | None = None,
    device: str = "auto",
    progress: Callable[[int, int], None] | None = None,
    time_points: Collection[int] | None = None,
    wait_s: float = 0.0,
) -> InferSummary:
    """Make every virtual stack of the run at ``path`` that is not on disk yet (see the module doc).

    ``time_points``: only those (a batch's share of a run; None: all, with the measured planes a failed
    record update left out). ``wait_s``: how long to wait for another writer of the run to let it go.
    """
    recorder = Recorder.reopen(path, wait_s)
    try:
        attrs = recorder.attrs
        plan = DeepZPlan(**attrs["plan"])
        model = run_model(attrs, model_path)
        model.check_compatible(
            pixel_size_um=recorder.geometry.pixel_size_um, plane_offsets_um=plan.anchor_z()
        )
        plan.check_range(model.card.z_range_um)
        image = _add_image_for(recorder, model)
        # planes written before a failed record update
        recovered = recorder.recover_measured() if time_points is None else []
        anchors = tuple(plan.anchor_indices())
        record = {**recorder.state, "plan": attrs["plan"]}  # the progress record and the run's plan
        ours = deepz_time_points(record)
        todo = stacks_to_make(record, image)
        if time_points is not None:
            ours = [(t, p) for t, p in ours if t in time_points]
            todo = [(t, p) for t, p in todo if t in time_points]
        already = len(ours) - len(todo)
        predictor = Predictor(model, device)
        t0 = time.perf_counter()
        unreadable: dict[str, str] = {}
        for i, (t, p) in enumerate(todo):
            try:
                planes = recorder.read_planes("measured", t, tuple(anchors), p)
            except StorageError:
                raise
            except Exception as e:  # noqa: BLE001 - a damaged chunk: this time point is skipped, not the rest
                why = f"its measured planes cannot be read ({type(e).__name__}: {e})"
                unreadable[f"t={t}, p={p}"] = why
                recorder.mark_virtual_missing(t, why, p)
                logger.error("Time point %d (position %d): %s; going on with the next", t, p, why)
                continue
            stack = predictor.predict_stack(planes, plan.anchor_z(), plan.requested_z(), out_dtype=np.float32)
            recorder.write_stack(image, t, stack.data, p=p)
            recorder.mark_complete(image, t, p)
            if progress is not None:
                progress(i + 1, len(todo))
        recorder.refresh_collection()  # a killed run's OME-XML still says what its start wrote
        return InferSummary(
            image,
            len(todo) - len(unreadable),
            already,
            time.perf_counter() - t0,
            len(recovered),
            unreadable,
            list(recorder.ignored),
        )
    finally:
        recorder.close()
