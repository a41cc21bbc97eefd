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
def session():
    """A small (64x64), still worm (seed 103, no activity) as pycromanager's core: fast runs whose
    pixels do not depend on when they are taken (test_acquisition has its own)."""
    world = sim.SimWorld(sim.worm(seed=103, activity=False), sensor_shape=(64, 64), seed=103)
    with start_simulator(world) as s:
        yield s


@pytest.fixture
def pycro(world: sim.SimWorld):
    """The simulator registered as pycromanager's (Python-backend) core."""
    with start_simulator(world) as session:
        yield session
