"""The panel's run controls and status: what starts, steers and reports a run, always in sight.

:class:`RunControls` holds the buttons (Start, Stop, Snap, Live, the virtual z-stacking toggle,
Pause, a blind check now, making the remaining stacks, opening the run in napari) and the lines that
report: the plan before Start, the time points, the countdown, the light gauge, the virtual stacks
and the model's pace, and the status message. The panel decides; this shows.
"""

from __future__ import annotations

from PyQt5.QtWidgets import (
    QCheckBox,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from .runner import LiveStats
from .texts import in_panel_words


class RunControls(QGroupBox):
    """Start / stop / steer buttons and the run's status lines."""

    def __init__(self, deepz: bool, parent: QWidget | None = None) -> None:
        super().__init__("Run", parent)
        self.toggle = QCheckBox("Virtual z-stacking (Deep-Z)")
        self.toggle.setChecked(deepz)
        self.toggle.setToolTip(
            "On: 1-2 measured planes per time point, the rest synthesized. Off: full z-stacks. "
            "Can be switched during a run; applies from the next time point."
        )
        #: from which time point the last toggle during a run applies
        self.toggle_note = QLabel("")
        self.start_button = QPushButton("Start")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.pause_button = QPushButton("Pause")
        self.pause_button.setCheckable(True)
        self.pause_button.setToolTip(
            "Hold the run before its next time point (the one under way is finished and the model goes on "
            "with its stacks); click again to resume: the time points that follow move on by the pause"
        )
        self.blind_now_button = QPushButton("Blind check now")
        self.blind_now_button.setToolTip(
            "Scan a real reference stack at the next time point and score the virtual stack against it "
            "(its light counts in the gauge)"
        )
        for button in (self.pause_button, self.blind_now_button):
            button.setEnabled(False)
        self.snap_button = QPushButton("Snap")
        self.live_button = QPushButton("Live")
        self.live_button.setCheckable(True)
        for button in (self.snap_button, self.live_button):
            button.setToolTip(
                "The camera's image at the input preset and anchor exposure, where the stage is: to "
                "find and focus the specimen before a run (the light it takes counts as any)"
            )
        self.finish_button = QPushButton("Make the remaining virtual stacks")
        self.finish_button.setToolTip(
            "The last run ended with virtual stacks still to make (the model was slower "
            "than the camera and the run was stopped): make them from its measured planes."
        )
        self.finish_button.setVisible(False)
        self.open_button = QPushButton("Open in napari")
        self.open_button.setToolTip(
            "Open the finished run in napari (its measured, virtual and reference images "
            "and tracks as layers), through mm-deepz's napari plugin."
        )
        self.open_button.setVisible(False)
        self.message = QLabel()
        self.message.setWordWrap(True)
        # wrapped lines are not given their height inside the scrolling panel's column: room for three
        self.message.setMinimumHeight(3 * self.message.fontMetrics().lineSpacing() + 4)
        #: images, bytes, duration (with its end) and light of the plan, before Start (short lines)
        self.plan_summary = QLabel("")
        self.plan_summary.setToolTip(
            "What the plan takes: planes measured, synthesized and scanned for blind checks; the disk space "
            "they need uncompressed; the camera's time; the light, blind checks counted"
        )
        self.progress = QProgressBar()
        self.progress.setFormat("%v / %m time points")
        self.timing = QLabel("")  # countdown to the next time point and the expected end
        self.dose = QProgressBar()
        self.dose.setRange(0, 1000)
        self.dose.setToolTip(
            "Exposure used so far, as a fraction of the same time points taken as full z-stacks"
        )
        self.throughput = QLabel("")
        self.throughput.setWordWrap(True)
        self.virtual_progress = QProgressBar()
        self.virtual_progress.setToolTip(
            "Virtual stacks made, of the Deep-Z time points measured so far; the "
            "backlog waits for the model (its planes are on disk)"
        )
        self.clear()

        lay = QVBoxLayout(self)
        buttons = QHBoxLayout()
        for button in (self.start_button, self.stop_button, self.snap_button, self.live_button):
            buttons.addWidget(button)
        lay.addLayout(buttons)
        during = QHBoxLayout()  # what can be changed while a run goes
        during.addWidget(self.toggle, 1)
        during.addWidget(self.pause_button)
        during.addWidget(self.blind_now_button)
        lay.addLayout(during)
        for line in (
            self.toggle_note,
            self.plan_summary,
            self.progress,
            self.timing,
            self.dose,
            self.virtual_progress,
            self.throughput,
            self.message,
            self.finish_button,
            self.open_button,
        ):
            lay.addWidget(line)

    def show_message(self, text: str, error: bool = False) -> None:
        """``text`` in the status line, red when ``error``."""
        self.message.setText(in_panel_words(text))
        self.message.setStyleSheet("color: #c62828;" if error else "color: palette(text);")

    def clear(self) -> None:
        """The last run's gauges and offers gone (a new run starts)."""
        self.dose.setValue(0)
        self.dose.setFormat("light: -")
        self.virtual_progress.setValue(0)
        self.virtual_progress.setFormat("virtual stacks: -")
        self.throughput.setText("model: -")
        self.finish_button.setVisible(False)
        self.open_button.setVisible(False)
        self.toggle_note.setText("")

    def set_running(self, running: bool) -> None:
        """The buttons a run allows (Stop, Pause, a blind check now) or those that start one."""
        if not running:
            self.timing.setText("")
            self.pause_button.blockSignals(True)
            self.pause_button.setChecked(False)
            self.pause_button.setText("Pause")
            self.pause_button.blockSignals(False)
        self.start_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        self.blind_now_button.setEnabled(running)
        self.pause_button.setEnabled(running)
        self.snap_button.setEnabled(not running)
        self.live_button.setEnabled(not running)

    def show_stats(self, s: LiveStats) -> None:
        """The light gauge, the virtual stacks made and the model's pace."""
        if s.exposure_full_stack_s > 0:
            self.dose.setValue(round(1000 * min(s.exposure_s / s.exposure_full_stack_s, 1.0)))
            # short enough for the bar; the tooltip says the rest
            self.dose.setFormat(
                f"light: {s.exposure_s:.2f} of {s.exposure_full_stack_s:.2f} s "
                f"({s.exposure_full_stack_s / max(s.exposure_s, 1e-9):.1f}x less)"
            )
            self.dose.setToolTip(
                f"Exposure used so far, {s.exposure_s:.2f} s, against {s.exposure_full_stack_s:.2f} s "
                "for the same time points as full z-stacks"
                + (" (blind-check reference stacks included in both)" if s.blind_checks else "")
            )
        self.virtual_progress.setRange(0, max(s.virtual_measured, 1))
        self.virtual_progress.setValue(min(s.virtual_done, max(s.virtual_measured, 1)))
        self.virtual_progress.setFormat(
            f"virtual stacks: {s.virtual_done} / {s.virtual_measured}"
            + (f" (backlog {s.backlog})" if s.backlog else "")
        )
        if s.virtual_planes_per_s:
            self.throughput.setText(
                f"model: {s.virtual_planes_per_s:.1f} virtual planes/s, latency "
                f"{s.latency_s:.2f} s, {s.pending} queued"
            )
