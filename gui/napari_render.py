"""A Deep-Z run as napari shows it, rendered without a display (``mm-deepz napari --screenshot``).

napari's window needs an OpenGL context from the windowing system (GLX or a Qt platform with
GL); headless machines (CI, a server, this project's build machine) have none, so
``napari.Viewer(show=False)`` cannot draw there. What they often have is EGL (Mesa's software
rasterizer, or a GPU's driver). This module draws napari's own scene — its ``ViewerModel``, the
layers the mm-deepz reader gives, napari's vispy layer visuals and overlays — on a vispy canvas
of vispy's EGL backend instead of napari's Qt canvas. The picture is what napari draws for those
layers; only the window around it (layer list, dims sliders) is missing.

napari's canvas class assumes a Qt widget under it: it asks for vsync, hooks the widget's
enter/leave events and its ``destroyed``/``screenChanged`` signals, and sets cursors. The EGL
backend has none of these; :func:`_offscreen_backend` gives it inert ones (off screen there is
no pointer, no screen and no buffer swap to synchronise). That depends on napari's and vispy's
internals, so it is checked against the versions it was written for (:data:`TESTED`).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from mm_deepz.errors import DeepZError, InputError

logger = logging.getLogger(__name__)

#: the releases whose canvas internals this module was written against (napari, vispy)
TESTED = {"napari": ("0.9",), "vispy": ("0.15", "0.16", "0.17")}


class OffscreenRenderError(DeepZError):
    """napari's scene cannot be drawn off screen here (no EGL, or untested napari/vispy internals)."""


class _Inert:
    """A Qt signal's ``connect``/``disconnect`` that nothing will ever emit."""

    def connect(self, *args: Any, **kwargs: Any) -> None:
        """Accept a slot (off screen the signal never fires)."""

    def disconnect(self, *args: Any, **kwargs: Any) -> None:
        """Forget a slot."""


def _check_versions() -> None:
    import napari
    import vispy

    for name, version in (("napari", napari.__version__), ("vispy", vispy.__version__)):
        if not version.startswith(TESTED[name]):
            raise OffscreenRenderError(
                f"off-screen rendering was written for {name} {' / '.join(TESTED[name])}.x and {name} "
                f"{version} is installed: open the run in napari's window instead (mm-deepz napari RUN), "
                "or install a tested version."
            )


def _offscreen_backend() -> Any:
    """vispy's EGL application, its canvas given the Qt-widget surface napari's canvas uses."""
    os.environ.setdefault("EGL_PLATFORM", "surfaceless")  # no display server to attach to
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")  # napari's gl+ backend calls GL through PyOpenGL
    if "OpenGL" in sys.modules and os.environ["PYOPENGL_PLATFORM"] != "egl":
        raise OffscreenRenderError(
            "PyOpenGL was already loaded for another platform in this process: render in a fresh "
            "process (mm-deepz napari RUN --screenshot PNG)."
        )
    import vispy.app

    try:
        from vispy.app.backends import _egl
    except Exception as e:  # vispy raises whatever loading libEGL raised
        raise OffscreenRenderError(
            f"EGL is not available here ({e}): install Mesa's EGL (e.g. the libegl1 and libgl1-mesa-dri "
            "packages) or open the run in napari's window on a machine with a display."
        ) from e
    canvas = _egl.CanvasBackend
    _egl.capability["vsync"] = True  # napari asks for it; off screen nothing is swapped to a display
    for name in ("destroyed", "screen_changed"):
        setattr(canvas, name, _Inert())
    canvas.enterEvent = canvas.leaveEvent = lambda self, event: None
    canvas.setCursor = lambda self, cursor: None
    canvas.cursor = lambda self: None
    return vispy.app.Application("egl")


