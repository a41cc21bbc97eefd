"""A ready Micro-Manager core on the simulated microscope."""

from __future__ import annotations

import atexit
import inspect
import logging
import os
import weakref
from importlib.metadata import version
from importlib.resources import files
from pathlib import Path
from typing import Any

import pymmcore
from pymmcore_plus.experimental.unicore import UniMMCore
from typing_extensions import override

from .devices import OBJECTIVES
from .world import SimWorld, use_world

logger = logging.getLogger(__name__)

#: pymmcore-plus's environment variable choosing its event backend (qt / psygnal)
PYMM_SIGNALS_BACKEND = "PYMM_SIGNALS_BACKEND"

#: The simulated microscope's Micro-Manager configuration file (shipped with the package).
DEMO_CONFIG = Path(str(files("simulators") / "demo.cfg"))
#: The same physics under the device labels, groups and presets of Micro-Manager's MMConfig_demo.cfg.
MM_DEMO_CONFIG = Path(str(files("simulators") / "mmconfig_demo.cfg"))


#: the device classes a configuration can name on "#py pyDevice,<label>,simulators.devices,<class>" lines
PY_DEVICES = (
    "SimCamera",
    "SimZStage",
    "SimXYStage",
    "SimLightSource",
    "SimLightPath",
    "SimObjective",
    "SimObjectiveTurret",
    "SimPortSwitch",
    "SimLED",
    "SimExcitationWheel",
    "SimEmissionWheel",
    "SimDichroicWheel",
)

#: cores made by load_demo_core that are still alive, released before the interpreter exits
_LIVE_CORES: weakref.WeakSet[UniMMCore] = weakref.WeakSet()


#: the pymmcore-plus version whose private UniMMCore methods SimCore extends (pyproject.toml bounds it)
VERIFIED_WITH = {"pymmcore-plus": "0.18.1"}
#: those methods, by their parameters
_EXTENDED = {
    "_do_snap_image": ("self",),
    "_start_sequence": ("self", "cam", "n_images", "stop_on_overflow"),
    "_stop_acquisition_thread": ("self", "timeout"),
}


class ConfigError(ValueError):
    """A Micro-Manager configuration file that does not load (unknown device, bad line)."""


class IncompatibleCoreError(RuntimeError):
    """The installed pymmcore-plus changed what the simulator's core builds on."""


def check_unicore() -> None:
    """Refuse (:class:`IncompatibleCoreError`) a pymmcore-plus whose UniMMCore internals moved."""
    moved = [
        name
        for name, params in _EXTENDED.items()
        if not callable(method := getattr(UniMMCore, name, None))
        or tuple(inspect.signature(method).parameters) != params
    ]
    if moved:
        raise IncompatibleCoreError(
            f"pymmcore-plus {version('pymmcore-plus')} changed UniMMCore.{', '.join(moved)}, which the "
            f"simulator extends (verified with {VERIFIED_WITH['pymmcore-plus']}): install "
            f"pymmcore-plus=={VERIFIED_WITH['pymmcore-plus']}."
        )


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

    @override
    def getCurrentPixelSizeConfig(self, cached: bool = False) -> str:  # type: ignore[override]
        if current := super().getCurrentPixelSizeConfig(cached):
            return current
        for res in self.getAvailablePixelSizeConfigs():
            settings = self.getPixelSizeConfigData(res)
            if all(self.getProperty(dev, prop) == value for dev, prop, value in settings):
                return res
        return ""

    def getProperty(self, label: str, propName: str) -> str:
        """A property's value as text, as MMCore returns it for every device (UniMMCore returns a
        Python device's value as it is: ``12``, not ``"12"``)."""
        return str(super().getProperty(label, propName))

    def setProperty(self, label: str, propName: str, propValue: bool | float | str) -> None:
        """Set a property; a refused value raises ``RuntimeError`` naming the allowed values, as
        MMCore's ``CMMError`` does (UniMMCore raises ``ValueError`` for Python devices)."""
        try:
            super().setProperty(label, propName, propValue)
        except ValueError as e:
            raise RuntimeError(f"{label}.{propName}: {e}") from e

    def getImageBitDepth(self) -> int:
        """The camera's ``BitDepth`` (as MMCore reports it), not the width of its pixel type."""
        camera = self.getCameraDevice()
        if camera and self.isPyDevice(camera) and self.hasProperty(camera, "BitDepth"):
            return int(self.getProperty(camera, "BitDepth"))
        return super().getImageBitDepth()

    @override
    def getPixelSizeUm(self, cached: bool = False) -> float:
        if not (res := self.getCurrentPixelSizeConfig(cached)):
            return 0.0
        camera = self.getCameraDevice()
        binning = float(self.getProperty(camera, "Binning")) if camera else 1.0
        return self.getPixelSizeUmByID(res) * binning / self.getMagnificationFactor()

    def waitForDeviceType(self, devType: int) -> None:
        """Wait until no device of ``devType`` is busy, one device after the other, as MMCore does.
        UniMMCore waits for Python devices on a thread pool made for each call, a thread per device:
        4 ms a call here, paid at every event of an MDA run that is not hardware-sequenced."""
        for label in self.getLoadedDevicesOfType(devType):
            self.waitForDevice(label)

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

    def _start_sequence(self, cam: Any, n_images: int | None, stop_on_overflow: bool) -> None:
        self._auto_shutter(True)
        super()._start_sequence(cam, n_images, stop_on_overflow)

    def _stop_acquisition_thread(self, timeout: float | None = 2) -> None:
        super()._stop_acquisition_thread(timeout)
        self._auto_shutter(False)


