"""The panel's live images: the measured planes, the virtual stack and the blind check's reference.

:class:`LiveViews` shows what a run reports as it arrives: each measured plane (a time point's
planes browsable), each virtual stack (with the neurons found in it), each reference stack with its
blind check's scores, in one colour map and with the pixel under the mouse read out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from PyQt5.QtCore import Qt
from PyQt5.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from .views import COLORMAPS, PlaneView, StackView

if TYPE_CHECKING:
    import pandas as pd

    from acquisition_hooks import DeepZPlan


class LiveViews(QWidget):
    """Measured, virtual and reference views of the run on show."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._z = np.zeros(0)
        self._anchor_z: tuple[float, ...] = ()
        self.pixel_um = 1.0
        self._measured: dict[int, tuple[np.ndarray, str]] = {}  # the shown time point's measured planes
        self._measured_t = -1
        self._reference: dict[int, np.ndarray] = {}  # the reference stack's planes as they arrive
        self._reference_t = -1  # the time point of the reference stack on show
        self._blind_scores: dict[int, str] = {}  # the blind checks' scores, by time point
        #: the time point of the virtual stack on show
        self.virtual_t = -1
        self._build()
        self._wire()

    def _build(self) -> None:
        self.measured_view = PlaneView("no measured plane yet")
        self.measured_title = QLabel("latest measured plane")
        self.measured_title.setWordWrap(True)
        # the time point's other measured planes (2 or a stack)
        self.measured_slider = QSlider(Qt.Orientation.Horizontal)
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
        self.colors = QComboBox()
        self.colors.addItems(COLORMAPS)
        self.colors.setToolTip("Colour map of the images")
        self.readout = QLabel("")  # the pixel under the mouse, in whichever view it points at
        self.readout.setToolTip("Point at an image: its pixel (column, row) and value")
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.addWidget(measured, 0, 0)
        grid.addWidget(self.virtual_view, 0, 1)
        grid.addWidget(self.reference_view, 1, 1)
        # a stack view holds two images (plane and XZ) and their controls: 2.5x the measured column's width
        # gives each about the measured plane's size
        grid.setColumnStretch(0, 2)
        grid.setColumnStretch(1, 5)
        look = QHBoxLayout()
        look.addWidget(QLabel("colours"))
        look.addWidget(self.colors)
        look.addWidget(self.readout, 1)
        grid.addLayout(look, 2, 0, 1, 2)

    def _wire(self) -> None:
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

    # -- a run ---------------------------------------------------------------------------------
    def begin(self, plan: DeepZPlan, pixel_um: float) -> None:
        """A run of ``plan`` started: its z grid and measured planes, its pixel size."""
        self._z = plan.requested_z()
        self._anchor_z = plan.anchor_z()
        self.pixel_um = pixel_um

    def clear(self) -> None:
        """Nothing of the last run stays on screen when a new one starts."""
        self.measured_view.clear()
        self.measured_title.setText("latest measured plane")
        self._measured, self._measured_t = {}, -1
        self.measured_slider.setVisible(False)
        self._blind_scores, self._reference_t = {}, -1
        self._reference.clear()
        for view in (self.virtual_view, self.reference_view):
            view.clear()

    def show_live(self, plane: np.ndarray, title: str) -> None:
        """A camera image taken outside a run (Snap, Live)."""
        self.measured_view.set_image(plane)
        self.measured_title.setText(title)

    def show_plane(self, kind: str, t: int, zi: int, plane: np.ndarray) -> None:
        """A plane the run measured: an input or full-stack plane (shown, the newest first) or a reference
        stack's (the stack shown once whole)."""
        if kind == "reference":
            self._reference[zi] = plane
            if len(self._reference) == len(self._z):
                self.reference_view.set_stack(
                    np.stack([self._reference[i] for i in range(len(self._z))]),
                    self._z,
                    self.pixel_um,
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

    def show_blind_check(self, t: int, metrics: dict[str, Any]) -> None:
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

    def show_virtual(self, t: int, stack: np.ndarray, z_um: np.ndarray) -> None:
        """A virtual stack made; the circles of the last one's neurons go."""
        self.virtual_view.set_stack(stack, z_um, self.pixel_um, measured_z=self._anchor_z)
        self.virtual_view.setTitle(f"Virtual (Deep-Z, t={t})")
        self.virtual_t = t
        if self.show_neurons.isChecked():
            self.virtual_view.set_neurons(None, self.pixel_um)
            self.neuron_count.setText(f"finding neurons at t={t}…")

    def show_neurons_found(self, t: int, neurons: pd.DataFrame) -> None:
        """The neurons found in the virtual stack of ``t``, circled if that stack is on show."""
        if not self.show_neurons.isChecked() or t != self.virtual_t:
            return  # unticked, or the circles of a stack no longer shown
        self.virtual_view.set_neurons(neurons, self.pixel_um)
        self.neuron_count.setText(f"{len(neurons)} neurons at t={t}")

    def hide_neurons(self) -> None:
        """No circles, no count."""
        self.virtual_view.set_neurons(None, self.pixel_um)
        self.neuron_count.setText("")

    def _sync_reference(self, zi: int) -> None:
        z_um = self.reference_view.z_um
        if self.reference_view.stack is not None and z_um is not None and zi < len(z_um):
            self.reference_view.slider.setValue(zi)
