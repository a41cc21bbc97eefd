"""The panel's acquisition settings: a form whose fields describe one :class:`AcquisitionRequest`.

:class:`SettingsForm` owns the fields (microscope, model, z range, exposure, time-lapse, device,
output), turns them into a request and back, remembers them between sessions, and loads the model
the fields name (its card shown). It checks nothing itself: the panel checks the request it gives.
"""

from __future__ import annotations

from pathlib import Path

from PyQt5.QtCore import QSettings, pyqtSignal
from PyQt5.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from acquisition_hooks import AcquisitionRequest, DeepZPlan
from acquisition_hooks.fields import LIMITS
from acquisition_hooks.request import PHANTOMS, MicroManagerSpec, MicroscopeSpec, SimulatorSpec
from mm_deepz.bridge import DEFAULT_PORT
from mm_deepz.io import next_free_output
from mm_deepz.modelfile import DeepZModel

from .texts import card_text

MODEL_CHOICES = ("1 plane (shipped)", "2 planes (shipped)", "model file")


def spin(
    lo: float, hi: float, value: float, step: float = 1.0, decimals: int = 2, suffix: str = ""
) -> QDoubleSpinBox:
    """A number field from ``lo`` to ``hi``."""
    box = QDoubleSpinBox()
    box.setRange(lo, hi)
    box.setDecimals(decimals)
    box.setSingleStep(step)
    box.setValue(value)
    box.setSuffix(suffix)
    return box


def int_spin(lo: int, hi: int, value: int, special: str | None = None) -> QSpinBox:
    """A whole-number field from ``lo`` to ``hi`` (``special``: the text shown at ``lo``)."""
    box = QSpinBox()
    box.setRange(lo, hi)
    box.setValue(value)
    if special:
        box.setSpecialValueText(special)
    return box


