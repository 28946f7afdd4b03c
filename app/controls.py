"""The studio's control panel: source, package, tuning, streaming, recording and 3D-view settings, and the
per-shape gain / dead-zone editor (a dialog).

Only widgets live here; the main window connects them to the pipeline and the per-package settings
(app.settings): `apply_settings` shows saved settings without emitting a change.
"""
from __future__ import annotations

import math

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDoubleSpinBox, QFormLayout, QGroupBox,
                               QHBoxLayout, QHeaderView, QLabel, QLineEdit, QPushButton, QSlider, QSpinBox,
                               QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from app.gl_view import MODES
from app.settings import BACKENDS
from app.smoothing import BETA_RANGE, MIN_CUTOFF_RANGE
from app.vmc import DEFAULT_HOST, DEFAULT_PORT
from export.expressions import ARKIT_NAMES, DEAD_ZONE_RANGE, GAIN_RANGE

CAMERA_SIZES = ((0, 0), (640, 480), (1280, 720), (1920, 1080))    # (0, 0): the camera's own
CAMERA_RATES = (0, 15, 30, 60)                                    # 0: the camera's own
BACKEND_LABELS = {"auto": "Auto", "tensorrt": "TensorRT", "cuda": "CUDA", "cpu": "CPU"}
MIRROR_TIP = ("Flip the preview like a mirror. Display only: tracking, streaming and recording are not "
              "mirrored, so an avatar's left stays the performer's left.")


def _row(*widgets) -> QWidget:
    w = QWidget()
    layout = QHBoxLayout(w)
    layout.setContentsMargins(0, 0, 0, 0)
    for x in widgets:
        layout.addWidget(x)
    return w


class ValueSlider(QWidget):
    """A horizontal slider over [lo, hi] (log-spaced when `log`) with its value shown beside it. The value is a
    float; setValue keeps an exact value (a saved 1.0 stays 1.0) and places the handle at the nearest step."""

    valueChanged = Signal(float)
    STEPS = 100

    def __init__(self, lo: float, hi: float, fmt: str, log: bool = False, parent=None):
        super().__init__(parent)
        self.lo, self.hi, self.fmt, self.log = lo, hi, fmt, log
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, self.STEPS)
        self.label = QLabel()
        self.label.setMinimumWidth(self.label.fontMetrics().horizontalAdvance("00.00 Hz") + 4)   # sliders align
        self.label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.slider, 1)
        layout.addWidget(self.label)
        self._value = lo
        self.slider.valueChanged.connect(self._moved)

    def _at(self, step: int) -> float:
        x = step / self.STEPS
        v = self.lo * (self.hi / self.lo) ** x if self.log else self.lo + x * (self.hi - self.lo)
        return round(v, 2)

    def _step(self, value: float) -> int:
        if self.log:
            x = math.log(max(value, self.lo) / self.lo) / math.log(self.hi / self.lo)
        else:
            x = (value - self.lo) / (self.hi - self.lo)
        return round(min(max(x, 0.0), 1.0) * self.STEPS)

    def _moved(self, step: int) -> None:
        self._value = self._at(step)
        self.label.setText(self.fmt.format(self._value))
        self.valueChanged.emit(self._value)

    def value(self) -> float:
        return self._value

    def setValue(self, value: float) -> None:
        """Show `value` without emitting valueChanged."""
        self._value = float(value)
        self.slider.blockSignals(True)
        self.slider.setValue(self._step(value))
        self.slider.blockSignals(False)
        self.label.setText(self.fmt.format(self._value))