def render_run(
    run: Path,
    out: Path,
    *,
    z_um: float | None = None,
    t: int = 0,
    size: tuple[int, int] = (1500, 560),
) -> Path:
    """Draw a run's images (its first position), as the mm-deepz napari reader opens them, side by side
    (napari's grid mode) at depth ``z_um`` (µm; default: the first measured plane) and time point ``t``;
    save a PNG."""
    _check_versions()
    app = _offscreen_backend()
    from napari._vispy import VispyCanvas, create_vispy_layer
    from napari._vispy.utils.qt_font import QtFontManager
    from napari.components import ViewerModel
    from napari.plugins import _initialize_plugins
    from napari.utils.key_bindings import KeymapHandler
    from qtpy.QtGui import QGuiApplication
    from qtpy.QtWidgets import QApplication

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # Qt only measures fonts here
    qt_app = QApplication.instance() or QApplication([])
    _initialize_plugins()
    viewer = ViewerModel(title=run.name)
    keys = KeymapHandler()
    keys.keymap_providers = [viewer]
    width, height = size
    try:
        canvas = VispyCanvas(
            viewer=viewer,
            key_map_handler=keys,
            font_manager=QtFontManager(),
            font_family=QGuiApplication.font().family(),
            size=(width, height),
            app=app,
            show=False,
        )
    except RuntimeError as e:  # vispy: no EGL display or context could be made
        raise OffscreenRenderError(f"no EGL context could be made here ({e}).") from e

    def add_visual(event: Any) -> None:  # what napari's QtViewer does when a layer is added
        canvas.add_layer_visual_mapping(
            event.value, create_vispy_layer(event.value, font_info=canvas.font_info())
        )

    viewer.layers.events.inserted.connect(add_visual)
    viewer.open(str(run), plugin="mm-deepz")
    images = [layer for layer in viewer.layers if layer.metadata.get("position", 0) == 0 and layer.ndim == 4]
    if not images:
        raise InputError(f"{run} has no image with a time point to show yet: show it once one is acquired.")
    for layer in [layer for layer in viewer.layers if layer not in images]:
        viewer.layers.remove(layer)  # other positions and tracks: the view is fitted to what is shown
    for layer in images:
        layer.blending = "translucent_no_depth"  # each in its own panel: nothing to add up
        layer.name_overlay.visible = True
    measured = next(
        (layer for layer in images if layer.metadata.get("mm_deepz_image") == "measured"), images[0]
    )
    n_t = measured.data.shape[0]
    if not 0 <= t < n_t:
        raise InputError(
            f"--time-index {t} is not a time point of {run.name}: it has {n_t} (0 to {n_t - 1})."
        )
    t_s = float(measured.translate[0] + t * measured.scale[0])
    low, high = viewer.layers.extent.world[:, 1]
    measured_z = measured.metadata.get("measured_z_um") or [float(measured.translate[1])]
    z = float(measured_z[0]) if z_um is None else z_um
    if not low - 1e-6 <= z <= high + 1e-6:
        raise InputError(f"--z {z:g} µm is outside {run.name}'s stacks ({low:+g} to {high:+g} µm).")
    viewer.dims.ndisplay = 2
    viewer.dims.set_point(0, t_s)
    viewer.dims.set_point(1, z)
    grid = viewer.canvas.grid
    grid.enabled, grid.shape, grid.spacing = True, (1, len(images)), 0.02
    viewer.canvas.overlays["scale_bar"].visible = True
    text = viewer.canvas.overlays["text"]
    text.visible, text.text = True, f"{run.name}   z = {z:+.1f} µm   t = {t_s:.1f} s"
    # napari's Qt canvas reports its size when shown; this one is told (vispy's resize event)
    canvas._scene_canvas.events.resize(size=(width, height))
    canvas._scene_canvas.render()  # lays the grid's views out: the camera is fitted to their size
    viewer.reset_view()
    canvas.on_draw(None)  # napari's per-draw work (cameras, level of detail): render() emits no draw event
    image = canvas._scene_canvas.render()
    canvas._scene_canvas.close()
    qt_app.processEvents()
    return _save_png(image, out)


def _save_png(rgba: Any, out: Path) -> Path:
    """Write an RGBA array as PNG (Qt's writer: no extra dependency)."""
    import numpy as np
    from qtpy.QtGui import QImage

    pixels = np.ascontiguousarray(rgba[..., :4], dtype=np.uint8)
    h, w = pixels.shape[:2]
    out.parent.mkdir(parents=True, exist_ok=True)
    if not QImage(pixels.tobytes(), w, h, 4 * w, QImage.Format.Format_RGBA8888).save(str(out)):
        raise DeepZError(f"could not write {out}: check that its folder is writable.")
    logger.info("wrote %s (%d x %d)", out, w, h)
    return out
