"""Shared fixtures: simulated microscopes on specimens never used for training (seeds >= 100)."""

from __future__ import annotations

import os

import pytest

import simulators as sim
from mm_deepz.bridge import start_simulator

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # the panel's tests need no display


@pytest.fixture
def world() -> sim.SimWorld:
    """A 128x128 worm field (seed 101): small frames keep the tests fast."""
    return sim.SimWorld(sim.worm(seed=101), sensor_shape=(128, 128), seed=101)


@pytest.fixture
def core(world: sim.SimWorld):
    """A UniMMCore running the simulated microscope from its .cfg file."""
    c = sim.load_demo_core(world)
    yield c
    c.unloadAllDevices()


@pytest.fixture
def pycro(world: sim.SimWorld):
    """The simulator registered as pycromanager's (Python-backend) core."""
    with start_simulator(world) as session:
        yield session
