"""The Qt application of ``mm-deepz gui`` (offscreen where there is no display)."""

from __future__ import annotations

import os
import sys

from PyQt5.QtWidgets import QApplication

from acquisition_hooks import AcquisitionRequest

_APP: QApplication | None = None


def application() -> QApplication:
    """The running QApplication, or a new one (offscreen when no display is available)."""
    if isinstance(app := QApplication.instance(), QApplication):
        return app
    if (
        not os.environ.get("DISPLAY")
        and not os.environ.get("WAYLAND_DISPLAY")
        and sys.platform.startswith("linux")
    ):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    global _APP
    _APP = QApplication(sys.argv[:1])  # kept: Qt needs it alive as long as any widget
    return _APP


def run_window(request: AcquisitionRequest | None = None) -> int:
    """Show the standalone Deep-Z window until it is closed; the exit code."""
    from .window import DeepZWindow

    app = application()
    window = DeepZWindow(request)
    window.show()
    return app.exec_()
