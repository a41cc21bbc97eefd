"""The one place where mm-deepz adapts pycromanager to a core.

pycromanager's ``Acquisition`` runs on one of two backends:

- **Java** (users with hardware): a running Micro-Manager (GUI or headless) serves its
  core on a port (4827 by default). :func:`connect_micromanager` checks the connection and
  returns pycromanager's remote core; ``Acquisition`` then uses the Java backend.
- **Python** (the simulator): pycromanager's pure-Python acquisition engine drives a
  pymmcore core in this process. pycromanager expects the core it gets from
  ``mmpycorex.create_core_instance``: snake_case aliases of the CMMCore methods plus
  ``get_tagged_image`` / ``pop_next_tagged_image`` / ``TaggedImage``. That function can
  only build a plain ``pymmcore.CMMCore`` from a Micro-Manager install, so
  :func:`start_simulator` builds the same adapter around the simulator's ``UniMMCore``,
  registers it where pycromanager looks (``mmpycorex.launcher._PYMMCORES``) and starts the
  Python engine exactly as ``pycromanager.start_headless(python_backend=True)`` does.

Nothing else in mm-deepz touches pycromanager internals; :func:`_internals` reaches them, and
refuses versions where they moved (pyproject.toml bounds both packages by the versions in
:data:`VERIFIED_WITH`).
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from typing_extensions import Self

if TYPE_CHECKING:
    from pymmcore_plus.experimental.unicore import UniMMCore

    from simulators import SimWorld

logger = logging.getLogger(__name__)

DEFAULT_PORT = 4827
#: the versions whose internals (``mmpycorex.launcher._PYMMCORES``, the Python engine's singleton)
#: this module was verified with
VERIFIED_WITH = {"pycromanager": "1.0.2", "mmpycorex": "0.3.16"}


#: how often pycromanager's Python engine tries a device command before it gives up (its
#: ``HARDWARE_ERROR_RETRIES``, 5 ms apart)
ENGINE_TRIES = 6
#: how long a camera sequence's next frame is waited for before the buffer is said to be empty, and
#: how often it is looked for meanwhile (s)
POP_WAIT_S, POP_POLL_S = 0.005, 0.0005


class BridgeError(RuntimeError):
    """pycromanager could not be given a core (no Micro-Manager answering, or busy)."""


class TaggedImage:
    """An image with its metadata tags, as pycromanager's Python engine expects."""

    def __init__(self, tags: dict[str, Any], pix: np.ndarray):
        self.tags = tags
        self.pix = pix


def snake_case(name: str) -> str:
    """A CMMCore method name in pycromanager's snake_case (``getPixelSizeUm`` -> ``get_pixel_size_um``)."""
    s1 = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z0-9])([A-Z])", r"\1_\2", s1).lower()


def _snake_case_class(base: type, extra: dict[str, Any] | None = None) -> type:
    """A subclass of ``base`` with a snake_case alias for every camelCase method (and ``extra``
    attributes: such a class's attributes cannot be set after it is made)."""
    aliases: dict[str, Any] = {}
    for klass in reversed(base.__mro__):
        for name, value in vars(klass).items():
            if name.startswith("_") or not callable(value):
                continue
            snake = snake_case(name)
            if snake != name:
                aliases[snake] = value
    return type(f"{base.__name__}SnakeCase", (base,), {**aliases, **(extra or {})})


def _get_tagged_image(
    self: Any,
    cam_index: int,
    camera: str,
    height: int,
    width: int,
    binning: Any = None,
    pixel_type: Any = None,
    roi_x_start: Any = None,
    roi_y_start: Any = None,
) -> TaggedImage:
    tags: dict[str, Any] = {
        "Camera": camera,
        "Height": height,
        "Width": width,
        "PixelType": pixel_type,
        "CameraChannelIndex": cam_index,
    }
    if binning is not None:
        tags["Binning"] = binning
    pix = self.getImage()
    tags.update(self.sim_world.last_frame_metadata)  # the simulated camera's own tags, as in sequences
    return TaggedImage(tags, pix)


