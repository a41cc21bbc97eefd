"""Render the panel, after a short simulated acquisition, to a PNG (docs and checks without a display)."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from PyQt5.QtCore import QEventLoop, QSettings, QTimer

from acquisition_hooks import AcquisitionRequest

from .app import application
from .window import DeepZWindow

logger = logging.getLogger(__name__)


def run_and_wait(window: DeepZWindow, timeout_s: float) -> bool:
    """Start the panel's acquisition and run the Qt event loop until it ends; True if it finished."""
    panel = window.panel
    loop = QEventLoop()
    panel.runner.finished.connect(loop.quit)
    panel.runner.failed.connect(loop.quit)
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    panel.start()
    if panel.runner.running:
        loop.exec_()
    return panel.summary is not None


def render_screenshot(
    path: Path,
    request: AcquisitionRequest,
    timeout_s: float = 600.0,
    virtual_plane: int | None = None,
    size: tuple[int, int] | None = None,
) -> Path:
    """Run ``request`` in a fresh panel window (``size`` in pixels, e.g. a laptop's 1280x800), show
    ``virtual_plane``, and save the window as PNG. Remembered settings are not used."""
    app = application()
    with tempfile.TemporaryDirectory() as tmp:  # the request as given: no remembered fields, none left behind
        return _render(
            app,
            path,
            request,
            timeout_s,
            virtual_plane,
            size,
            QSettings(str(Path(tmp) / "settings.ini"), QSettings.Format.IniFormat),
        )


def _render(
    app: Any,
    path: Path,
    request: AcquisitionRequest,
    timeout_s: float,
    virtual_plane: int | None,
    size: tuple[int, int] | None,
    settings: QSettings,
) -> Path:
    window = DeepZWindow(request, settings)
    if size is not None:
        window.resize(*size)
    window.show()
    if not run_and_wait(window, timeout_s):
        logger.warning("The acquisition did not finish: %s", window.panel.controls.message.text())
    if virtual_plane is not None:
        window.panel.views.virtual_view.slider.setValue(virtual_plane)
    app.processEvents()  # the views render at the size the window gives them
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    window.grab().save(str(path))
    window.close()
    return path
