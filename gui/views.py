"""Image views of the panel: one plane with contrast limits, and a stack with a z slider and XZ section."""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING

import numpy as np
from PyQt5.QtCore import QEvent, QObject, QPointF, QSize, Qt, pyqtSignal
from PyQt5.QtGui import QColor, QImage, QMouseEvent, QPainter, QPen, QPixmap, QResizeEvent, QWheelEvent
from PyQt5.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLayout,
    QSizePolicy,
    QSlider,
    QVBoxLayout,
    QWidget,
)
from typing_extensions import override

if TYPE_CHECKING:
    import pandas as pd

from mm_deepz.normalization import IntensityScale

#: the auto contrast stretches between these percentiles of the shown image
AUTO_PERCENTILES = (1.0, 99.9)


#: colour maps of the views (matplotlib's names, "gray" for plain grey)
COLORMAPS = ("gray", "magma", "viridis", "Greens")


def to_qimage(image: np.ndarray, low: float, high: float, colormap: str = "gray") -> QImage:
    """An 8-bit QImage of a 2D array, ``low`` -> the map's first colour (black for grey) and ``high``
    -> its last (white)."""
    span = high - low if high > low else 1.0
    grey = np.clip((np.asarray(image, np.float32) - low) * (255.0 / span), 0, 255).astype(np.uint8)
    h, w = grey.shape
    if colormap == "gray":
        grey = np.ascontiguousarray(grey)
        return QImage(grey.tobytes(), w, h, w, QImage.Format.Format_Grayscale8).copy()  # copy: own the pixels
    rgb = np.ascontiguousarray(_lut(colormap)[grey])
    return QImage(rgb.tobytes(), w, h, 3 * w, QImage.Format.Format_RGB888).copy()


@functools.cache
def _lut(colormap: str) -> np.ndarray:
    """256 RGB colours of a matplotlib colour map (uint8)."""
    from matplotlib import colormaps

    return np.asarray((colormaps[colormap](np.linspace(0, 1, 256))[:, :3] * 255).round(), dtype=np.uint8)