def _pop_next_tagged_image(self: Any) -> TaggedImage:
    """The next frame of a camera sequence; while the sequence runs and its buffer is empty, the frame
    is waited for (at most :data:`POP_WAIT_S`, sleeping) before the buffer is said to be empty. The
    Python engine asks in a loop that does not pause: without the wait it held the interpreter half
    the time, and a camera whose frames are made in Python (the simulator's, 256² rendered) took 30
    frames/s in a sequence against 77 one snap at a time."""
    deadline = time.monotonic() + POP_WAIT_S
    while not self.getRemainingImageCount() and self.isSequenceRunning() and time.monotonic() < deadline:
        time.sleep(POP_POLL_S)
    pix, md = self.popNextImageAndMD()
    return TaggedImage(dict(md), pix)


def _pycromanager_core_class(base: type) -> type:
    """``base`` with snake_case aliases and the tagged-image calls pycromanager's Python engine makes.
    On the class, not bound to each core: a core holding its own bound methods is a reference cycle
    that the SWIG core never lets the garbage collector break, so every closed session kept its core,
    world and 250 MB image buffer."""
    return _snake_case_class(
        base,
        {
            "get_tagged_image": _get_tagged_image,
            "pop_next_tagged_image": _pop_next_tagged_image,
            "TaggedImage": TaggedImage,
        },
    )


@dataclass
class SimulatorSession:
    """A simulator core registered with pycromanager's Python backend."""

    #: the simulator's pymmcore-plus core, with pycromanager's snake_case names besides
    core: UniMMCore

    @property
    def world(self) -> SimWorld:
        """The simulated microscope's physical state."""
        from simulators import world_of

        return world_of(self.core)

    def close(self) -> None:
        """Stop the Python acquisition engine and unregister the core."""
        stop_simulator()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_simulator(world: Any = None, config: str | Path | None = None) -> SimulatorSession:
    """Load the simulated microscope and make it pycromanager's (Python-backend) core.

    Afterwards ``pycromanager.Acquisition(...)`` runs on the simulator. ``config`` is the
    Micro-Manager configuration file to load: the simulator's own (default) or
    ``simulators.MM_DEMO_CONFIG``, which gives Micro-Manager's demo-configuration names. Only one
    core can be active at a time; call :meth:`SimulatorSession.close` (or use ``with``) when done.
    """
    from simulators import DEMO_CONFIG, SimCore, load_demo_core

    cores, engine = _internals()
    if cores:
        raise BridgeError(
            "A Python-backend core is already active in this process; close the previous "
            "simulator session (session.close()) before starting another."
        )
    core = _pycromanager_core_class(SimCore)()
    load_demo_core(world, config=config or DEMO_CONFIG, core=core)
    cores.append(core)
    _report_batch_errors(engine)
    engine(core)
    logger.info("Simulated microscope registered with pycromanager (Python backend)")
    return SimulatorSession(core)


@contextlib.contextmanager
def simulated_core(world: Any = None, runner: str = "pycromanager") -> Iterator[UniMMCore]:
    """The simulated microscope as the core ``runner`` drives, closed on exit: pycromanager's
    (:func:`start_simulator`), or for ``"mda"`` a pymmcore-plus ``UniMMCore`` of its own."""
    if runner != "mda":
        with start_simulator(world) as session:
            yield session.core
        return
    from simulators import load_demo_core

    core = load_demo_core(world)
    try:
        yield core
    finally:
        core.unloadAllDevices()


def stop_simulator() -> None:
    """Undo :func:`start_simulator` (safe to call when nothing is running)."""
    from simulators import release_core

    cores, engine = _internals()
    if (running := engine.get_instance()) is not None:
        running.shutdown()
        del engine.singleton  # the next start_simulator() creates a fresh engine
    for core in cores:
        release_core(core)
    cores.clear()


