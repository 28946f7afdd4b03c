"""The studio window: live video with the mesh overlay, the 3D view, plots, controls and the status bar.

The window owns a Pipeline (app.pipeline) and only polls it on a 30 ms timer, so nothing here waits for a
camera, a tracker or a disk. Slow set-up (opening a package, probing cameras) runs on short-lived threads
that report back through Qt signals.
"""
from __future__ import annotations

import threading

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QDockWidget, QFileDialog, QLabel, QMainWindow, QSplitter

from app.controls import Controls
from app.gl_view import FaceGLView, gl_available
from app.pipeline import Pipeline
from app.plots import RollingPlot
from app.replay import SessionSource
from app.sources import SourceError, enumerate_cameras, open_source
from app.stats import RollingStability
from app.video_view import VideoView
from engine.errors import UserError
from engine.pose import degrees

EXPRESSIONS_SHOWN = ("jawOpen", "eyeBlinkLeft", "eyeBlinkRight", "mouthSmileLeft", "browInnerUp")
TICK_MS = 30
PLOT_EVERY = 3  # redraw the plots every third tick (~10 Hz): plotting is the UI's main cost


class _Signals(QObject):
    cameras_found = Signal(object)       # list[CameraInfo]
    package_opened = Signal(object, str)  # (tracker or None, path or error text)


def open_package(path: str):
    """The tracker of a performer package (export.runtime); "demo" gives the model-free DemoTracker."""
    if path == "demo":
        from app.demo_tracker import DemoTracker

        return DemoTracker()
    from export.runtime import open_tracker  # imported late: the runtime pulls in onnxruntime

    return open_tracker(path)