def load_demo_core(
    world: SimWorld | None = None, config: str | Path = DEMO_CONFIG, core: UniMMCore | None = None
) -> UniMMCore:
    """Load the simulated microscope into a core and return it.

    Args:
        world: the specimen and optics to simulate (default: a fresh worm, seed 0).
        config: the Micro-Manager configuration file to load.
        core: an existing (e.g. pycromanager-adapted) core to load into; default a new
            :class:`SimCore`.
    """
    check_unicore()
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
    # the calibrations must describe the simulated objectives, whatever the file says
    for res in core.getAvailablePixelSizeConfigs():
        ratios = [
            OBJECTIVES[value][1]
            for _, prop, value in core.getPixelSizeConfigData(res)
            if prop == "Label" and value in OBJECTIVES
        ]
        core.setPixelSizeUm(res, world.base_optics.pixel_size_um / (ratios[0] if ratios else 1.0))
    # a camera delivers its first frame about one exposure after the start: the renderer's optics for the
    # current focus are made now, as a real camera's start-up happens at load (a cold first frame took
    # ~1 s longer, and pycromanager's abort tests saw no frame before their abort; #37 item 7)
    world.expected_photons(1.0)
    core.sim_world = world  # type: ignore[attr-defined]
    _LIVE_CORES.add(core)
    logger.info("Simulated microscope loaded from %s (%s)", path, world.phantom.name)
    return core


def release_core(core: UniMMCore) -> None:
    """Unload the simulated microscope and stop the core's notifications into Python.

    MMCore delivers device notifications to Python from its own thread. When the process exits
    while one is under way (right after ``unloadAllDevices``, for instance), that thread is
    killed inside a C++ ``catch (...)`` and the process aborts ("FATAL: exception not rethrown",
    exit status 134) instead of exiting with its own status. Unregistering the callback waits
    for the notification in flight and stops the rest. Safe to call twice.
    """
    core.unloadAllDevices()
    _stop_notifications(core)


def _stop_notifications(core: UniMMCore) -> None:
    pymmcore.CMMCore.registerCallback(core, None)  # pymmcore-plus refuses its own override
    _LIVE_CORES.discard(core)


@atexit.register
def _release_live_cores() -> None:
    """Before the interpreter tears down its threads, stop every live core's notifications
    (a script that never released its core must still exit with its own status)."""
    for core in list(_LIVE_CORES):
        _stop_notifications(core)


def world_of(core: UniMMCore) -> SimWorld:
    """The :class:`SimWorld` behind a core made by :func:`load_demo_core`."""
    try:
        world: SimWorld = core.sim_world  # type: ignore[attr-defined]
        return world
    except AttributeError:
        raise TypeError("This core was not created by simulators.load_demo_core().") from None