class PlaneView(QWidget):
    """A 2D image with auto or manual contrast limits and their histogram; ``aspect`` stretches rows (for
    XZ sections). Pointing at the image reports the pixel under the mouse (``hovered``); the mouse wheel
    zooms around it, a double click shows the whole image again."""

    hovered = pyqtSignal(str)  # "x 12, y 40: 153.0" (image pixels and value), "" off the image

    def __init__(
        self, placeholder: str = "no data yet", display_px: int = 256, parent: QWidget | None = None
    ):
        super().__init__(parent)
        self.image: np.ndarray | None = None
        #: markers drawn over the image: (N, 2) rows, columns in image pixels
        self.points = np.empty((0, 2))
        #: horizontal lines drawn across the image: (row in image pixels, colour) pairs
        self.rows: list[tuple[float, QColor]] = []
        #: the data auto contrast is taken from (a whole stack: one window for all its planes)
        self.scale_from: np.ndarray | None = None
        #: the colour map (one of :data:`COLORMAPS`)
        self.colormap = "gray"
        self.aspect = 1.0
        self._display_px = display_px
        self._placeholder = placeholder
        self._label = QLabel(placeholder)
        self._label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._label.setMinimumSize(display_px // 2, display_px // 2)
        # the image follows the room the window gives it (its pixmap does not push the layout)
        self._label.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Ignored)
        self._label.setStyleSheet("background: black; color: grey;")
        self._label.setMouseTracking(True)
        self._label.installEventFilter(self)
        #: magnification (1: the whole image) and the image pixel (row, column) at the centre of the view
        self.zoom = 1.0
        self.centre: tuple[float, float] | None = None
        self._crop = (0, 0)  # the image's first row and column on show
        #: the histogram of what the contrast window is taken from, the window marked on it
        self.histogram = QLabel()
        self.histogram.setFixedHeight(28)
        self.histogram.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Fixed)
        self.histogram.setToolTip(
            "Histogram of the image (of its stack, for a stack), the contrast window in yellow"
        )
        self.auto = QCheckBox("auto")
        self.auto.setChecked(True)
        self.low, self.high = QDoubleSpinBox(), QDoubleSpinBox()
        for spin, tip in ((self.low, "black level"), (self.high, "white level")):
            spin.setRange(-1e9, 1e9)
            spin.setDecimals(1)
            spin.setToolTip(tip)
            spin.setButtonSymbols(QDoubleSpinBox.NoButtons)
            spin.setMinimumWidth(52)
            spin.setSizePolicy(
                QSizePolicy.Ignored, QSizePolicy.Fixed
            )  # narrow windows: the view keeps its room
            spin.valueChanged.connect(self._manual)
        self.auto.toggled.connect(self._render)
        self.auto.setToolTip(
            "contrast: auto (1st-99.9th percentile of what is shown) or the black and white "
            "levels typed beside it"
        )
        row = QHBoxLayout()
        row.addWidget(self.auto)
        row.addWidget(self.low, 1)
        row.addWidget(self.high, 1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self._label, 1)
        lay.addWidget(self.histogram)
        lay.addLayout(row)

    def set_image(self, image: np.ndarray, aspect: float = 1.0, scale_from: np.ndarray | None = None) -> None:
        """Show ``image`` (2D); with auto contrast on, its limits follow the data (``scale_from``: the
        whole stack the image belongs to, so near-empty planes are not stretched into noise)."""
        self.image = np.asarray(image)
        self.aspect = aspect
        self.scale_from = scale_from
        self._render()

    @override
    def resizeEvent(self, event: QResizeEvent | None) -> None:
        super().resizeEvent(event)
        self._render()

    def clear(self) -> None:
        """Show the placeholder again (a new run starts: nothing of the last one stays on screen)."""
        self.image, self.points, self.rows, self.scale_from = None, np.empty((0, 2)), [], None
        self.zoom, self.centre, self._crop = 1.0, None, (0, 0)
        self.histogram.clear()
        self._label.clear()
        self._label.setText(self._placeholder)

    def set_points(self, yx_px: np.ndarray) -> None:
        """Circle these (row, column) positions on the image (an empty array clears them)."""
        self.points = np.asarray(yx_px, float).reshape(-1, 2)
        self._render()

    def pixel_at(self, x: float, y: float) -> tuple[int, int, float] | None:
        """(column, row, value) of the image pixel under the point (x, y) of the view, None off it."""
        pixmap = self._label.pixmap()
        if self.image is None or pixmap is None or pixmap.isNull():
            return None
        left = (self._label.width() - pixmap.width()) / 2  # the pixmap is centred in its label
        top = (self._label.height() - pixmap.height()) / 2
        h, w = self._shown_shape()
        col = math.floor((x - left) / pixmap.width() * w)  # floor: just left of the image is off it
        row = math.floor((y - top) / pixmap.height() * h)
        if not (0 <= col < w and 0 <= row < h):
            return None
        row, col = row + self._crop[0], col + self._crop[1]
        return col, row, float(self.image[row, col])

    def _shown_shape(self) -> tuple[int, int]:
        """Rows and columns of the image on show (all of it, or the zoomed part)."""
        h, w = self.image.shape  # type: ignore[union-attr]
        return max(1, round(h / self.zoom)), max(1, round(w / self.zoom))

    def zoom_at(self, x: float, y: float, factor: float) -> None:
        """Magnify by ``factor`` (1 to 16x) keeping the image pixel under the view point (x, y) in place."""
        hit = self.pixel_at(x, y)
        if self.image is None or hit is None:
            return
        h, w = self.image.shape
        centre = self.centre or (h / 2, w / 2)
        zoom = min(16.0, max(1.0, self.zoom * factor))
        scale = self.zoom / zoom
        self.centre = (hit[1] + (centre[0] - hit[1]) * scale, hit[0] + (centre[1] - hit[0]) * scale)
        self.zoom = zoom
        self._render()

    @override
    def eventFilter(self, watched: QObject | None, event: QEvent | None) -> bool:
        if watched is not self._label or event is None:
            return super().eventFilter(watched, event)
        if isinstance(event, QMouseEvent) and event.type() == QEvent.Type.MouseMove:
            hit = self.pixel_at(event.pos().x(), event.pos().y())
            self.hovered.emit("" if hit is None else f"x {hit[0]}, y {hit[1]}: {hit[2]:.1f}")
        elif isinstance(event, QWheelEvent):
            self.zoom_at(event.pos().x(), event.pos().y(), 1.25 ** (event.angleDelta().y() / 120))
            return True
        elif event.type() == QEvent.Type.MouseButtonDblClick:
            self.zoom, self.centre = 1.0, None
            self._render()
            return True
        return super().eventFilter(watched, event)

    def _zoomed(self) -> np.ndarray:
        """The part of the image on show (all of it at zoom 1), its first row and column kept."""
        h, w = self.image.shape  # type: ignore[union-attr]
        sh, sw = self._shown_shape()
        cy, cx = self.centre or (h / 2, w / 2)
        r0 = int(min(max(0, round(cy - sh / 2)), h - sh))
        c0 = int(min(max(0, round(cx - sw / 2)), w - sw))
        self._crop = (r0, c0)
        return self.image[r0 : r0 + sh, c0 : c0 + sw]  # type: ignore[index]

    def _draw_histogram(self, data: np.ndarray) -> None:
        """Counts of ``data`` (log scale) over its 0.1-99.99th percentile range, the window in yellow."""
        width, height = max(self.histogram.width(), 64), self.histogram.height()
        values = np.asarray(data, np.float32).ravel()[::7]
        lo, hi = (float(v) for v in np.percentile(values, (0.1, 99.99)))
        if not hi > lo:
            hi = lo + 1.0
        counts, _ = np.histogram(values, bins=width // 2, range=(lo, hi))
        bars = np.log1p(counts) / max(np.log1p(counts).max(), 1e-9)
        pixmap = QPixmap(width, height)
        pixmap.fill(QColor(20, 20, 20))
        painter = QPainter(pixmap)
        painter.setPen(QPen(QColor(170, 170, 170), 2))
        for i, bar in enumerate(bars):
            painter.drawLine(2 * i, height, 2 * i, height - round(bar * (height - 2)))
        painter.setPen(QPen(QColor(255, 210, 0), 1))
        for level in self.limits():
            x = (level - lo) / (hi - lo) * width
            painter.drawLine(QPointF(x, 0), QPointF(x, height))
        painter.end()
        self.histogram.setPixmap(pixmap)

    def set_colormap(self, name: str) -> None:
        """Draw the image with another colour map."""
        self.colormap = name
        self._render()

    def set_rows(self, rows: list[tuple[float, QColor]]) -> None:
        """Draw these horizontal lines (row in image pixels, colour) across the image."""
        self.rows = list(rows)
        self._render()

    def limits(self) -> tuple[float, float]:
        """The black and white levels in use."""
        return self.low.value(), self.high.value()

    def _manual(self) -> None:
        if self.low.hasFocus() or self.high.hasFocus():
            self.auto.setChecked(False)
        self._render()

    def _render(self) -> None:
        if self.image is None:
            return
        if self.auto.isChecked():
            source = self.image if self.scale_from is None else self.scale_from
            scale = IntensityScale.of(source, *AUTO_PERCENTILES)
            for spin, value in ((self.low, scale.low), (self.high, scale.high)):
                spin.blockSignals(True)
                spin.setValue(value)
                spin.blockSignals(False)
        shown = self._zoomed()
        self._draw_histogram(self.image if self.scale_from is None else self.scale_from)
        qimg = to_qimage(shown, *self.limits(), self.colormap)
        h, w = shown.shape
        room = self._label.size()
        if room.width() < 32 or room.height() < 32:  # not laid out yet
            room = QSize(self._display_px, self._display_px)
        target_h = max(1, round(h * self.aspect))
        pixmap = QPixmap.fromImage(qimg).scaled(
            w, target_h, Qt.AspectRatioMode.IgnoreAspectRatio, Qt.TransformationMode.FastTransformation
        )
        pixmap = pixmap.scaled(
            room, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.FastTransformation
        )
        if len(self.points) or self.rows:
            sy, sx = pixmap.height() / h, pixmap.width() / w
            painter = QPainter(pixmap)
            painter.setPen(QPen(QColor(0, 220, 255), 1.5))
            r0, c0 = self._crop
            for y, x in self.points:
                painter.drawEllipse(QPointF((x - c0 + 0.5) * sx, (y - r0 + 0.5) * sy), 5, 5)
            for row, colour in self.rows:
                row -= r0
                painter.setPen(QPen(colour, 1, Qt.PenStyle.DashLine))
                painter.drawLine(QPointF(0, (row + 0.5) * sy), QPointF(pixmap.width(), (row + 0.5) * sy))
            painter.end()
        self._label.setPixmap(pixmap)


class StackView(QGroupBox):
    """A z-stack: the plane at the slider's z, and an XZ section through the middle row."""

    def __init__(self, title: str, parent: QWidget | None = None):
        super().__init__(title, parent)
        self._title = title
        self.stack: np.ndarray | None = None
        self.z_um: np.ndarray | None = None
        #: z (µm) of the measured planes, marked on the XZ section
        self.measured_z: tuple[float, ...] = ()
        self._window: np.ndarray | None = None  # what the stack's one contrast window is taken from
        #: neurons of the shown stack (DataFrame with z_um, y_um, x_um) and the pixel size, or None
        self.neurons: pd.DataFrame | None = None
        self._pixel_um = 1.0
        self.plane = PlaneView("no virtual stack yet")
        self.xz = PlaneView("XZ section", display_px=256)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setEnabled(False)
        self.slider.valueChanged.connect(self._show_plane)
        self.z_label = QLabel("z: -")
        #: a line under the stack (the scores of a blind check), wrapped: the view keeps its width
        self.note = QLabel("")
        self.note.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(self.slider, 1)
        row.addWidget(self.z_label)
        views = QHBoxLayout()
        views.addWidget(self.plane, 1)
        views.addWidget(self.xz, 1)
        self._layout = lay = QVBoxLayout(self)
        lay.addLayout(views, 1)
        lay.addLayout(row)
        lay.addWidget(self.note)

    def add_row(self, row: QLayout) -> None:
        """Add a row of controls under the views (the panel's neuron overlay switch)."""
        self._layout.addLayout(row)

    def set_stack(
        self, stack: np.ndarray, z_um: np.ndarray, pixel_size_um: float, measured_z: tuple[float, ...] = ()
    ) -> None:
        """Show a new (z, y, x) stack, keeping the slider where the user left it; ``measured_z``: the
        measured planes, marked on the XZ section (green) beside the slider's z (yellow)."""
        self.stack, self.z_um, self.measured_z = np.asarray(stack), np.asarray(z_um), tuple(measured_z)
        self._window = self.stack[:, ::4, ::4]  # one contrast window for every plane of the stack
        n = len(self.z_um)
        keep = self.slider.value() if self.slider.isEnabled() else n // 2
        self.slider.blockSignals(True)
        self.slider.setRange(0, n - 1)
        self.slider.setValue(min(keep, n - 1))
        self.slider.blockSignals(False)
        self.slider.setEnabled(True)
        step = float(np.median(np.diff(self.z_um))) if n > 1 else pixel_size_um
        self.xz.set_image(
            self.stack[:, self.stack.shape[1] // 2, :], aspect=step / pixel_size_um, scale_from=self._window
        )
        self._show_plane(self.slider.value())

    def clear(self) -> None:
        """Back to the empty view with its first title (a new run starts)."""
        self.stack, self.z_um, self.neurons, self._window = None, None, None, None
        self.note.setText("")
        self.slider.setEnabled(False)
        self.z_label.setText("z: -")
        self.plane.clear()
        self.xz.clear()
        self.setTitle(self._title)

    def set_neurons(self, neurons: pd.DataFrame | None, pixel_size_um: float) -> None:
        """Mark these neurons (µm; z absolute, y and x from the frame's corner) on the planes they are
        in focus on (None clears the marks)."""
        self.neurons, self._pixel_um = neurons, pixel_size_um
        if self.stack is not None:
            self._show_plane(self.slider.value())

    def _show_plane(self, zi: int) -> None:
        if self.stack is None or self.z_um is None:
            return
        near = np.empty((0, 2))
        if self.neurons is not None and len(self.neurons):
            step = float(np.median(np.diff(self.z_um))) if len(self.z_um) > 1 else 1.0
            here = np.abs(self.neurons["z_um"].to_numpy() - self.z_um[zi]) <= step  # within a plane of this z
            near = np.column_stack(
                [self.neurons["y_um"].to_numpy()[here], self.neurons["x_um"].to_numpy()[here]]
            )
            near = near / self._pixel_um
        self.plane.points = near
        self.plane.set_image(self.stack[zi], scale_from=self._window)
        self.z_label.setText(f"z: {self.z_um[zi]:+.1f} µm")
        measured = [(float(np.argmin(np.abs(self.z_um - z))), QColor(0, 200, 0)) for z in self.measured_z]
        self.xz.set_rows([*measured, (float(zi), QColor(255, 210, 0))])