class ShapeTuningDialog(QDialog):
    """Per-ARKit-shape gain and dead zone (export.expressions.tune): one row per shape, 'Reset all' to 1 and 0.
    `changed(gains, dead_zones)` carries only the shapes away from the defaults."""

    changed = Signal(dict, dict)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Per-shape gain and dead zone")
        self.table = QTableWidget(len(ARKIT_NAMES), 3)
        self.table.setHorizontalHeaderLabels(["Shape", "Gain", "Dead zone"])
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.gain, self.dead_zone, self._names = {}, {}, {}
        for row, name in enumerate(ARKIT_NAMES):
            self._names[name] = item = QTableWidgetItem(name)
            item.setFlags(Qt.ItemFlag.ItemIsEnabled)
            self.table.setItem(row, 0, item)
            self.gain[name] = self._spin(*GAIN_RANGE, 0.05, 1.0)
            self.dead_zone[name] = self._spin(*DEAD_ZONE_RANGE, 0.01, 0.0)
            self.table.setCellWidget(row, 1, self.gain[name])
            self.table.setCellWidget(row, 2, self.dead_zone[name])
        for column in (1, 2):
            self.table.setColumnWidth(column, 96)
        self.reset_button = QPushButton("Reset all")
        self.reset_button.clicked.connect(lambda: self._reset())
        close = QPushButton("Close")
        close.clicked.connect(self.close)
        note = QLabel("A value below its dead zone reads 0; the rest is stretched so 1 stays reachable, then "
                      "multiplied by the gain (capped at 1).")
        note.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(note)
        layout.addWidget(self.table, 1)
        layout.addWidget(_row(self.reset_button, close))
        self.resize(420, 600)

    def _spin(self, lo: float, hi: float, step: float, value: float) -> QDoubleSpinBox:
        box = QDoubleSpinBox()
        box.setRange(lo, hi)
        box.setSingleStep(step)
        box.setDecimals(2)
        box.setValue(value)
        box.valueChanged.connect(self._emit)
        return box

    def values(self) -> tuple[dict, dict]:
        gains = {n: b.value() for n, b in self.gain.items() if b.value() != 1.0}
        dead = {n: b.value() for n, b in self.dead_zone.items() if b.value() != 0.0}
        return gains, dead

    def set_values(self, gains: dict, dead_zones: dict) -> None:
        """Show saved values without emitting `changed`."""
        self._reset(gains, dead_zones, emit=False)

    def _reset(self, gains: dict | None = None, dead_zones: dict | None = None, emit: bool = True) -> None:
        for name in ARKIT_NAMES:
            for box, value in ((self.gain[name], (gains or {}).get(name, 1.0)),
                               (self.dead_zone[name], (dead_zones or {}).get(name, 0.0))):
                box.blockSignals(True)
                box.setValue(value)
                box.blockSignals(False)
        if emit:
            self._emit()
        else:
            self._mark()

    def _mark(self) -> None:
        """Shapes away from the defaults in bold, so they can be found in the long list."""
        gains, dead = self.values()
        for name, item in self._names.items():
            font = item.font()
            font.setBold(name in gains or name in dead)
            item.setFont(font)

    def _emit(self, *_) -> None:
        self._mark()
        self.changed.emit(*self.values())


def _combo(items) -> QComboBox:
    """A combo of (label, data) pairs."""
    combo = QComboBox()
    for label, data in items:
        combo.addItem(label, data)
    return combo


def _select(combo: QComboBox, data, label: str) -> None:
    """Select the item holding `data`, adding it (as `label`) when the list lacks it; emits nothing."""
    i = combo.findData(data)
    combo.blockSignals(True)
    if i < 0:
        combo.addItem(label, data)
        i = combo.count() - 1
    combo.setCurrentIndex(i)
    combo.blockSignals(False)


def _size_data(size) -> str:
    return f"{size[0]}x{size[1]}"        # a string: Qt cannot find a Python tuple among its items' data


def size_of(data: str) -> tuple[int, int]:
    w, h = data.split("x")
    return int(w), int(h)


def _size_label(size) -> str:
    return "camera's own size" if size == (0, 0) else f"{size[0]}×{size[1]}"


def _rate_label(fps: int) -> str:
    return "own fps" if fps == 0 else f"{fps} fps"


