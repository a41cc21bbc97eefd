"""The standalone window of ``mm-deepz gui``: the panel, its settings menu, its fields remembered."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PyQt5.QtCore import QSettings
from PyQt5.QtGui import QCloseEvent
from PyQt5.QtWidgets import QAction, QFileDialog, QMainWindow, QMenu

from acquisition_hooks import AcquisitionRequest
from mm_deepz.errors import DeepZError

from .panel import DeepZPanel
from .texts import in_panel_words


class DeepZWindow(QMainWindow):
    """The standalone window of ``mm-deepz gui``."""

    def __init__(self, request: AcquisitionRequest | None = None, settings: QSettings | None = None):
        super().__init__()
        self.setWindowTitle("mm-deepz: virtual z-stacking")
        self.settings = settings or QSettings("mm-deepz", "panel")
        self.panel = DeepZPanel(request)
        self.panel.restore_settings(self.settings)
        self.setCentralWidget(self.panel)
        menu = QMenu("Settings", self)
        self.reset_action = QAction("Reset to defaults", self)
        self.reset_action.triggered.connect(lambda: self.panel.reset_settings(self.settings))
        self.save_action = QAction("Save acquisition settings…", self)
        self.save_action.triggered.connect(self._save)
        self.load_action = QAction("Load acquisition settings…", self)
        self.load_action.triggered.connect(self._load)
        menu.addAction(self.save_action)
        menu.addAction(self.load_action)
        menu.addSeparator()
        menu.addAction(self.reset_action)
        bar = self.menuBar()
        if bar is not None:
            bar.addMenu(menu)
        self.resize(1400, 820)

    def _save(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save acquisition settings", "", "JSON (*.json)")
        if path:
            self._settings_file(self.panel.save_acquisition, Path(path), "saved to")

    def _load(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load acquisition settings", "", "JSON (*.json)")
        if path:
            self._settings_file(self.panel.load_acquisition, Path(path), "loaded from")

    def _settings_file(self, action: Callable[[Path], None], path: Path, done: str) -> None:
        """Save or load, saying in the status line what happened (or why not)."""
        try:
            action(path)
        except (DeepZError, OSError) as e:
            self.panel.show_message(in_panel_words(str(e)), error=True)
            return
        self.panel.show_message(f"Acquisition settings {done} {path}.")

    def closeEvent(self, event: QCloseEvent | None) -> None:
        """Close the panel (which asks before it stops a running acquisition); remember its fields."""
        if not self.panel.close():
            if event is not None:
                event.ignore()
            return
        self.panel.save_settings(self.settings)
        super().closeEvent(event)
