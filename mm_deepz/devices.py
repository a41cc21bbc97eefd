"""The compute devices a user may name (``--device``), checked without loading torch."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

#: the device names besides ``cuda:N``
DEVICES = ("auto", "cpu", "cuda")


def device_problem(requested: str) -> str | None:
    """What is wrong with a device name (None: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``)."""
    if requested in DEVICES or re.fullmatch(r"cuda:\d+", requested):
        return None
    return f"Unknown device {requested!r}: use auto, cpu, cuda or cuda:N (the N-th GPU, from 0)"


def _known(name: str) -> str:
    if (problem := device_problem(name)) is not None:
        raise ValueError(problem)
    return name


#: a device name in a validated configuration (training, acquisition), refused by :func:`device_problem`
Device = Annotated[str, AfterValidator(_known)]
