"""A ready Micro-Manager core on the simulated microscope."""

from __future__ import annotations

import logging
import os
from importlib.resources import files
from pathlib import Path

from pymmcore_plus.experimental.unicore import UniMMCore

from .world import SimWorld, use_world

logger = logging.getLogger(__name__)

#: pymmcore-plus's environment variable choosing its event backend (qt / psygnal)
PYMM_SIGNALS_BACKEND = "PYMM_SIGNALS_BACKEND"

#: The simulated microscope's Micro-Manager configuration file (shipped with the package).
DEMO_CONFIG = Path(str(files("simulators") / "demo.cfg"))


#: the device classes a configuration can name on "#py pyDevice,<label>,simulators.devices,<class>" lines
PY_DEVICES = ("SimCamera", "SimZStage", "SimXYStage", "SimLightSource", "SimLightPath", "SimObjective")


class ConfigError(ValueError):
    """A Micro-Manager configuration file that does not load (unknown device, bad line)."""


class SimCore(UniMMCore):
    """``UniMMCore`` completed for an all-Python microscope.

    pymmcore-plus 0.18's ``UniMMCore`` leaves two MMCore duties to C++ devices; this
    class does them for Python devices too:

    - AutoShutter: open the shutter around snaps and sequence acquisitions;
    - the current pixel-size configuration, matched against Python device properties.

    It needs no Micro-Manager installation, so the search for one (which logs an error
    when none is found) is silenced. Its events are always psygnal's: the simulator is driven
    from acquisition threads, also inside a Qt application (the panel), where pymmcore-plus
    would otherwise pick Qt signals owned by whichever thread made the core.
    """

    def __init__(self) -> None:
        mm_logger = logging.getLogger("pymmcore-plus")
        level = mm_logger.level
        backend = os.environ.get(PYMM_SIGNALS_BACKEND)
        mm_logger.setLevel(logging.CRITICAL)
        os.environ[PYMM_SIGNALS_BACKEND] = "psygnal"
        try:
            super().__init__()
        finally:
            mm_logger.setLevel(level)
            if backend is None:
                del os.environ[PYMM_SIGNALS_BACKEND]
            else:
                os.environ[PYMM_SIGNALS_BACKEND] = backend

    def getCurrentPixelSizeConfig(self, cached: bool = False) -> str:  # type: ignore[override]
        if current := super().getCurrentPixelSizeConfig(cached):
            return current
        for res in self.getAvailablePixelSizeConfigs():
            settings = self.getPixelSizeConfigData(res)
            if all(self.getProperty(dev, prop) == value for dev, prop, value in settings):
                return res
        return ""

    def getPixelSizeUm(self, cached: bool = False) -> float:  # type: ignore[override]
        if not (res := self.getCurrentPixelSizeConfig(cached)):
            return 0.0
        camera = self.getCameraDevice()
        binning = float(self.getProperty(camera, "Binning")) if camera else 1.0
        return self.getPixelSizeUmByID(res) * binning / self.getMagnificationFactor()

    def _auto_shutter(self, open_: bool) -> None:
        shutter = self.getShutterDevice()
        if shutter and self.getAutoShutter() and self.isPyDevice(shutter):
            self.setShutterOpen(shutter, open_)

    def _do_snap_image(self) -> None:
        self._auto_shutter(True)
        try:
            super()._do_snap_image()
        finally:
            self._auto_shutter(False)

    def _start_sequence(self, cam, n_images, stop_on_overflow) -> None:  # type: ignore[no-untyped-def]
        self._auto_shutter(True)
        super()._start_sequence(cam, n_images, stop_on_overflow)

    def _stop_acquisition_thread(self, timeout: float | None = 2) -> None:
        super()._stop_acquisition_thread(timeout)
        self._auto_shutter(False)


def load_demo_core(world: SimWorld | None = None, config: str | Path = DEMO_CONFIG,
                   core: UniMMCore | None = None) -> UniMMCore:
    """Load the simulated microscope into a core and return it.

    Args:
        world: the specimen and optics to simulate (default: a fresh worm, seed 0).
        config: the Micro-Manager configuration file to load.
        core: an existing (e.g. pycromanager-adapted) core to load into; default a new
            :class:`SimCore`.
    """
    world = world or SimWorld()
    core = core if core is not None else SimCore()
    path = Path(config)
    if not path.is_file():
        raise FileNotFoundError(f"Micro-Manager configuration file not found: {path}")
    with use_world(world):
        try:
            core.loadSystemConfiguration(str(path))
        except RuntimeError as e:
            raise ConfigError(
                f"Could not load the microscope configuration {path}: {e}\nCompare its device lines with "
                f"{DEMO_CONFIG} (Python devices: {', '.join(PY_DEVICES)})."
            ) from e
    # the calibration must describe the simulated optics, whatever the file says
    for res in core.getAvailablePixelSizeConfigs():
        core.setPixelSizeUm(res, world.optics.pixel_size_um)
    core.sim_world = world  # type: ignore[attr-defined]
    logger.info("Simulated microscope loaded from %s (%s)", path, world.phantom.name)
    return core


def world_of(core: UniMMCore) -> SimWorld:
    """The :class:`SimWorld` behind a core made by :func:`load_demo_core`."""
    try:
        return core.sim_world  # type: ignore[attr-defined, no-any-return]
    except AttributeError:
        raise TypeError("This core was not created by simulators.load_demo_core().") from None
