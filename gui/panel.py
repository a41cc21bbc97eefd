"""The Deep-Z panel: settings, the virtual z-stacking toggle, live views, dose gauge.

:class:`DeepZPanel` is a plain QWidget (dock it into another Qt application) made of three parts: the
settings form (:class:`~gui.form.SettingsForm`), the run's controls and status
(:class:`~gui.run_box.RunControls`) and the live images (:class:`~gui.live_views.LiveViews`). The
panel checks the form's request as the user types (Start stays off, and the message says why, while
settings are invalid), runs it through :class:`~gui.runner.AcquisitionRunner` (the CLI's acquisition
in a background thread) and hands what the run reports to the parts that show it.
:class:`~gui.window.DeepZWindow` is the standalone window of ``mm-deepz gui``.
"""

from __future__ import annotations

import datetime
import importlib.util
import logging
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PyQt5.QtCore import QSettings, Qt, QTimer
from PyQt5.QtGui import QCloseEvent
from PyQt5.QtWidgets import QHBoxLayout, QMessageBox, QScrollArea, QSizePolicy, QVBoxLayout, QWidget

from acquisition_hooks import AcquisitionRequest, DeepZAcquisition, DeepZPlan, RunSummary
from acquisition_hooks.estimate import PlanEstimate, duration_text, size_text, when_text
from acquisition_hooks.infer import InferSummary
from acquisition_hooks.request import SimulatorSpec
from acquisition_hooks.start import prepare
from mm_deepz.errors import DeepZError
from mm_deepz.io import is_container, next_free_output
from mm_deepz.io.claim import free_space
from mm_deepz.modelfile import DeepZModel

from .form import SettingsForm, restore, set_value, value_of
from .live_views import LiveViews
from .run_box import RunControls
from .runner import AcquisitionRunner, LiveStats
from .settings_file import read_settings_file, write_settings_file
from .texts import in_panel_words, timing_text

logger = logging.getLogger(__name__)