class Controls(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QVBoxLayout(self)

        box = QGroupBox("Source")
        form = QFormLayout(box)
        self.source_combo = QComboBox()  # item data: the source spec ("camera:0", "synthetic", a path)
        self.source_combo.setMinimumContentsLength(24)
        self.refresh_button = QPushButton("Find cameras")
        self.file_button = QPushButton("Video file…")
        self.replay_button = QPushButton("Replay…")
        self.replay_button.setToolTip("Play a recorded session folder back through the studio")
        form.addRow(self.source_combo)
        form.addRow(_row(self.refresh_button, self.file_button, self.replay_button))
        self.size_combo = _combo((_size_label(s), _size_data(s)) for s in CAMERA_SIZES)   # data: "WxH"
        self.fps_combo = _combo((_rate_label(r), r) for r in CAMERA_RATES)
        for combo in (self.size_combo, self.fps_combo):
            combo.setToolTip("Asked of a camera when it (re)opens; the driver may pick its nearest mode")
        form.addRow("Camera", _row(self.size_combo, self.fps_combo))
        self.overlay_check = QCheckBox("Mesh overlay")
        self.overlay_check.setChecked(True)
        self.overlay_check.setToolTip("Draw the tracked mesh over the video")
        self.mirror_check = QCheckBox("Mirror preview")
        self.mirror_check.setToolTip(MIRROR_TIP)
        form.addRow(_row(self.overlay_check, self.mirror_check))
        layout.addWidget(box)

        box = QGroupBox("Performer package")
        form = QFormLayout(box)
        self.package_label = QLabel("none")
        self.package_label.setWordWrap(True)
        self.package_button = QPushButton("Choose folder…")
        self.make_model_button = QPushButton("Make my model…")
        self.make_model_button.setToolTip("Build your own package from a short video of your face")
        self.backend_combo = _combo((BACKEND_LABELS[b], b) for b in BACKENDS)
        self.backend_combo.setToolTip("Where the package's graphs run; the package reopens with the choice")
        self.backend_note = QLabel("")        # what runs, or the runtime's one-line fallback reason
        self.backend_note.setWordWrap(True)
        self.backend_note.setStyleSheet("color: #666;")
        form.addRow(self.package_label)
        form.addRow(_row(self.package_button, self.make_model_button))
        form.addRow("Backend", self.backend_combo)
        form.addRow(self.backend_note)
        layout.addWidget(box)

        box = QGroupBox("Tuning (saved with the package)")
        form = QFormLayout(box)
        self.smoothing_check = QCheckBox("One Euro smoothing")
        self.smoothing_check.setChecked(True)
        self.min_cutoff_slider = ValueSlider(*MIN_CUTOFF_RANGE, "{:.2f} Hz", log=True)
        self.min_cutoff_slider.setToolTip("Lower: steadier when still, more lag (head rotation's filter; the "
                                          "mesh and position filters follow in proportion)")
        self.beta_slider = ValueSlider(*BETA_RANGE, "{:.2f}")
        self.beta_slider.setToolTip("Higher: less lag in quick moves, more jitter in them")
        self.calibrate_button = QPushButton("Calibrate neutral")
        self.calibrate_button.setToolTip("Relax your face and look at the camera, then click")
        self.reset_calibration_button = QPushButton("Reset")
        self.reset_calibration_button.setToolTip("Forget the calibration: the default face is neutral again")
        self.neutral_label = QLabel("neutral: default face")
        self.range_button = QPushButton("Measure my range")
        self.range_button.setToolTip("Calibrate neutral first. Then, for a few seconds, open your jaw wide, smile, "
                                     "pucker, raise and frown your brows and blink: each reaches 1 there")
        self.reset_range_button = QPushButton("Reset")
        self.reset_range_button.setToolTip("Forget the measured range: the model's own range again")
        self.range_label = QLabel("range: the model's")
        self.shapes_button = QPushButton("Per-shape gain and dead zone…")
        form.addRow(self.smoothing_check)
        form.addRow("Min cutoff", self.min_cutoff_slider)
        form.addRow("Beta", self.beta_slider)
        form.addRow(_row(self.calibrate_button, self.reset_calibration_button))
        form.addRow(self.neutral_label)
        form.addRow(_row(self.range_button, self.reset_range_button))
        form.addRow(self.range_label)
        form.addRow(self.shapes_button)
        layout.addWidget(box)
        self.shapes_dialog = ShapeTuningDialog(self)
        self.shapes_button.clicked.connect(self._show_shapes)

        box = QGroupBox("Stream")
        form = QFormLayout(box)
        self.stream_check = QCheckBox("Streaming")
        self.protocol_combo = QComboBox()
        for protocol, label in (("vmc", "VMC (VSeeFace, Warudo, VNyan…)"), ("ifacialmocap", "iFacialMocap (VTube Studio…)")):
            self.protocol_combo.addItem(label, protocol)
        self.expressions_combo = QComboBox()      # VMC only: which names a receiver gets
        for choice, label in (("both", "VRM + ARKit"), ("vrm", "VRM presets only"), ("arkit", "ARKit 52 only")):
            self.expressions_combo.addItem(label, choice)
        self.host_edit = QLineEdit(DEFAULT_HOST)
        self.port_spin = QSpinBox()
        self.port_spin.setRange(1, 65535)
        self.port_spin.setValue(DEFAULT_PORT)
        self.protocol_combo.currentIndexChanged.connect(self._protocol_changed)
        form.addRow(self.stream_check)
        form.addRow("Protocol", self.protocol_combo)
        form.addRow("Expressions", self.expressions_combo)
        form.addRow("Host, port", _row(self.host_edit, self.port_spin))
        layout.addWidget(box)

        box = QGroupBox("Record")
        form = QFormLayout(box)
        self.record_check = QCheckBox("Recording")
        self.record_dir_edit = QLineEdit()
        self.record_dir_button = QPushButton("…")
        self.record_dir_button.setMaximumWidth(32)
        self.record_dir_edit.setPlaceholderText("folder")
        form.addRow(_row(self.record_check, self.record_dir_edit, self.record_dir_button))
        layout.addWidget(box)

        box = QGroupBox("3D view")
        form = QFormLayout(box)
        self.mode_combo = QComboBox()
        self.mode_combo.addItems(MODES)
        self.corrected_check = QCheckBox("Colour correction C")
        self.corrected_check.setChecked(True)
        self.follow_check = QCheckBox("Follow head rotation")
        self.follow_check.setChecked(True)
        form.addRow("Mode", self.mode_combo)
        form.addRow(_row(self.corrected_check, self.follow_check))
        layout.addWidget(box)
        layout.addStretch(1)

    def apply_settings(self, s) -> None:
        """Show a package's settings (app.settings.PackageSettings) without emitting any change."""
        for check, on in ((self.smoothing_check, s.smoothing), (self.overlay_check, s.overlay),
                          (self.mirror_check, s.mirror)):
            check.blockSignals(True)
            check.setChecked(on)
            check.blockSignals(False)
        self.min_cutoff_slider.setValue(s.min_cutoff)
        self.beta_slider.setValue(s.beta)
        size = (s.camera_width, s.camera_height)
        _select(self.size_combo, _size_data(size), _size_label(size))
        _select(self.fps_combo, s.camera_fps, _rate_label(s.camera_fps))
        _select(self.backend_combo, s.backend, BACKEND_LABELS.get(s.backend, s.backend))
        self.shapes_dialog.set_values(s.gains, s.dead_zones)
        self.show_neutral(s.neutral)
        self.show_range(s.ranges)

    def show_neutral(self, neutral) -> None:
        self.neutral_label.setText("neutral: calibrated (saved)" if neutral else "neutral: default face")
        self.reset_calibration_button.setEnabled(neutral is not None)
        self.range_button.setEnabled(neutral is not None)    # a range is measured from the performer's rest

    def show_range(self, ranges) -> None:
        self.range_label.setText(f"range: measured, {len(ranges)} measures (saved)" if ranges else "range: the model's")
        self.reset_range_button.setEnabled(ranges is not None)

    def _show_shapes(self) -> None:
        self.shapes_dialog.show()
        self.shapes_dialog.raise_()

    def select_source(self, spec: str, label: str | None = None) -> None:
        """Select `spec` in the source list, adding it if it is not there (without emitting a change)."""
        i = self.source_combo.findData(spec)
        if i < 0:
            self.source_combo.addItem(label or spec, spec)
            i = self.source_combo.count() - 1
        self.source_combo.blockSignals(True)
        self.source_combo.setCurrentIndex(i)
        self.source_combo.blockSignals(False)

    def _protocol_changed(self) -> None:
        """Each protocol's receivers listen on their own default port; VRM/ARKit choice is VMC's."""
        from app.senders import sender_class

        protocol = self.protocol_combo.currentData()
        self.port_spin.setValue(sender_class(protocol).DEFAULT_PORT)
        self.expressions_combo.setEnabled(protocol == "vmc")
