"""The Deep-Z panel: settings, the virtual z-stacking toggle, live views, dose gauge.

:class:`DeepZPanel` is a plain QWidget (dock it into another Qt application) that fills an
:class:`~acquisition_hooks.AcquisitionRequest` from its fields, checks it as the user types
(the Start button stays off, and the message says why, while settings are invalid) and runs
it through :class:`~gui.runner.AcquisitionRunner`, the CLI's acquisition in a background
thread. :class:`DeepZWindow` is the standalone window of ``mm-deepz gui``.
"""

from __future__ import annotations

import datetime
import importlib.util
import logging
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PyQt5.QtCore import QSettings, Qt, QTimer
from PyQt5.QtGui import QCloseEvent
from PyQt5.QtWidgets import (
    QAction,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMenu,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from acquisition_hooks import AcquisitionRequest, DeepZAcquisition, DeepZPlan, RunSummary
from acquisition_hooks.estimate import PlanEstimate, duration_text, size_text, when_text
from acquisition_hooks.fields import LIMITS
from acquisition_hooks.infer import InferSummary
from acquisition_hooks.request import PHANTOMS, MicroManagerSpec, MicroscopeSpec, SimulatorSpec
from acquisition_hooks.start import prepare
from mm_deepz.bridge import DEFAULT_PORT
from mm_deepz.errors import DeepZError
from mm_deepz.io import is_container, next_free_output
from mm_deepz.io.claim import free_space
from mm_deepz.modelfile import DeepZModel

from .runner import AcquisitionRunner, LiveStats
from .settings_file import read_settings_file, write_settings_file
from .texts import card_text, in_panel_words, timing_text
from .views import COLORMAPS, PlaneView, StackView

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

MODEL_CHOICES = ("1 plane (shipped)", "2 planes (shipped)", "model file")


def _spin(
    lo: float, hi: float, value: float, step: float = 1.0, decimals: int = 2, suffix: str = ""
) -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setRange(lo, hi)
    spin.setDecimals(decimals)
    spin.setSingleStep(step)
    spin.setValue(value)
    spin.setSuffix(suffix)
    return spin


def _int_spin(lo: int, hi: int, value: int, special: str | None = None) -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(lo, hi)
    spin.setValue(value)
    if special:
        spin.setSpecialValueText(special)
    return spin


class DeepZPanel(QWidget):
    """Settings, toggle, start/stop and live views of Deep-Z acquisitions."""

    def __init__(self, request: AcquisitionRequest | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        r = request or AcquisitionRequest()
        self._base = r  # what the panel has no field for (positions, power, simulator seed/frame)
        self.runner = AcquisitionRunner(self)
        self.model: DeepZModel | None = None
        self.summary: RunSummary | None = None
        self._z = np.zeros(0)
        self._anchor_z: tuple[float, ...] = ()
        self._measured: dict[int, tuple[np.ndarray, str]] = {}  # the shown time point's measured planes
        self._measured_t = -1
        self._looking = False  # Snap or Live is using the microscope
        self._blind_scores: dict[int, str] = {}  # the blind checks' scores, by time point
        self._reference_t = -1  # the time point of the reference stack on show
        #: virtual planes/s each model made in its last run here, per device
        self._speed: dict[tuple[str, str], float] = {}
        self._pixel_um = 1.0
        self._finished_output: Path | None = None  # the last run, while it has stacks to make
        self._model_key: tuple[object, ...] | None = None
        self._reference: dict[int, np.ndarray] = {}
        self._queued = 0  # virtual stacks waiting for the model, as last reported
        self._closing = False  # the user closed the window during a run: it closes when the run ends
        self._paused_at: float | None = None  # when Pause was clicked (the countdown leaves it out)
        self._virtual_t = -1  # the time point of the virtual stack on show
        self._run_text = ""  # the last run's summary, kept on screen under later notes
        #: the camera's frame (rows, columns) as last seen (Micro-Manager: sizes the plan once known)
        self._frame_yx: tuple[int, int] | None = None
        #: what the plan the fields describe takes, when they are valid
        self._estimate: PlanEstimate | None = None
        self._build(r)
        self._defaults = {
            key: _value(w) for key, w in self._remembered().items()
        }  # what "reset" goes back to
        self._wire()
        self.validate()

    # -- settings remembered between sessions ----------------------------------------------
    def _remembered(self) -> dict[str, QWidget]:
        """The fields kept between sessions (the microscope comes from how the panel is started)."""
        return {
            "phantom": self.phantom,
            "model_choice": self.model_choice,
            "model_path": self.model_path,
            "z_start": self.z_start,
            "z_end": self.z_end,
            "z_step": self.z_step,
            "exposure": self.exposure,
            "time_points": self.time_points,
            "interval": self.interval,
            "blind_check": self.blind,
            "device": self.device,
            "output": self.output,
            "virtual_z_stacking": self.toggle,
            "colours": self.colors,
        }

    def save_settings(self, settings: QSettings) -> None:
        """Remember the fields (``QSettings``)."""
        for key, widget in self._remembered().items():
            settings.setValue(key, _value(widget))

    def restore_settings(self, settings: QSettings) -> None:
        """The fields as last remembered; the output moves on to a name that is free."""
        for key, widget in self._remembered().items():
            if settings.contains(key):
                _set_value(widget, settings.value(key))
        if self.output.text().strip():
            self.output.setText(str(next_free_output(Path(self.output.text().strip()))))
        self.validate()

    def reset_settings(self, settings: QSettings) -> None:
        """Forget what was remembered; the fields go back to their defaults."""
        settings.clear()
        for key, widget in self._remembered().items():
            _set_value(widget, self._defaults[key])
        self.validate()

    # -- layout ----------------------------------------------------------------------------
    def _build(self, r: AcquisitionRequest) -> None:
        self.backend = QComboBox()
        self.backend.addItems(["Simulator", "Micro-Manager"])
        self.port = _int_spin(1, 65535, DEFAULT_PORT)
        self.phantom = QComboBox()
        self.phantom.addItems(PHANTOMS)
        self._show_microscope(r.microscope)
        self.model_choice = QComboBox()
        self.model_choice.addItems(MODEL_CHOICES)
        self.model_choice.setCurrentIndex(2 if r.model else (r.planes or 1) - 1)
        self.model_path = QLineEdit(str(r.model) if r.model else "")
        self.model_path.setPlaceholderText("a .pt model file or a bioimage.io package (.zip)")
        self.browse_model = QPushButton("…")
        self.card = QPlainTextEdit()
        self.card.setReadOnly(True)
        self.card.setMaximumHeight(130)
        self.inputs = QLabel("-")
        self.inputs.setWordWrap(True)
        # the fields take up to 10x each setting's limit, so a value beyond it is typed in full and refused
        # with the limit named, not silently clamped to the field's maximum
        over = {key: 10 * value for key, value in LIMITS.items()}
        self.z_start = _spin(-over["z_abs_um"], over["z_abs_um"], r.z_start_um, suffix=" µm")
        self.z_end = _spin(-over["z_abs_um"], over["z_abs_um"], r.z_end_um, suffix=" µm")
        # the step may be typed negative on purpose: the plan then says what is wrong
        self.z_step = _spin(-100, 100, r.z_step_um, 0.1, 3, " µm")
        self.exposure = _spin(0.01, over["exposure_ms"], r.exposure_ms, suffix=" ms")
        self.time_points = _int_spin(1, int(over["time_points"]), r.time_points)
        self.interval = _spin(0, over["interval_s"], r.interval_s, 0.5, suffix=" s")
        self.blind = _int_spin(0, int(over["time_points"]), r.blind_check_every, special="off")
        self.device = QComboBox()
        self.device.addItems(["auto", "cpu", "cuda"])
        self.device.setCurrentText(r.device)
        self.output = QLineEdit(str(r.output))
        self.browse_output = QPushButton("…")
        self.overwrite = QCheckBox("replace an existing container")
        self.overwrite.setChecked(r.overwrite)
        self.toggle = QCheckBox("Virtual z-stacking (Deep-Z)")
        self.toggle.setChecked(r.deepz)
        self.toggle.setToolTip(
            "On: 1-2 measured planes per time point, the rest synthesized. Off: full z-stacks. "
            "Can be switched during a run; applies from the next time point."
        )
        #: from which time point the last toggle during a run applies
        self.toggle_note = QLabel("")
        self.start_button = QPushButton("Start")
        self.stop_button = QPushButton("Stop")
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
        self.stop_button.setEnabled(False)
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
        self._clock = QTimer(self)
        self._clock.setInterval(500)
        self._clock.timeout.connect(self._show_timing)
        self._started_at = 0.0
        self.dose = QProgressBar()
        self.dose.setRange(0, 1000)
        self.dose.setValue(0)
        self.dose.setFormat("light: -")
        self.dose.setToolTip(
            "Exposure used so far, as a fraction of the same time points taken as full z-stacks"
        )
        self.throughput = QLabel("model: -")
        self.throughput.setWordWrap(True)
        self.virtual_progress = QProgressBar()
        self.virtual_progress.setFormat("virtual stacks: -")
        self.virtual_progress.setToolTip(
            "Virtual stacks made, of the Deep-Z time points measured so far; the "
            "backlog waits for the model (its planes are on disk)"
        )

        form = QFormLayout()  # one or two fields a row: the panel fits a 1280-pixel-wide screen
        mic = QHBoxLayout()
        for w in (self.backend, QLabel("port"), self.port):
            mic.addWidget(w)
        form.addRow("microscope", mic)
        form.addRow("specimen", self.phantom)
        form.addRow("model", self.model_choice)
        model_row = QHBoxLayout()
        for w in (self.model_path, self.browse_model):
            model_row.addWidget(w)
        form.addRow("model file", model_row)
        form.addRow("model card", self.card)
        form.addRow("input planes", self.inputs)
        z_row = QHBoxLayout()
        for w in (self.z_start, QLabel("to"), self.z_end):
            z_row.addWidget(w)
        form.addRow("virtual z", z_row)
        form.addRow("z step", self.z_step)
        form.addRow("anchor exposure", self.exposure)
        tl = QHBoxLayout()
        for w in (self.time_points, QLabel("every"), self.interval):
            tl.addWidget(w)
        form.addRow("time points", tl)
        form.addRow("blind check every", self.blind)
        form.addRow("device", self.device)
        out = QHBoxLayout()
        out.addWidget(self.output)
        out.addWidget(self.browse_output)
        form.addRow("output", out)
        form.addRow("", self.overwrite)
        settings = QGroupBox("Acquisition")
        s_lay = QVBoxLayout(settings)
        s_lay.addLayout(form)
        s_lay.addStretch(1)
        # the run's controls and status never scroll away: a refusal, a failure and the end of a run
        # are always in sight, whatever the screen
        run_box = QGroupBox("Run")
        r_lay = QVBoxLayout(run_box)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.stop_button)
        buttons.addWidget(self.snap_button)
        buttons.addWidget(self.live_button)
        r_lay.addLayout(buttons)
        during = QHBoxLayout()  # what can be changed while a run goes
        during.addWidget(self.toggle, 1)
        during.addWidget(self.pause_button)
        during.addWidget(self.blind_now_button)
        r_lay.addLayout(during)
        r_lay.addWidget(self.toggle_note)
        r_lay.addWidget(self.plan_summary)
        r_lay.addWidget(self.progress)
        r_lay.addWidget(self.timing)
        r_lay.addWidget(self.dose)
        r_lay.addWidget(self.virtual_progress)
        r_lay.addWidget(self.throughput)
        r_lay.addWidget(self.message)
        r_lay.addWidget(self.finish_button)
        r_lay.addWidget(self.open_button)

        self.measured_view = PlaneView("no measured plane yet")
        self.measured_title = QLabel("latest measured plane")
        self.measured_title.setWordWrap(True)
        self.measured_slider = QSlider(
            Qt.Orientation.Horizontal
        )  # the time point's other measured planes (2 or a stack)
        self.measured_slider.setVisible(False)
        measured = QGroupBox("Measured")
        m_lay = QVBoxLayout(measured)
        m_lay.addWidget(self.measured_title)
        m_lay.addWidget(self.measured_view, 1)
        m_lay.addWidget(self.measured_slider)
        self.virtual_view = StackView("Virtual (Deep-Z)")
        self.show_neurons = QCheckBox("find neurons")
        self.show_neurons.setToolTip(
            "Detect neurons in 3D in each virtual stack and circle them on the plane shown "
            "(docs/tracking.md); runs beside the acquisition, newest stack first."
        )
        self.neuron_count = QLabel("")
        n_row = QHBoxLayout()
        n_row.addWidget(self.show_neurons)
        n_row.addWidget(self.neuron_count, 1)
        self.virtual_view.add_row(n_row)
        self.reference_view = StackView("Reference (blind check)")
        views = QGridLayout()
        views.addWidget(measured, 0, 0)
        views.addWidget(self.virtual_view, 0, 1)
        views.addWidget(self.reference_view, 1, 1)
        # a stack view holds two images (plane and XZ) and their controls: 2.5x the measured column's width
        # gives each about the measured plane's size (it was a quarter of it)
        views.setColumnStretch(0, 2)
        views.setColumnStretch(1, 5)
        self.colors = QComboBox()
        self.colors.addItems(COLORMAPS)
        self.colors.setToolTip("Colour map of the images")
        self.readout = QLabel("")  # the pixel under the mouse, in whichever view it points at
        self.readout.setToolTip("Point at an image: its pixel (column, row) and value")
        look = QHBoxLayout()
        look.addWidget(QLabel("colours"))
        look.addWidget(self.colors)
        look.addWidget(self.readout, 1)
        views.addLayout(look, 2, 0, 1, 2)
        scroll = QScrollArea()  # the settings scroll where the screen is short (1280x800 laptops)
        scroll.setWidget(settings)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        bar = scroll.verticalScrollBar()
        scroll.setMinimumWidth(
            settings.minimumSizeHint().width() + (bar.sizeHint().width() if bar else 0) + 4
        )
        run_box.setMaximumWidth(scroll.minimumWidth())
        # the run box takes the height its wrapped lines need; the settings scroll in what is left
        run_box.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
        scroll.setMinimumHeight(120)
        left = QVBoxLayout()
        left.addWidget(scroll, 1)
        left.addWidget(run_box)
        lay = QHBoxLayout(self)
        lay.addLayout(left)
        lay.addLayout(views, 1)

    def _wire(self) -> None:
        for w in (self.backend, self.phantom, self.model_choice, self.device):
            w.currentIndexChanged.connect(self._revalidate)
        for w in (self.model_path, self.output):
            w.textChanged.connect(self._revalidate)
        for w in (self.z_start, self.z_end, self.z_step, self.exposure, self.interval):
            w.valueChanged.connect(self._revalidate)
        for w in (self.port, self.time_points, self.blind):
            w.valueChanged.connect(self._revalidate)
        self.overwrite.toggled.connect(self._revalidate)
        self.toggle.toggled.connect(self._on_toggle)
        self.browse_model.clicked.connect(self._browse_model)
        self.browse_output.clicked.connect(self._browse_output)
        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        self.pause_button.toggled.connect(self._on_pause)
        self.blind_now_button.clicked.connect(self._blind_check_now)
        self.virtual_view.slider.valueChanged.connect(self._sync_reference)
        self.measured_slider.valueChanged.connect(self._show_measured)
        for name, view in (
            ("measured", self.measured_view),
            ("virtual", self.virtual_view.plane),
            ("virtual XZ", self.virtual_view.xz),
            ("reference", self.reference_view.plane),
            ("reference XZ", self.reference_view.xz),
        ):
            view.hovered.connect(
                lambda text, name=name: self.readout.setText(f"{name}: {text}" if text else "")
            )
            self.colors.currentTextChanged.connect(view.set_colormap)
        self.snap_button.clicked.connect(lambda: self._look(frames=1))
        self.live_button.toggled.connect(lambda on: self._look(frames=None) if on else self.runner.stop())
        self.runner.live_ended.connect(self._on_live_ended)
        self.runner.blind_check.connect(self._on_blind_check)
        r = self.runner
        r.started.connect(self._on_started)
        r.image.connect(self._on_image)
        r.virtual.connect(self._on_virtual)
        r.neurons.connect(self._on_neurons)
        r.inferred.connect(self._on_inferred)
        self.finish_button.clicked.connect(self._make_remaining)
        self.open_button.clicked.connect(self._open_in_napari)
        self.show_neurons.toggled.connect(self._toggle_neurons)
        r.progress.connect(lambda done, total: self.progress.setValue(done))
        r.stats.connect(self._on_stats)
        r.finished.connect(self._on_finished)
        r.failed.connect(self._on_failed)

    # -- settings ----------------------------------------------------------------------------
    def request(self) -> AcquisitionRequest:
        """The acquisition the fields describe (its values validated: :class:`SettingsError`)."""
        choice = self.model_choice.currentIndex()
        return self._base.changed(
            output=Path(self.output.text().strip()),
            time_points=self.time_points.value(),
            interval_s=self.interval.value(),
            z_start_um=self.z_start.value(),
            z_end_um=self.z_end.value(),
            z_step_um=self.z_step.value(),
            planes=choice + 1 if choice < 2 else None,
            model=Path(self.model_path.text().strip()) if choice == 2 else None,
            exposure_ms=self.exposure.value(),
            blind_check_every=self.blind.value(),
            device=self.device.currentText(),
            deepz=self.toggle.isChecked(),
            overwrite=self.overwrite.isChecked(),
            microscope=self._microscope(),
        )

    def _microscope(self) -> MicroscopeSpec:
        """The microscope the fields name (the simulator's seed, camera and configuration as given)."""
        if self.backend.currentIndex() == 1:
            return MicroManagerSpec(port=self.port.value())
        given = self._base.microscope
        simulator = given if isinstance(given, SimulatorSpec) else SimulatorSpec()
        return simulator.changed(phantom=self.phantom.currentText())

    def _show_microscope(self, spec: MicroscopeSpec) -> None:
        """The microscope fields as ``spec`` says."""
        self.backend.setCurrentIndex(0 if isinstance(spec, SimulatorSpec) else 1)
        if isinstance(spec, MicroManagerSpec):
            self.port.setValue(spec.port)
        else:
            self.phantom.setCurrentText(spec.phantom)

    # -- acquisition settings files (as Micro-Manager's MDA window saves and loads them) -------------
    def save_acquisition(self, path: Path) -> None:
        """Write the fields' acquisition to a JSON file (refused, with the reason, when the fields are not
        valid or ``path`` is another tool's file)."""
        write_settings_file(path, self.request())  # SettingsError names what is wrong

    def load_acquisition(self, path: Path) -> None:
        """Set the fields from a settings file written by :meth:`save_acquisition` (validated: a value out
        of range or another tool's file is refused by name, and nothing changes)."""
        self._apply(read_settings_file(path))  # SettingsError names each bad value

    def _apply(self, r: AcquisitionRequest) -> None:
        """The fields as ``r`` describes them (the output moved on to a free name, replace unticked)."""
        self._base = r
        self._show_microscope(r.microscope)
        self.model_choice.setCurrentIndex(2 if r.model else (r.planes or 1) - 1)
        self.model_path.setText(str(r.model) if r.model else "")
        for spin, value in (
            (self.z_start, r.z_start_um),
            (self.z_end, r.z_end_um),
            (self.z_step, r.z_step_um),
            (self.exposure, r.exposure_ms),
            (self.interval, r.interval_s),
        ):
            spin.setValue(value)
        self.time_points.setValue(r.time_points)
        self.blind.setValue(r.blind_check_every)
        self.device.setCurrentText(r.device)
        self.toggle.setChecked(r.deepz)
        self.overwrite.setChecked(False)
        self.output.setText(str(next_free_output(r.output)))
        self.validate()

    def _revalidate(self, *_: object) -> None:
        """A field changed: check the settings again."""
        self.validate()

    def validate(self) -> bool:
        """Check the settings; show the model card or what is wrong; enable Start accordingly."""
        problem = self._problem()
        self.show_message(problem, error=True)
        return problem is None

    def _problem(self) -> str | None:
        """What is wrong with the settings (None: nothing); updates the card and Start button."""
        is_file = self.model_choice.currentIndex() == 2
        if not self.runner.running:  # during a run every field that defines it stays locked
            self.model_path.setEnabled(is_file)
            self.browse_model.setEnabled(is_file)
            self.port.setEnabled(self.backend.currentIndex() == 1)
            self.phantom.setEnabled(self.backend.currentIndex() == 0)
        problem = None
        if is_file and not self.model_path.text().strip():
            problem = "Choose a model file (or one of the shipped models)."
        elif not self.output.text().strip():
            problem = "Choose an output path for the OME-Zarr container."
        else:
            try:
                request = self.request()
                plan = prepare(request, self._model_for(request.model_path)).plan
            except DeepZError as e:
                problem = in_panel_words(str(e))
            else:
                self.inputs.setText(
                    f"{len(plan.anchor_z())} measured at z = "
                    + ", ".join(f"{z:+.1f}" for z in plan.anchor_z())
                    + f" µm for {len(plan.requested_z())} virtual planes "
                    f"({plan.dose_ratio:.0f}x fewer planes exposed)"
                )
                problem = self._size_plan(request, plan)
        if self.model is None:
            self.card.setPlainText("")
        if problem is not None:
            self.plan_summary.setText("")
        if not self.runner.running:
            self.start_button.setEnabled(problem is None)
            self.start_button.setToolTip(in_panel_words(problem) if problem else "Start the acquisition")
        return problem

    def _size_plan(self, request: AcquisitionRequest, plan: DeepZPlan) -> str | None:
        """Show the plan's images, bytes, duration and light; what refuses it (no room on the disk)."""
        scope = request.microscope
        frame = (scope.frame, scope.frame) if isinstance(scope, SimulatorSpec) else self._frame_yx
        estimate = PlanEstimate.of(
            plan,
            request.time_points,
            request.interval_s,
            len(request.positions_xy_um or ((0.0, 0.0),)),
            frame or (0, 0),
            deepz=request.deepz,
        )
        self._estimate = estimate
        now = datetime.datetime.now()
        planes = [f"{estimate.measured_planes:,} measured"]
        if estimate.virtual_planes:
            planes.append(f"{estimate.virtual_planes:,} virtual")
        if estimate.reference_planes:
            planes.append(f"{estimate.reference_planes:,} reference")
        size = f"up to {size_text(estimate.bytes)} on disk" if frame else "size: once the camera is seen"
        lines = [
            f"Plan: {' · '.join(planes)} planes",
            f"{size} · about {duration_text(estimate.duration_s)}, until {when_text(estimate.end(now), now)}",
            f"light: {estimate.exposure_s:.3g} s exposure, {estimate.light_saving:.1f}x less than z-stacks",
        ]
        problem = None
        free = free_space(request.output)
        if frame and free is not None and estimate.bytes > free:
            problem = (
                f"The plan needs up to {size_text(estimate.bytes)} and {size_text(free)} is free where "
                f"{request.output.name} goes: fewer time points or virtual planes, or an output on "
                "another disk."
            )
        elif estimate.duration_s > 7 * 86400:
            lines.append(f"Note: this run lasts {duration_text(estimate.duration_s)}.")
        self.plan_summary.setText("\n".join(lines))
        return problem

    def _model_for(self, path: Path) -> DeepZModel:
        """The loaded model of ``path`` (loaded again only when the path or file changes)."""
        from mm_deepz.modelfile import load_model

        key = (path, path.stat().st_mtime_ns if path.is_file() else None)
        if self.model is None or self._model_key != key:
            self.model = None
            self.model = load_model(path)
            self._model_key = key
            self.card.setPlainText(card_text(self.model))
        return self.model

    def show_message(self, text: str | None, error: bool = False) -> None:
        """Show ``text`` in the status line (red when ``error``; nothing: the settings' own notes)."""
        if not text and self.device.currentText() == "cuda" and not _gpu_available():
            text = "No GPU on this computer: Deep-Z will run on the CPU (slower)."
        if not text:
            text = self._pace_note()
        self.message.setText(in_panel_words(text or ""))
        self.message.setStyleSheet("color: #c62828;" if error else "color: palette(text);")

    def _pace_note(self) -> str:
        """Whether the model kept up in its last run here with this device, against what this plan asks."""
        speed = self._speed.get((str(self.model.sha256), self.device.currentText())) if self.model else None
        if not speed or self._estimate is None:
            return ""
        # a time point takes its interval, or (as fast as possible) its exposures, blind checks averaged in
        needed = self._estimate.virtual_planes_per_s
        if needed <= speed:
            return ""
        return (
            f"The model made {speed:.1f} virtual planes/s in its last run here; this plan asks about "
            f"{needed:.0f}/s: virtual stacks will queue and be made after the last time point (measured "
            "data is not affected). A longer interval keeps them live."
        )

    def _browse_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Deep-Z model", "", "Deep-Z models (*.pt *.zip)")
        if path:
            self.model_path.setText(path)

    def _browse_output(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Folder for the OME-Zarr container")
        if path:
            self.output.setText(str(next_free_output(Path(path) / "deepz_run.ome.zarr")))

    def _next_output(self) -> None:
        """After a run, propose a fresh container name; replacing stays an explicit choice per run."""
        changes: tuple[tuple[QWidget, Callable[[], None]], ...] = (
            (self.overwrite, lambda: self.overwrite.setChecked(False)),
            (
                self.output,
                lambda: self.output.setText(str(next_free_output(Path(self.output.text().strip())))),
            ),
        )
        for widget, change in changes:
            widget.blockSignals(True)  # the run's closing message stays on screen; _problem() follows
            change()
            widget.blockSignals(False)

    # -- run control -------------------------------------------------------------------------
    def start(self) -> None:
        """Start an acquisition with the current settings (refused with a message if invalid)."""
        if not self.validate():
            return
        request = self.request()
        if (
            request.overwrite
            and request.output.is_dir()
            and is_container(request.output)
            and not self._confirm(
                "Replace the run?",
                f"{request.output} holds an mm-deepz run. Replace it? It is deleted once the "
                "new run's container exists.",
            )
        ):
            return
        try:
            self.runner.start(request, model=self._model_for(request.model_path))
        except (DeepZError, RuntimeError) as e:
            self.show_message(str(e), error=True)
            return
        self.summary = None
        self._reference.clear()
        self._clear_views()
        self.progress.setRange(0, request.time_points)
        self.progress.setValue(0)
        self._set_running(True)
        self.show_message("Opening the microscope…")

    def _open_in_napari(self) -> None:
        """The finished run in napari, in its own process (the panel stays usable); a napari that exits
        with an error is reported under the run's summary (its last words, from its log)."""
        import tempfile

        log = tempfile.NamedTemporaryFile(prefix="mm-deepz-napari-", suffix=".log", delete=False)  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "napari", "--plugin", "mm-deepz", str(self._finished_output)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.show_message(f"{self._run_text}\nOpening {self._finished_output} in napari…")
        self._watch_napari(proc, Path(log.name), tries=20)

    def _watch_napari(self, proc: subprocess.Popen[bytes], log: Path, tries: int) -> None:
        """Look at the napari process twice a second for its first 10 s: report an early failure."""
        code = proc.poll()
        if code is None:
            if tries > 0:
                QTimer.singleShot(500, lambda: self._watch_napari(proc, log, tries - 1))
            return
        if code != 0:
            last = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
            self.show_message(
                f"{self._run_text}\nnapari could not open the run (exit status {code})"
                + (f": {last[0]}" if last else "")
                + f". Its log: {log}",
                error=True,
            )

    def _clear_views(self) -> None:
        """Nothing of the last run stays on screen when a new one starts."""
        self.measured_view.clear()
        self.measured_title.setText("latest measured plane")
        self._measured, self._measured_t = {}, -1
        self.measured_slider.setVisible(False)
        self._blind_scores, self._reference_t = {}, -1
        for view in (self.virtual_view, self.reference_view):
            view.clear()
        self.dose.setValue(0)
        self.dose.setFormat("light: -")
        self.virtual_progress.setValue(0)
        self.virtual_progress.setFormat("virtual stacks: -")
        self.throughput.setText("model: -")
        self.finish_button.setVisible(False)
        self.open_button.setVisible(False)
        self.toggle_note.setText("")

    def _confirm(self, title: str, question: str) -> bool:
        """Ask the user (Yes / No, No the default)."""
        answer = QMessageBox.question(self, title, question, QMessageBox.Yes | QMessageBox.No, QMessageBox.No)
        return bool(answer == QMessageBox.Yes)

    def stop(self) -> None:
        """Stop the running acquisition after the event in progress; the virtual stack the model is
        making is finished, the rest are recorded as still to make (offered after the run)."""
        self.runner.stop()
        self.stop_button.setEnabled(False)
        waiting = (
            f"; the {self._queued} virtual stack(s) waiting for the model are listed to make afterwards"
            if self._queued
            else ""
        )
        self.show_message(
            f"Stopping: the frame being exposed is finished and written, measured data is kept{waiting}…"
        )

    def _on_pause(self, on: bool) -> None:
        """Pause or resume the run (the button's state)."""
        if not self.runner.pause(on):
            return
        self.pause_button.setText("Resume" if on else "Pause")
        now = time.monotonic()
        if on:
            self._paused_at = now
        elif self._paused_at is not None:
            self._started_at += now - self._paused_at  # the countdown and ETA leave the pause out
            self._paused_at = None
        words = "Pausing: the time point under way is finished, then the run waits (Resume goes on)."
        self.show_message(words if on else "")

    def _blind_check_now(self) -> None:
        """A blind check at the next time point, besides the planned ones."""
        t = self.runner.ask_blind_check()
        if t is not None:
            off = "" if self.toggle.isChecked() else " (virtual z-stacking is off: no virtual stack to score)"
            self.toggle_note.setText(f"Blind check asked for: at t={t}{off}")

    def _on_toggle(self, on: bool) -> None:
        """The toggle was clicked: during a run, say from which time point it applies."""
        t = self.runner.set_enabled(on)
        if t is not None and self.runner.running:
            self.toggle_note.setText(
                f"Virtual z-stacking {'on' if on else 'off'} from t={t}"
                + ("" if t < self.progress.maximum() else " (no time point left to acquire)")
            )

    def _set_running(self, running: bool) -> None:
        if not running:
            self._clock.stop()
            self.timing.setText("")
        self.start_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        self.blind_now_button.setEnabled(running)
        self.pause_button.setEnabled(running)
        if not running:
            self.pause_button.blockSignals(True)
            self.pause_button.setChecked(False)
            self.pause_button.setText("Pause")
            self.pause_button.blockSignals(False)
        self.snap_button.setEnabled(not running)
        self.live_button.setEnabled(not running)
        for w in (
            self.backend,
            self.port,
            self.phantom,
            self.model_choice,
            self.model_path,
            self.z_start,
            self.z_end,
            self.z_step,
            self.exposure,
            self.time_points,
            self.interval,
            self.blind,
            self.device,
            self.output,
            self.browse_output,
            self.browse_model,
            self.overwrite,
        ):
            w.setEnabled(not running)

    def _show_timing(self) -> None:
        acq = self.runner.acquisition
        if acq is not None and acq.paused_before is not None:
            self.timing.setText(f"paused before t={acq.paused_before}")
            return
        self.timing.setText(
            timing_text(
                self.progress.value(),
                self.progress.maximum(),
                time.monotonic() - self._started_at,
                self.interval.value(),
            )
        )

    def _on_started(self, acq: DeepZAcquisition) -> None:
        self._started_at = time.monotonic()
        self._clock.start()
        self._z = acq.plan.requested_z()
        self._anchor_z = acq.plan.anchor_z()
        self._pixel_um = acq.geometry.pixel_size_um
        self.show_message(f"Acquiring to {acq.settings.output}")

    def _on_image(self, kind: str, t: int, zi: int, plane: np.ndarray) -> None:
        if kind == "live":
            self.measured_view.set_image(plane)
            self._frame_yx = (int(plane.shape[0]), int(plane.shape[1]))
            preset = self._base.input_preset
            self.measured_title.setText(
                f"{'live' if self.live_button.isChecked() else 'snap'}: {preset}, "
                f"{self.exposure.value():g} ms, where the stage is (image {t + 1})"
            )
            self.show_message("")
            return
        if kind == "reference":
            self._reference[zi] = plane
            if len(self._reference) == len(self._z):
                self.reference_view.set_stack(
                    np.stack([self._reference[i] for i in range(len(self._z))]),
                    self._z,
                    self._pixel_um,
                    measured_z=self._anchor_z,
                )
                self._reference_t = t
                self._title_reference(t)
                self._reference.clear()
            return
        if t != self._measured_t:  # a new time point: its planes replace the last one's
            self._measured, self._measured_t = {}, t
        self._measured[zi] = (plane, kind)
        order = sorted(self._measured)
        self.measured_slider.blockSignals(True)
        self.measured_slider.setRange(0, len(order) - 1)
        self.measured_slider.setValue(order.index(zi))  # the newest plane; the slider browses the others
        self.measured_slider.blockSignals(False)
        self.measured_slider.setVisible(len(order) > 1)
        self._show_measured(order.index(zi))

    def _show_measured(self, i: int) -> None:
        """Plane ``i`` (in z order) of the time point's measured planes."""
        order = sorted(self._measured)
        zi = order[i]
        plane, kind = self._measured[zi]
        self.measured_view.set_image(plane)
        what = "Deep-Z input plane" if kind == "anchor" else "full stack"
        count = f", plane {i + 1} of {len(order)}" if len(order) > 1 else ""
        self.measured_title.setText(f"t={self._measured_t}, z = {self._z[zi]:+.1f} µm ({what}{count})")

    def _on_blind_check(self, t: int, metrics: dict[str, Any]) -> None:
        """A blind check's scores, on the reference view (the virtual stack against the scanned one)."""
        worst = min(metrics.get("ssim_per_plane") or [metrics["ssim_mean"]])
        self._blind_scores[t] = (
            f"virtual vs scanned: SSIM {metrics['ssim_mean']:.3f} (worst plane {worst:.3f}), "
            f"PSNR {metrics['psnr_mean']:.1f} dB"
        )
        self._title_reference(t)

    def _title_reference(self, t: int) -> None:
        if self._reference_t == t:  # its scores arrive before or after its last plane
            self.reference_view.setTitle(f"Reference (blind check, t={t})")
            self.reference_view.note.setText(self._blind_scores.get(t, ""))

    def _on_virtual(self, t: int, stack: np.ndarray, z_um: np.ndarray) -> None:
        self.virtual_view.set_stack(stack, z_um, self._pixel_um, measured_z=self._anchor_z)
        self.virtual_view.setTitle(f"Virtual (Deep-Z, t={t})")
        self._virtual_t = t
        if self.show_neurons.isChecked():  # the last stack's circles are not this one's
            self.virtual_view.set_neurons(None, self._pixel_um)
            self.neuron_count.setText(f"finding neurons at t={t}…")

    def _make_remaining(self) -> None:
        self.finish_button.setEnabled(False)
        self.start_button.setEnabled(False)
        self.progress.setValue(0)
        self.show_message(f"Making the remaining virtual stacks of {self._finished_output}…")
        if self._finished_output is not None:
            self.runner.make_remaining(self._finished_output, self.device.currentText())

    def _on_inferred(self, result: InferSummary | str) -> None:
        self.finish_button.setEnabled(True)
        if isinstance(result, str):
            self.show_message(f"The remaining virtual stacks could not be made: {result}", error=True)
        else:
            self.finish_button.setVisible(False)
            self.show_message(
                f"{result.made} virtual stacks made in {result.seconds:.1f} s: "
                f"{self._finished_output} is complete."
            )
        self._problem()

    def _toggle_neurons(self, on: bool) -> None:
        self.runner.find_neurons = on
        if not on:
            self.virtual_view.set_neurons(None, self._pixel_um)
            self.neuron_count.setText("")
            return
        view = self.virtual_view
        if self.runner.running:
            self.neuron_count.setText("from the next virtual stack…")
        elif view.stack is not None and view.z_um is not None:  # after a run: the stack on show
            self.runner.find_neurons_in(self._virtual_t, view.stack, view.z_um, self._pixel_um)
            self.neuron_count.setText(f"finding neurons at t={self._virtual_t}…")
        else:
            self.neuron_count.setText("no virtual stack yet: neurons are found in each one during a run")

    def _on_neurons(self, t: int, neurons: pd.DataFrame) -> None:
        if not self.show_neurons.isChecked() or t != self._virtual_t:
            return  # unticked, or the circles of a stack no longer shown
        self.virtual_view.set_neurons(neurons, self._pixel_um)
        self.neuron_count.setText(f"{len(neurons)} neurons at t={t}")

    def _sync_reference(self, zi: int) -> None:
        z_um = self.reference_view.z_um
        if self.reference_view.stack is not None and z_um is not None and zi < len(z_um):
            self.reference_view.slider.setValue(zi)

    def _on_stats(self, s: LiveStats) -> None:
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
        self._queued = s.pending
        if s.virtual_planes_per_s and self.model is not None:
            self._speed[str(self.model.sha256), self.device.currentText()] = s.virtual_planes_per_s
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

    def _on_finished(self, summary: RunSummary) -> None:
        self.summary = summary
        self.runner.wait(5)  # the thread ends right after it reports
        self._set_running(False)
        self.progress.setValue(summary.time_points)  # the time points recorded, not those started
        text = (
            f"{'Stopped' if summary.aborted else 'Done'}: {summary.time_points} time points, "
            f"{summary.planes_measured} planes measured, {summary.planes_synthesized} synthesized, "
            f"{summary.seconds:.1f} s → {Path(summary.output).resolve()}"
        )
        if summary.stop_reason and summary.stop_reason != "aborted by the user":
            text += f"\nStopped because: {summary.stop_reason}"
        if summary.errors:
            text += f"\n{len(summary.errors)} problem(s): {summary.errors[0]}"
        for warning in summary.warnings[:1]:
            text += f"\n{warning}"
        if summary.virtual_pending:
            text += f"\n{summary.virtual_pending} virtual stacks are still to make from the measured planes."
        self._finished_output = Path(summary.output).resolve()
        self.finish_button.setVisible(bool(summary.virtual_pending))
        self.open_button.setVisible(_napari_installed())
        self._run_text = text
        self.show_message(text, error=bool(summary.errors or summary.warnings))
        self._next_output()
        self._problem()
        self._close_if_asked()

    def _on_failed(self, message: str) -> None:
        self.runner.wait(5)
        self._set_running(False)
        self.show_message(message, error=True)
        if not self._looking:  # a run that failed: the next one goes to a new container
            self._next_output()
        self._problem()
        self._close_if_asked()

    # -- snap and live ---------------------------------------------------------------------
    def _look(self, frames: int | None) -> None:
        """Snap one image, or go live, at the input preset and exposure."""
        try:
            self.runner.live(self.request(), frames)
        except (DeepZError, RuntimeError) as e:
            self.show_message(str(e), error=True)
            self.live_button.setChecked(False)
            return
        self._looking = True
        self.start_button.setEnabled(False)
        self.snap_button.setEnabled(False)
        self.live_button.setEnabled(frames is None)  # live ends with a second click
        self.show_message("Opening the microscope…" if frames is None else "Snapping…")

    def _on_live_ended(self) -> None:
        self.runner.wait(5)
        self._looking = False
        self.live_button.blockSignals(True)
        self.live_button.setChecked(False)
        self.live_button.blockSignals(False)
        for button in (self.snap_button, self.live_button):
            button.setEnabled(True)
        self._problem()  # Start as the settings allow

    def closeEvent(self, event: QCloseEvent | None) -> None:
        """Ask before a running acquisition is stopped. Yes stops it as Stop does and the window closes
        once its container is finished (the window stays responsive meanwhile); virtual stacks not made
        by then are recorded as still to make."""
        if self.runner.running:
            if not self._closing and self._confirm(
                "Stop the acquisition?",
                "An acquisition is running. Stop it and close? What was measured so far is kept in its "
                "container; virtual stacks not made yet are recorded there as still to make.",
            ):
                self._closing = True
                self.stop()
                self.show_message(
                    "Stopping the acquisition; the window closes once its container is finished…"
                )
            if event is not None:
                event.ignore()
            return
        super().closeEvent(event)

    def _close_if_asked(self) -> None:
        """The run the user closed the window on has ended: close it now (the top-level window, which
        remembers the fields, when the panel sits in one)."""
        if self._closing:
            self._closing = False
            top = self.window() or self

            def close() -> None:
                top.close()

            QTimer.singleShot(0, close)


def _value(widget: QWidget) -> object:
    """A field's value (what QSettings keeps)."""
    if isinstance(widget, QComboBox):
        return widget.currentText()
    if isinstance(widget, QCheckBox):
        return widget.isChecked()
    if isinstance(widget, QLineEdit):
        return widget.text()
    return widget.value()


def _set_value(widget: QWidget, value: object) -> None:
    """Set a field from a remembered value (QSettings gives text from its file)."""
    if isinstance(widget, QComboBox):
        widget.setCurrentText(str(value))
    elif isinstance(widget, QCheckBox):
        widget.setChecked(str(value).lower() in ("true", "1"))
    elif isinstance(widget, QLineEdit):
        widget.setText(str(value))
    elif isinstance(widget, QSpinBox):
        widget.setValue(int(float(str(value))))
    else:
        widget.setValue(float(str(value)))


def _napari_installed() -> bool:
    return importlib.util.find_spec("napari") is not None


def _gpu_available() -> bool:
    import torch

    return torch.cuda.is_available()


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