class DeepZPanel(QWidget):
    """Settings, toggle, start/stop and live views of Deep-Z acquisitions."""

    def __init__(self, request: AcquisitionRequest | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        r = request or AcquisitionRequest()
        self.runner = AcquisitionRunner(self)
        self.form = SettingsForm(r)
        self.controls = RunControls(r.deepz)
        self.views = LiveViews()
        self.summary: RunSummary | None = None
        self._looking = False  # Snap or Live is using the microscope
        #: virtual planes/s each model made in its last run here, per device
        self._speed: dict[tuple[str, str], float] = {}
        self._finished_output: Path | None = None  # the last run, while it has stacks to make
        self._queued = 0  # virtual stacks waiting for the model, as last reported
        self._closing = False  # the user closed the window during a run: it closes when the run ends
        self._paused_at: float | None = None  # when Pause was clicked (the countdown leaves it out)
        self._run_text = ""  # the last run's summary, kept on screen under later notes
        #: the camera's frame (rows, columns) as last seen (Micro-Manager: sizes the plan once known)
        self._frame_yx: tuple[int, int] | None = None
        #: what the plan the fields describe takes, when they are valid
        self._estimate: PlanEstimate | None = None
        self._clock = QTimer(self)  # the countdown to the next time point
        self._clock.setInterval(500)
        self._started_at = 0.0
        self._layout()
        self._defaults = {key: value_of(w) for key, w in self._remembered().items()}  # what "reset" restores
        self._wire()
        self.validate()

    @property
    def model(self) -> DeepZModel | None:
        """The model the settings name, once loaded."""
        return self.form.model

    # -- settings remembered between sessions ----------------------------------------------
    def _remembered(self) -> dict[str, QWidget]:
        """The fields kept between sessions: the form's, the toggle and the colour map."""
        return {
            **self.form.remembered(),
            "virtual_z_stacking": self.controls.toggle,
            "colours": self.views.colors,
        }

    def save_settings(self, settings: QSettings) -> None:
        """Remember the fields (``QSettings``)."""
        for key, widget in self._remembered().items():
            settings.setValue(key, value_of(widget))

    def restore_settings(self, settings: QSettings) -> None:
        """The fields as last remembered; the output moves on to a name that is free."""
        restore(self._remembered(), settings)
        output = self.form.output
        if output.text().strip():
            output.setText(str(next_free_output(Path(output.text().strip()))))
        self.validate()

    def reset_settings(self, settings: QSettings) -> None:
        """Forget what was remembered; the fields go back to their defaults."""
        settings.clear()
        for key, widget in self._remembered().items():
            set_value(widget, self._defaults[key])
        self.validate()

    # -- layout ----------------------------------------------------------------------------
    def _layout(self) -> None:
        scroll = QScrollArea()  # the settings scroll where the screen is short (1280x800 laptops)
        scroll.setWidget(self.form)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        bar = scroll.verticalScrollBar()
        scroll.setMinimumWidth(
            self.form.minimumSizeHint().width() + (bar.sizeHint().width() if bar else 0) + 4
        )
        # the run's controls and status never scroll away: a refusal, a failure and the end of a run
        # are always in sight, whatever the screen; they take the height their wrapped lines need
        self.controls.setMaximumWidth(scroll.minimumWidth())
        self.controls.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
        scroll.setMinimumHeight(120)
        left = QVBoxLayout()
        left.addWidget(scroll, 1)
        left.addWidget(self.controls)
        lay = QHBoxLayout(self)
        lay.addLayout(left)
        lay.addWidget(self.views, 1)

    def _wire(self) -> None:
        c, r = self.controls, self.runner
        self.form.changed.connect(self._revalidate)
        self._clock.timeout.connect(self._show_timing)
        c.toggle.toggled.connect(self._on_toggle)
        c.start_button.clicked.connect(self.start)
        c.stop_button.clicked.connect(self.stop)
        c.pause_button.toggled.connect(self._on_pause)
        c.blind_now_button.clicked.connect(self._blind_check_now)
        c.snap_button.clicked.connect(lambda: self._look(frames=1))
        c.live_button.toggled.connect(lambda on: self._look(frames=None) if on else self.runner.stop())
        c.finish_button.clicked.connect(self._make_remaining)
        c.open_button.clicked.connect(self._open_in_napari)
        self.views.show_neurons.toggled.connect(self._toggle_neurons)
        r.live_ended.connect(self._on_live_ended)
        r.blind_check.connect(self.views.show_blind_check)
        r.started.connect(self._on_started)
        r.image.connect(self._on_image)
        r.virtual.connect(self.views.show_virtual)
        r.neurons.connect(self.views.show_neurons_found)
        r.inferred.connect(self._on_inferred)
        r.progress.connect(lambda done, total: c.progress.setValue(done))
        r.stats.connect(self._on_stats)
        r.finished.connect(self._on_finished)
        r.failed.connect(self._on_failed)

    # -- settings ----------------------------------------------------------------------------
    def request(self) -> AcquisitionRequest:
        """The acquisition the fields describe (its values validated: :class:`SettingsError`)."""
        return self.form.request(deepz=self.controls.toggle.isChecked())

    # -- acquisition settings files (as Micro-Manager's MDA window saves and loads them) -------------
    def save_acquisition(self, path: Path) -> None:
        """Write the fields' acquisition to a JSON file (refused, with the reason, when the fields are not
        valid or ``path`` is another tool's file)."""
        write_settings_file(path, self.request())  # SettingsError names what is wrong

    def load_acquisition(self, path: Path) -> None:
        """Set the fields from a settings file written by :meth:`save_acquisition` (validated: a value out
        of range or another tool's file is refused by name, and nothing changes)."""
        r = read_settings_file(path)  # SettingsError names each bad value
        self.form.apply(r)
        self.controls.toggle.setChecked(r.deepz)
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
        running = self.runner.running
        if not running:  # during a run every field that defines it stays locked
            self.form.follow_choices()
        plan = None
        problem = self.form.missing()
        if problem is None:
            try:
                request = self.request()
                plan = prepare(request, self.form.model_for(request.model_path)).plan
            except DeepZError as e:
                problem = in_panel_words(str(e))
            else:
                problem = self._size_plan(request, plan)
        self.form.show_plan(plan)
        if plan is None:
            self.controls.plan_summary.setText("")
        if not running:
            start = self.controls.start_button
            start.setEnabled(problem is None)
            start.setToolTip(in_panel_words(problem) if problem else "Start the acquisition")
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
        self.controls.plan_summary.setText("\n".join(lines))
        return problem

    def show_message(self, text: str | None, error: bool = False) -> None:
        """Show ``text`` in the status line (red when ``error``; nothing: the settings' own notes)."""
        if not text and self.form.device.currentText() == "cuda" and not _gpu_available():
            text = "No GPU on this computer: Deep-Z will run on the CPU (slower)."
        if not text:
            text = self._pace_note()
        self.controls.show_message(text or "", error)

    def _pace_note(self) -> str:
        """Whether the model kept up in its last run here with this device, against what this plan asks."""
        device = self.form.device.currentText()
        speed = self._speed.get((str(self.model.sha256), device)) if self.model else None
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
            self.runner.start(request, model=self.form.model_for(request.model_path))
        except (DeepZError, RuntimeError) as e:
            self.show_message(str(e), error=True)
            return
        self.summary = None
        self.views.clear()
        self.controls.clear()
        self.controls.progress.setRange(0, request.time_points)
        self.controls.progress.setValue(0)
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

    def _confirm(self, title: str, question: str) -> bool:
        """Ask the user (Yes / No, No the default)."""
        answer = QMessageBox.question(self, title, question, QMessageBox.Yes | QMessageBox.No, QMessageBox.No)
        return bool(answer == QMessageBox.Yes)

    def stop(self) -> None:
        """Stop the running acquisition after the event in progress; the virtual stack the model is
        making is finished, the rest are recorded as still to make (offered after the run)."""
        self.runner.stop()
        self.controls.stop_button.setEnabled(False)
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
        self.controls.pause_button.setText("Resume" if on else "Pause")
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
            c = self.controls
            off = "" if c.toggle.isChecked() else " (virtual z-stacking is off: no virtual stack to score)"
            c.toggle_note.setText(f"Blind check asked for: at t={t}{off}")

    def _on_toggle(self, on: bool) -> None:
        """The toggle was clicked: during a run, say from which time point it applies."""
        t = self.runner.set_enabled(on)
        if t is not None and self.runner.running:
            c = self.controls
            c.toggle_note.setText(
                f"Virtual z-stacking {'on' if on else 'off'} from t={t}"
                + ("" if t < c.progress.maximum() else " (no time point left to acquire)")
            )

    def _set_running(self, running: bool) -> None:
        if not running:
            self._clock.stop()
        self.controls.set_running(running)
        self.form.set_editable(not running)

    def _show_timing(self) -> None:
        acq = self.runner.acquisition
        c = self.controls
        if acq is not None and acq.paused_before is not None:
            c.timing.setText(f"paused before t={acq.paused_before}")
            return
        c.timing.setText(
            timing_text(
                c.progress.value(),
                c.progress.maximum(),
                time.monotonic() - self._started_at,
                self.form.interval.value(),
            )
        )

    def _on_started(self, acq: DeepZAcquisition) -> None:
        self._started_at = time.monotonic()
        self._clock.start()
        self.views.begin(acq.plan, acq.geometry.pixel_size_um)
        self.show_message(f"Acquiring to {acq.settings.output}")

    def _on_image(self, kind: str, t: int, zi: int, plane: np.ndarray) -> None:
        if kind != "live":
            self.views.show_plane(kind, t, zi, plane)
            return
        self._frame_yx = (int(plane.shape[0]), int(plane.shape[1]))
        self.views.show_live(
            plane,
            f"{'live' if self.controls.live_button.isChecked() else 'snap'}: {self.form.base.input_preset}, "
            f"{self.form.exposure.value():g} ms, where the stage is (image {t + 1})",
        )
        self.show_message("")

    def _make_remaining(self) -> None:
        c = self.controls
        c.finish_button.setEnabled(False)
        c.start_button.setEnabled(False)
        c.progress.setValue(0)
        self.show_message(f"Making the remaining virtual stacks of {self._finished_output}…")
        if self._finished_output is not None:
            self.runner.make_remaining(self._finished_output, self.form.device.currentText())

    def _on_inferred(self, result: InferSummary | str) -> None:
        self.controls.finish_button.setEnabled(True)
        if isinstance(result, str):
            self.show_message(f"The remaining virtual stacks could not be made: {result}", error=True)
        else:
            self.controls.finish_button.setVisible(False)
            self.show_message(
                f"{result.made} virtual stacks made in {result.seconds:.1f} s: "
                f"{self._finished_output} is complete."
            )
        self._problem()

    def _toggle_neurons(self, on: bool) -> None:
        self.runner.find_neurons = on
        v = self.views
        if not on:
            v.hide_neurons()
        elif self.runner.running:
            v.neuron_count.setText("from the next virtual stack…")
        elif (
            v.virtual_view.stack is not None and v.virtual_view.z_um is not None
        ):  # after a run: the one on show
            self.runner.find_neurons_in(v.virtual_t, v.virtual_view.stack, v.virtual_view.z_um, v.pixel_um)
            v.neuron_count.setText(f"finding neurons at t={v.virtual_t}…")
        else:
            v.neuron_count.setText("no virtual stack yet: neurons are found in each one during a run")

    def _on_stats(self, s: LiveStats) -> None:
        self.controls.show_stats(s)
        self._queued = s.pending
        if s.virtual_planes_per_s and self.model is not None:
            self._speed[str(self.model.sha256), self.form.device.currentText()] = s.virtual_planes_per_s

    def _on_finished(self, summary: RunSummary) -> None:
        self.summary = summary
        self.runner.wait(5)  # the thread ends right after it reports
        self._set_running(False)
        c = self.controls
        c.progress.setValue(summary.time_points)  # the time points recorded, not those started
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
        c.finish_button.setVisible(bool(summary.virtual_pending))
        c.open_button.setVisible(_napari_installed())
        self._run_text = text
        self.show_message(text, error=bool(summary.errors or summary.warnings))
        self.form.next_output()
        self._problem()
        self._close_if_asked()

    def _on_failed(self, message: str) -> None:
        self.runner.wait(5)
        self._set_running(False)
        self.show_message(message, error=True)
        if not self._looking:  # a run that failed: the next one goes to a new container
            self.form.next_output()
        self._problem()
        self._close_if_asked()

    # -- snap and live ---------------------------------------------------------------------
    def _look(self, frames: int | None) -> None:
        """Snap one image, or go live, at the input preset and exposure."""
        c = self.controls
        try:
            self.runner.live(self.request(), frames)
        except (DeepZError, RuntimeError) as e:
            self.show_message(str(e), error=True)
            c.live_button.setChecked(False)
            return
        self._looking = True
        c.start_button.setEnabled(False)
        c.snap_button.setEnabled(False)
        c.live_button.setEnabled(frames is None)  # live ends with a second click
        self.show_message("Opening the microscope…" if frames is None else "Snapping…")

    def _on_live_ended(self) -> None:
        self.runner.wait(5)
        self._looking = False
        live = self.controls.live_button
        live.blockSignals(True)
        live.setChecked(False)
        live.blockSignals(False)
        for button in (self.controls.snap_button, live):
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


def _napari_installed() -> bool:
    return importlib.util.find_spec("napari") is not None


def _gpu_available() -> bool:
    import torch

    return torch.cuda.is_available()
