"""The studio's control panel: source, package, tracking, streaming, recording and 3D-view settings.

Only widgets live here; the main window connects them to the pipeline.
"""
from __future__ import annotations

from PySide6.QtWidgets import (QCheckBox, QComboBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit,
                               QPushButton, QSpinBox, QVBoxLayout, QWidget)

from app.gl_view import MODES
from app.vmc import DEFAULT_HOST, DEFAULT_PORT


def _row(*widgets) -> QWidget:
    w = QWidget()
    layout = QHBoxLayout(w)
    layout.setContentsMargins(0, 0, 0, 0)
    for x in widgets:
        layout.addWidget(x)
    return w


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
        self.replay_button = QPushButton("Replay session…")
        form.addRow(self.source_combo)
        form.addRow(_row(self.refresh_button, self.file_button))
        form.addRow(self.replay_button)
        layout.addWidget(box)

        box = QGroupBox("Performer package")
        form = QFormLayout(box)
        self.package_label = QLabel("none")
        self.package_label.setWordWrap(True)
        self.package_button = QPushButton("Choose folder…")
        form.addRow(self.package_label)
        form.addRow(self.package_button)
        layout.addWidget(box)

        box = QGroupBox("Tracking")
        form = QFormLayout(box)
        self.smoothing_check = QCheckBox("One Euro smoothing")
        self.smoothing_check.setChecked(True)
        self.calibrate_button = QPushButton("Calibrate neutral face")
        self.calibrate_button.setToolTip("Relax your face and look at the camera, then click")
        form.addRow(self.smoothing_check)
        form.addRow(self.calibrate_button)
        layout.addWidget(box)

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
        form.addRow("Host", self.host_edit)
        form.addRow("Port", self.port_spin)
        layout.addWidget(box)

        box = QGroupBox("Record")
        form = QFormLayout(box)
        self.record_check = QCheckBox("Recording")
        self.record_dir_edit = QLineEdit()
        self.record_dir_button = QPushButton("…")
        self.record_dir_button.setMaximumWidth(32)
        form.addRow(self.record_check)
        form.addRow("Folder", _row(self.record_dir_edit, self.record_dir_button))
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
        form.addRow(self.corrected_check)
        form.addRow(self.follow_check)
        layout.addWidget(box)
        layout.addStretch(1)

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