def connect_micromanager(port: int = DEFAULT_PORT, timeout_ms: int = 2000) -> Any:
    """Connect to a running Micro-Manager (Java backend) and return its remote core.

    Raises :class:`BridgeError` naming the port when nothing answers there.
    """
    from pycromanager import Core

    # internals that moved mean no simulator could have started, and the Java backend needs none of them
    try:
        simulator_active = bool(_internals()[0])
    except BridgeError:
        simulator_active = False
    if simulator_active:
        raise BridgeError("A simulator core is active; close it before connecting to Micro-Manager.")
    try:
        core = Core(port=port, timeout=timeout_ms)
        core.get_version_info()
    except Exception as e:
        raise BridgeError(
            f"No Micro-Manager answered on port {port}: start Micro-Manager and enable "
            f"Tools > Options > 'Run pycro-manager server on port {port}'. ({e})"
        ) from e
    return core


def _internals() -> tuple[list[Any], Any]:
    """pycromanager's list of Python-backend cores and its Python engine class.

    Raises :class:`BridgeError` naming the installed and the verified versions when they moved.
    """
    try:
        from mmpycorex import launcher
        from pycromanager.acquisition.acq_eng_py.internal.engine import Engine

        cores = launcher._PYMMCORES
        if not isinstance(cores, list) or not all(
            callable(getattr(Engine, m, None)) for m in ("get_instance", "shutdown")
        ):
            raise AttributeError("launcher._PYMMCORES is no list or Engine lacks get_instance/shutdown")
    except (ImportError, AttributeError) as e:
        raise BridgeError(
            f"pycromanager's Python backend is not what mm-deepz was verified with ({_versions()}): "
            f"install {' '.join(f'{n}=={v}' for n, v in VERIFIED_WITH.items())}. ({e})"
        ) from e
    return cores, Engine


def _report_batch_errors(engine: Any) -> None:
    """Make pycromanager's Python engine hand every failed event to its acquisition (idempotent).

    Its ``submit_event_iterator`` aborts the acquisition with the error of a failed event, except for
    the last event of a batch (executed when the batch's end is submitted, outside its ``try``): that
    error is dropped in an unread future, and a failed device command there leaves the run waiting
    for frames. The futures it returns get a callback that aborts their acquisition with that error,
    as the engine does for the other events, so :func:`acquisition_error` sees it.
    """
    submit = engine.submit_event_iterator
    if getattr(submit, "_mm_deepz_reports", False):
        return

    def submit_event_iterator(self: Any, events: Any) -> Any:
        acquisitions: list[Any] = []

        def remembered(events: Any) -> Any:
            for event in events:
                if not acquisitions:
                    acquisitions.append(event.acquisition_)
                yield event

        def report(future: Any) -> None:
            error = None if future.cancelled() else future.exception()
            if error is not None and acquisitions:
                acquisitions[0].abort(error)

        future = submit(self, remembered(events))
        future.add_done_callback(report)
        return future

    submit_event_iterator._mm_deepz_reports = True  # type: ignore[attr-defined]
    engine.submit_event_iterator = submit_event_iterator


def _versions() -> str:
    """Installed against verified versions of :data:`VERIFIED_WITH`'s packages."""

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    return ", ".join(f"{n} {installed(n)}, verified {v}" for n, v in VERIFIED_WITH.items())


def acquisition_error(acq: Any) -> BaseException | None:
    """The error that stopped a running pycromanager ``Acquisition``'s engine (a device command that
    failed after the engine's own retries, a hook that raised), or None while it runs well.

    pycromanager keeps it for ``__exit__`` (``_check_for_exceptions``, on both backends of the versions
    in :data:`VERIFIED_WITH`); reading it while the run goes on turns a failed device command into a
    stop instead of a wait for frames that will never come.
    """
    check = getattr(acq, "_check_for_exceptions", None)
    if check is None or getattr(acq, "_acq", None) is None:  # another version, or already finished
        return None
    try:
        check()
    except Exception as e:  # noqa: BLE001 - whatever the engine raised is the error to report
        return e
    return None