class SettingsForm(QGroupBox):
    """The acquisition's fields; :attr:`changed` tells of every edit."""

    #: a field changed (the request it describes may have)
    changed = pyqtSignal()

    def __init__(self, request: AcquisitionRequest, parent: QWidget | None = None) -> None:
        super().__init__("Acquisition", parent)
        #: what the form has no field for (positions, power, the simulator's seed and camera)
        self.base = request
        #: the model the fields name, once loaded
        self.model: DeepZModel | None = None
        self._model_key: tuple[object, ...] | None = None
        self._build(request)
        self._wire()

    # -- layout ----------------------------------------------------------------------------
    def _build(self, r: AcquisitionRequest) -> None:
        self.backend = QComboBox()
        self.backend.addItems(["Simulator", "Micro-Manager"])
        self.port = int_spin(1, 65535, DEFAULT_PORT)
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
        self.z_start = spin(-over["z_abs_um"], over["z_abs_um"], r.z_start_um, suffix=" µm")
        self.z_end = spin(-over["z_abs_um"], over["z_abs_um"], r.z_end_um, suffix=" µm")
        # the step may be typed negative on purpose: the plan then says what is wrong
        self.z_step = spin(-100, 100, r.z_step_um, 0.1, 3, " µm")
        self.exposure = spin(0.01, over["exposure_ms"], r.exposure_ms, suffix=" ms")
        self.time_points = int_spin(1, int(over["time_points"]), r.time_points)
        self.interval = spin(0, over["interval_s"], r.interval_s, 0.5, suffix=" s")
        self.blind = int_spin(0, int(over["time_points"]), r.blind_check_every, special="off")
        self.device = QComboBox()
        self.device.addItems(["auto", "cpu", "cuda"])
        self.device.setCurrentText(r.device)
        self.output = QLineEdit(str(r.output))
        self.browse_output = QPushButton("…")
        self.overwrite = QCheckBox("replace an existing container")
        self.overwrite.setChecked(r.overwrite)
        self.compression = QCheckBox("compress planes (lossless)")
        self.compression.setToolTip(
            "Blosc-LZ4, about 5x smaller on disk, whenever the writer has time for it (planes that come "
            "faster than the codec are stored uncompressed, so the camera never waits); untick: all raw"
        )
        self.compression.setChecked(r.compression)

        form = QFormLayout()  # one or two fields a row: the panel fits a 1280-pixel-wide screen
        form.addRow("microscope", _row(self.backend, QLabel("port"), self.port))
        form.addRow("specimen", self.phantom)
        form.addRow("model", self.model_choice)
        form.addRow("model file", _row(self.model_path, self.browse_model))
        form.addRow("model card", self.card)
        form.addRow("input planes", self.inputs)
        form.addRow("virtual z", _row(self.z_start, QLabel("to"), self.z_end))
        form.addRow("z step", self.z_step)
        form.addRow("anchor exposure", self.exposure)
        form.addRow("time points", _row(self.time_points, QLabel("every"), self.interval))
        form.addRow("blind check every", self.blind)
        form.addRow("device", self.device)
        form.addRow("output", _row(self.output, self.browse_output))
        form.addRow("", self.overwrite)
        form.addRow("", self.compression)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addStretch(1)

    def _wire(self) -> None:
        for box in (self.backend, self.phantom, self.model_choice, self.device):
            box.currentIndexChanged.connect(self.changed)
        for line in (self.model_path, self.output):
            line.textChanged.connect(self.changed)
        for number in (self.z_start, self.z_end, self.z_step, self.exposure, self.interval):
            number.valueChanged.connect(self.changed)
        for whole in (self.port, self.time_points, self.blind):
            whole.valueChanged.connect(self.changed)
        for tick in (self.overwrite, self.compression):
            tick.toggled.connect(self.changed)
        self.browse_model.clicked.connect(self._browse_model)
        self.browse_output.clicked.connect(self._browse_output)

    # -- the request -----------------------------------------------------------------------
    def request(self, deepz: bool) -> AcquisitionRequest:
        """The acquisition the fields describe, with virtual z-stacking ``deepz`` (its values validated:
        :class:`SettingsError`)."""
        choice = self.model_choice.currentIndex()
        return self.base.changed(
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
            deepz=deepz,
            overwrite=self.overwrite.isChecked(),
            compression=self.compression.isChecked(),
            microscope=self._microscope(),
        )

    def apply(self, r: AcquisitionRequest) -> None:
        """The fields as ``r`` describes them (the output moved on to a free name, replace unticked)."""
        self.base = r
        self._show_microscope(r.microscope)
        self.model_choice.setCurrentIndex(2 if r.model else (r.planes or 1) - 1)
        self.model_path.setText(str(r.model) if r.model else "")
        for box, value in (
            (self.z_start, r.z_start_um),
            (self.z_end, r.z_end_um),
            (self.z_step, r.z_step_um),
            (self.exposure, r.exposure_ms),
            (self.interval, r.interval_s),
        ):
            box.setValue(value)
        self.time_points.setValue(r.time_points)
        self.blind.setValue(r.blind_check_every)
        self.device.setCurrentText(r.device)
        self.compression.setChecked(r.compression)
        self.overwrite.setChecked(False)
        self.output.setText(str(next_free_output(r.output)))

    def missing(self) -> str | None:
        """What the user has not chosen yet (a model file, an output), before the request is checked."""
        if self.model_choice.currentIndex() == 2 and not self.model_path.text().strip():
            return "Choose a model file (or one of the shipped models)."
        if not self.output.text().strip():
            return "Choose an output path for the OME-Zarr container."
        return None

    def _microscope(self) -> MicroscopeSpec:
        """The microscope the fields name (the simulator's seed, camera and configuration as given)."""
        if self.backend.currentIndex() == 1:
            return MicroManagerSpec(port=self.port.value())
        given = self.base.microscope
        simulator = given if isinstance(given, SimulatorSpec) else SimulatorSpec()
        return simulator.changed(phantom=self.phantom.currentText())

    def _show_microscope(self, spec: MicroscopeSpec) -> None:
        """The microscope fields as ``spec`` says."""
        self.backend.setCurrentIndex(0 if isinstance(spec, SimulatorSpec) else 1)
        if isinstance(spec, MicroManagerSpec):
            self.port.setValue(spec.port)
        else:
            self.phantom.setCurrentText(spec.phantom)

    # -- what the fields show and allow ------------------------------------------------------
    def show_plan(self, plan: DeepZPlan | None) -> None:
        """The measured planes of ``plan`` (None: the settings are not valid); the card of its model."""
        if plan is not None:
            self.inputs.setText(
                f"{len(plan.anchor_z())} measured at z = "
                + ", ".join(f"{z:+.1f}" for z in plan.anchor_z())
                + f" µm for {len(plan.requested_z())} virtual planes "
                f"({plan.dose_ratio:.0f}x fewer planes exposed)"
            )
        if self.model is None:
            self.card.setPlainText("")

    def follow_choices(self) -> None:
        """Enable the fields the other fields' choices leave open (a model file, a port, a specimen)."""
        is_file = self.model_choice.currentIndex() == 2
        self.model_path.setEnabled(is_file)
        self.browse_model.setEnabled(is_file)
        self.port.setEnabled(self.backend.currentIndex() == 1)
        self.phantom.setEnabled(self.backend.currentIndex() == 0)

    def set_editable(self, editable: bool) -> None:
        """Lock every field (during a run, every field defines it) or unlock them."""
        for field in (
            self.backend,
            self.port,
            self.phantom,
            self.model_choice,
            self.model_path,
            self.browse_model,
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
            self.overwrite,
            self.compression,
        ):
            field.setEnabled(editable)
        if editable:
            self.follow_choices()

    def model_for(self, path: Path) -> DeepZModel:
        """The loaded model of ``path`` (loaded again only when the path or file changes)."""
        from mm_deepz.modelfile import load_model

        key = (path, path.stat().st_mtime_ns if path.is_file() else None)
        if self.model is None or self._model_key != key:
            self.model = None
            self.model = load_model(path)
            self._model_key = key
            self.card.setPlainText(card_text(self.model))
        return self.model

    def next_output(self) -> None:
        """After a run, propose a fresh container name; replacing stays an explicit choice per run
        (no :attr:`changed`: the run's closing message stays on screen)."""
        following = next_free_output(Path(self.output.text().strip()))
        for field in (self.overwrite, self.output):
            field.blockSignals(True)
        self.overwrite.setChecked(False)
        self.output.setText(str(following))
        for field in (self.overwrite, self.output):
            field.blockSignals(False)

    def _browse_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Deep-Z model", "", "Deep-Z models (*.pt *.zip)")
        if path:
            self.model_path.setText(path)

    def _browse_output(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Folder for the OME-Zarr container")
        if path:
            self.output.setText(str(next_free_output(Path(path) / "deepz_run.ome.zarr")))

    # -- remembered between sessions ---------------------------------------------------------
    def remembered(self) -> dict[str, QWidget]:
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
            "compression": self.compression,
        }