class MainWindow(QMainWindow):
    def __init__(self, tracker=None, source: str | None = None, synthetic_clip=None, record_dir=None,
                 package_label: str = "", texture_hz: float = 4.0):
        super().__init__()
        self.setWindowTitle("facetrack studio")
        self.synthetic_clip = synthetic_clip
        self.pipeline = Pipeline(texture_hz=texture_hz)
        self._signals = _Signals()
        self._signals.cameras_found.connect(self._on_cameras)
        self._signals.package_opened.connect(self._on_package)
        self.frames_shown = 0
        self._ticks = 0
        self._stability_raw, self._stability = RollingStability(60), RollingStability(60)
        self._frame_callbacks = []  # (count, fn): called once frames_shown reaches count (screenshots)

        self._build_views()
        self._build_docks()
        self._build_status()
        self._connect()
        if record_dir:
            self.controls.record_dir_edit.setText(str(record_dir))
        self.controls.source_combo.addItem("synthetic", "synthetic")
        self.set_tracker(tracker, package_label)
        if source:
            self.set_source(source)
        self._timer = QTimer(self)
        self._timer.timeout.connect(self._tick)
        self._timer.start(TICK_MS)
        self.find_cameras()

    # -- layout ----------------------------------------------------------------------------------------------
    def _build_views(self) -> None:
        self.video = VideoView()
        self.gl = FaceGLView() if gl_available() else None
        split = QSplitter()
        split.addWidget(self.video)
        if self.gl is not None:
            split.addWidget(self.gl)
        else:
            note = QLabel("3D view needs OpenGL 3.3\n(not available on this display)")
            note.setAlignment(Qt.AlignmentFlag.AlignCenter)
            split.addWidget(note)
        split.setSizes([640, 420])
        self.setCentralWidget(split)

    def _build_docks(self) -> None:
        self.controls = Controls()
        dock = QDockWidget("Controls", self)
        dock.setObjectName("controls")
        dock.setWidget(self.controls)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        self.plots = {
            "latency": RollingPlot("ms"),
            "rates": RollingPlot("fps"),
            "stability": RollingPlot("1 = perfect"),
            "pose": RollingPlot("degrees"),
            "expressions": RollingPlot("", y_range=(0, 1)),
        }
        titles = {"latency": "Latency per stage", "rates": "Frames per second",
                  "stability": "Temporal stability (Eq. 10, last 60 frames)", "pose": "Head pose",
                  "expressions": "Expressions (ARKit)"}
        previous = None
        for key, plot in self.plots.items():
            dock = QDockWidget(titles[key], self)
            dock.setObjectName(key)
            dock.setWidget(plot)
            plot.setMinimumHeight(120)
            if previous is None or key in ("pose", "expressions"):
                self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
            else:
                self.splitDockWidget(previous, dock, Qt.Orientation.Horizontal)
            previous = dock

    def _build_status(self) -> None:
        bar = self.statusBar()
        self.message_label = QLabel("")
        self.backend_label = QLabel("")
        self.rate_label = QLabel("")
        bar.addWidget(self.message_label, 1)
        bar.addPermanentWidget(self.rate_label)
        bar.addPermanentWidget(self.backend_label)

    def _connect(self) -> None:
        c = self.controls
        c.source_combo.activated.connect(lambda i: self.set_source(c.source_combo.itemData(i)))
        c.refresh_button.clicked.connect(self.find_cameras)
        c.file_button.clicked.connect(self._pick_file)
        c.replay_button.clicked.connect(self._pick_session)
        c.package_button.clicked.connect(self._pick_package)
        c.smoothing_check.toggled.connect(self.pipeline.track.set_smoothing)
        c.calibrate_button.clicked.connect(self.pipeline.track.calibrate_neutral)
        c.stream_check.toggled.connect(self.set_streaming)
        c.record_check.toggled.connect(self.set_recording)
        c.record_dir_button.clicked.connect(self._pick_record_dir)
        c.corrected_check.toggled.connect(self._set_corrected)
        if self.gl is not None:
            c.mode_combo.currentTextChanged.connect(self.gl.set_mode)
            c.follow_check.toggled.connect(lambda on: setattr(self.gl, "follow_head", on))

    # -- actions -----------------------------------------------------------------------------------------------
    def say(self, text: str) -> None:
        self.message_label.setText(text)

    def set_source(self, spec_or_source) -> None:
        """A spec string (camera:N, synthetic, a file) or a ready source object (tests, replay)."""
        if isinstance(spec_or_source, str):
            try:
                source = open_source(spec_or_source, self.synthetic_clip)
            except SourceError as e:
                self.say(str(e))
                return
            self.controls.select_source(spec_or_source)
        else:
            source = spec_or_source
            self.controls.select_source(source.name)
        self.controls.record_check.setChecked(False)  # a session holds one source
        self.pipeline.set_source(source)
        self.say(f"source: {source.name}")

    def set_tracker(self, tracker, label: str = "") -> None:
        self.pipeline.set_tracker(tracker)
        if tracker is None:
            self.backend_label.setText("no performer package")
            self.controls.package_label.setText("none: choose a package folder")
            return
        triangles, uv, holes = tracker.topology
        self.video.set_topology(triangles)
        if self.gl is not None:
            self.gl.set_topology(triangles, uv, holes)
        backend = getattr(tracker, "backend", "?")
        self.backend_label.setText(f"backend: {backend}")
        self.controls.package_label.setText(label or "loaded")
        if fallback := getattr(tracker, "fallback", None):
            self.say(fallback)

    def load_package(self, path: str) -> None:
        """Open a package off the UI thread (ONNX sessions can take seconds to build)."""
        self.say(f"opening {path}…")

        def work():
            try:
                self._signals.package_opened.emit(open_package(path), path)
            except Exception as e:  # a broken package is a message, not a crash
                self._signals.package_opened.emit(None, f"cannot open {path}: {e}")

        threading.Thread(target=work, daemon=True).start()

    def _on_package(self, tracker, text: str) -> None:
        if tracker is None:
            self.say(text)
            return
        self.set_tracker(tracker, text)
        self.say(f"package: {text}")

    def find_cameras(self) -> None:
        def work():
            try:
                self._signals.cameras_found.emit(enumerate_cameras())
            except Exception:
                self._signals.cameras_found.emit([])

        threading.Thread(target=work, daemon=True).start()

    def _on_cameras(self, cameras) -> None:
        combo = self.controls.source_combo
        for info in cameras:
            i = combo.findData(info.spec)
            if i >= 0:
                combo.setItemText(i, info.label())
            else:
                combo.insertItem(0, info.label(), info.spec)
        if not cameras:
            self.statusBar().showMessage("no cameras found", 3000)

    def set_streaming(self, on: bool) -> None:
        if on:
            c = self.controls
            host, port = c.host_edit.text().strip(), c.port_spin.value()
            protocol, expressions = c.protocol_combo.currentData(), c.expressions_combo.currentData()
            try:
                self.pipeline.start_stream(host, port, protocol, expressions)
            except UserError as err:                 # a bad host: say it, stay off
                self.say(str(err))
                c.stream_check.setChecked(False)
                return
            self.say(f"streaming {c.protocol_combo.currentText().split(' (')[0]} to {host}:{port}")
        else:
            self.pipeline.stop_stream()
            self.say("streaming off")
        self.controls.stream_check.setChecked(on)

    def set_recording(self, on: bool) -> None:
        if on:
            folder = self.controls.record_dir_edit.text().strip()
            if not folder:
                self.say("choose a folder to record into")
                self.controls.record_check.setChecked(False)
                return
            try:
                self.pipeline.start_recording(folder)   # creates the session folder now (app.outputs)
            except OSError as e:
                self.say(f"cannot record into {folder}: {e.strerror or e}")
                self.controls.record_check.setChecked(False)
                return
        else:
            self.pipeline.stop_recording(wait=False)
        self.controls.record_check.setChecked(on)

    def _set_corrected(self, on: bool) -> None:
        if self.pipeline.texture is not None:
            self.pipeline.texture.corrected = on

    def _pick_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Video file", "", "Videos (*.mp4 *.mov *.avi *.mkv *.webm)")
        if path:
            self.set_source(path)

    def _pick_session(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Recorded session folder")
        if folder:
            self.set_source(SessionSource(folder))

    def _pick_package(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Performer package folder")
        if folder:
            self.load_package(folder)

    def _pick_record_dir(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Record sessions into")
        if folder:
            self.controls.record_dir_edit.setText(folder)

    def after_frames(self, count: int, fn) -> None:
        """Call fn() once `count` frames have been shown (screenshots, tests)."""
        self._frame_callbacks.append((count, fn))

    # -- the UI timer ------------------------------------------------------------------------------------------
    def _tick(self) -> None:
        rec = self.pipeline.recording
        if rec is not None and (rec.failed or not rec.alive):   # the recorder died (disk full, encoder gone)
            self.set_recording(False)      # unticks Recording; the worker's own message says why it stopped
        items = self.pipeline.take()
        for item in items:
            self._push_frame_plots(item)
        if items:
            self._show(items[-1])
        if self.pipeline.texture is not None and self.gl is not None:
            if (tex := self.pipeline.texture.pop()) is not None:
                self.gl.set_texture(tex[0])
        messages = self.pipeline.messages()
        if messages:
            self.say(messages[-1])
        self._ticks += 1
        if self._ticks % PLOT_EVERY == 0:
            self._refresh_plots()
        self.frames_shown += len(items)
        for entry in [e for e in self._frame_callbacks if self.frames_shown >= e[0]]:
            self._frame_callbacks.remove(entry)
            entry[1]()

    def _show(self, item) -> None:
        frame = item.frame
        caption = f"{self.pipeline.source.name if self.pipeline.source else ''}  #{frame.index}"
        if item.found:
            caption += f"   presence {item.presence:.2f}"
        elif self.pipeline.tracker is not None or frame.replayed:
            caption += "   no face: re-detecting"
        self.video.show_frame(frame.image, item.points, caption)
        if self.gl is not None and item.found:
            self.gl.set_face(item.G, item.H)

    def _push_frame_plots(self, item) -> None:
        self._stability_raw.push(item.raw_G)
        self._stability.push(item.G)
        t = item.frame.t
        self.plots["latency"].push({k: v for k, v in item.stages_ms.items() if k not in ("detect", "crop")}, t)
        if item.found:
            pitch, yaw, roll = degrees(item.H)
            self.plots["pose"].push({"pitch": pitch, "yaw": yaw, "roll": roll}, t)
            self.plots["expressions"].push({k: item.expressions.get(k, 0.0) for k in EXPRESSIONS_SHOWN}, t)
        else:
            self.plots["pose"].push(dict.fromkeys(("pitch", "yaw", "roll")), t)
            self.plots["expressions"].push(dict.fromkeys(EXPRESSIONS_SHOWN), t)

    def _refresh_plots(self) -> None:
        p = self.pipeline
        capture = p.capture.rate.rate() if p.capture else 0.0
        track = p.track.rate.rate()
        rates = {"capture": capture, "track": track}
        if p.texture is not None:
            rates["texture"] = p.texture.rate.rate()
        self.plots["rates"].push(rates)
        smoothed = self._stability.value() if p.track.smoothing else None
        self.plots["stability"].push({"raw": self._stability_raw.value(), "smoothed": smoothed})
        for plot in self.plots.values():
            plot.refresh()
        text = f"capture {capture:.1f} fps · track {track:.1f} fps · dropped {p.dropped}"
        if p.recording is not None:
            text += f" · recorded {p.recording.written}"
        self.rate_label.setText(text)

    def closeEvent(self, event) -> None:
        """Stop every stage; a recording (also one stopped in the background before) is closed on disk
        (`closed: true`) before the window goes."""
        self._timer.stop()
        self.pipeline.stop()
        for worker in list(self.pipeline._old):
            if worker.name == "record":
                worker.stop(wait=True)
        super().closeEvent(event)
