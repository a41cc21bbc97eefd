"""Render the panel, after a short simulated acquisition, to a PNG (docs and checks without a display)."""

from __future__ import annotations

import logging
from pathlib import Path

from PyQt5.QtCore import QEventLoop, QTimer

from acquisition_hooks import AcquisitionRequest

from .app import application
from .panel import DeepZWindow

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


def render_screenshot(path: Path, request: AcquisitionRequest, timeout_s: float = 600.0,
                      virtual_plane: int | None = None) -> Path:
    """Run ``request`` in a fresh panel window, show ``virtual_plane``, and save the window as PNG."""
    application()
    window = DeepZWindow(request)
    window.show()
    if not run_and_wait(window, timeout_s):
        logger.warning("The acquisition did not finish: %s", window.panel.message.text())
    if virtual_plane is not None:
        window.panel.virtual_view.slider.setValue(virtual_plane)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    window.grab().save(str(path))
    window.close()
    return path