def _row(*widgets: QWidget) -> QHBoxLayout:
    row = QHBoxLayout()
    for w in widgets:
        row.addWidget(w)
    return row


def value_of(widget: QWidget) -> object:
    """A field's value (what QSettings keeps)."""
    if isinstance(widget, QComboBox):
        return widget.currentText()
    if isinstance(widget, QCheckBox):
        return widget.isChecked()
    if isinstance(widget, QLineEdit):
        return widget.text()
    if isinstance(widget, (QSpinBox, QDoubleSpinBox)):
        return widget.value()
    raise TypeError(f"no remembered value for a {type(widget).__name__}")


def set_value(widget: QWidget, value: object) -> None:
    """Set a field from a remembered value (QSettings gives text from its file)."""
    if isinstance(widget, QComboBox):
        widget.setCurrentText(str(value))
    elif isinstance(widget, QCheckBox):
        widget.setChecked(str(value).lower() in ("true", "1"))
    elif isinstance(widget, QLineEdit):
        widget.setText(str(value))
    elif isinstance(widget, QSpinBox):
        widget.setValue(int(float(str(value))))
    elif isinstance(widget, QDoubleSpinBox):
        widget.setValue(float(str(value)))


def restore(fields: dict[str, QWidget], settings: QSettings) -> None:
    """Set ``fields`` (key -> field) to what ``settings`` remembers of them."""
    for key, field in fields.items():
        if settings.contains(key):
            set_value(field, settings.value(key))
