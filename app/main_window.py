"""The studio window: live video with the mesh overlay, the 3D view, plots, controls and the status bar.

The window owns a Pipeline (app.pipeline) and only polls it on a 30 ms timer, so nothing here waits for a
camera, a tracker or a disk. Slow set-up (opening a package, probing cameras) runs on short-lived threads
that report back through Qt signals.

The performer's tuning is saved per package (app.settings.PackageSettings): opening a package loads its file,
shows it in the controls and applies it to the track worker, the video view, the camera request and the backend
(reopening the package when its saved backend is not the one it was opened with); each change is saved a moment
later (SAVE_DELAY_MS, so a dragged slider is one write), a calibration at once, and the rest on close.
"""
from __future__ import annotations

import threading

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QDockWidget, QFileDialog, QLabel, QMainWindow, QScrollArea, QSplitter

from app import settings as saved
from app.controls import Controls, size_of
from app.gl_view import FaceGLView, gl_available
from app.pipeline import Pipeline
from app.plots import RollingPlot
from app.replay import SessionSource
from app.sources import CameraSource, SourceError, enumerate_cameras, open_source
from app.stats import RollingStability
from app.video_view import VideoView
from engine.errors import UserError
from engine.pose import degrees

EXPRESSIONS_SHOWN = ("jawOpen", "eyeBlinkLeft", "eyeBlinkRight", "mouthSmileLeft", "browInnerUp")
TICK_MS = 30
PLOT_EVERY = 3  # redraw the plots every third tick (~10 Hz): plotting is the UI's main cost
SAVE_DELAY_MS = 400
PLOTS_HEIGHT = 170


class _Signals(QObject):
    cameras_found = Signal(object)       # list[CameraInfo]
    package_opened = Signal(object, str)  # (tracker or None, path or error text)


def open_package(path: str, backend: str = "auto"):
    """The tracker of a performer package (export.runtime) on `backend` (kept as `requested_backend`: the
    tracker's `backend` says what actually runs); "demo" gives the model-free DemoTracker."""
    if path == "demo":
        from app.demo_tracker import DemoTracker

        return DemoTracker()
    from export.runtime import open_tracker  # imported late: the runtime pulls in onnxruntime

    tracker = open_tracker(path, backend=backend)
    tracker.requested_backend = backend
    return tracker


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
        self.settings = saved.PackageSettings()   # the open package's tuning (defaults until one is open)
        self.settings_key: str | None = None      # its file's key (app.settings); None: nothing is saved
        self.settings_note: str | None = None     # the last one-line problem with the settings file, if any
        self.package_path: str | None = None
        self.make_model_dialog = None
        self._calibrations_seen = self._ranges_seen = 0
        self._forced_shaded = False
        self._save_timer = QTimer(self)
        self._save_timer.setSingleShot(True)
        self._save_timer.timeout.connect(self.save_settings)

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
        if self.settings_note:        # said again: opening the source spoke over it
            self.say(self.settings_note)
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
        scroll = QScrollArea()            # a short screen scrolls the controls rather than squashing them
        scroll.setWidget(self.controls)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(self.controls.sizeHint().width() + scroll.verticalScrollBar().sizeHint().width())
        dock = QDockWidget("Controls", self)
        dock.setObjectName("controls")
        dock.setWidget(scroll)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        # the controls take the full height; the plots share the width left of them
        self.setCorner(Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.RightDockWidgetArea)
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
        self.resizeDocks([previous], [PLOTS_HEIGHT], Qt.Orientation.Vertical)   # the video keeps the most room

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
        c.make_model_button.clicked.connect(self.make_model)
        c.backend_combo.activated.connect(lambda i: self.set_backend(c.backend_combo.itemData(i)))
        c.calibrate_button.clicked.connect(self.pipeline.track.calibrate_neutral)
        c.reset_calibration_button.clicked.connect(self.reset_calibration)
        c.range_button.clicked.connect(lambda: self.pipeline.track.measure_range())   # not clicked's bool as seconds
        c.reset_range_button.clicked.connect(self.reset_range)
        c.smoothing_check.toggled.connect(lambda on: self._change(smoothing=on))
        c.min_cutoff_slider.valueChanged.connect(lambda v: self._change(min_cutoff=v))
        c.beta_slider.valueChanged.connect(lambda v: self._change(beta=v))
        c.shapes_dialog.changed.connect(lambda g, d: self._change(gains=g, dead_zones=d))
        c.overlay_check.toggled.connect(lambda on: self._change(overlay=on))
        c.mirror_check.toggled.connect(lambda on: self._change(mirror=on))
        c.size_combo.activated.connect(lambda i: self._change(
            camera=True, **dict(zip(("camera_width", "camera_height"), size_of(c.size_combo.itemData(i))))))
        c.fps_combo.activated.connect(lambda i: self._change(camera=True, camera_fps=c.fps_combo.itemData(i)))
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
        """A spec string (camera:N, synthetic, a file) or a ready source object (tests, replay). A camera is
        asked for the package's saved size and fps."""
        if isinstance(spec_or_source, str):
            s = self.settings
            try:
                source = open_source(spec_or_source, self.synthetic_clip,
                                     size=(s.camera_width, s.camera_height) if s.camera_width else None,
                                     fps=s.camera_fps or None)
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
        c = self.controls
        if tracker is None:
            self.backend_label.setText("no performer package")
            c.package_label.setText("none: choose a package folder")
            c.backend_note.setText("")
            if self._save_timer.isActive():
                self.save_settings()
            self.settings_key = self.package_path = None     # tuning still works, but is not saved
            return
        triangles, uv, holes = tracker.topology
        self.video.set_topology(triangles)
        if self.gl is not None:
            self.gl.set_topology(triangles, uv, holes)
        backend = getattr(tracker, "backend", "?")
        self.backend_label.setText(f"backend: {backend}")
        c.package_label.setText(label or "loaded")
        fallback = getattr(tracker, "fallback", None)
        c.backend_note.setText(fallback or f"running: {backend}")
        self._texture_or_shaded(tracker)
        package = getattr(tracker, "package", None)
        self.package_path = str(package.path) if getattr(package, "path", None) is not None else None
        c.backend_combo.setEnabled(self.package_path is not None)   # the demo tracker has no backends
        self._load_settings(saved.package_key(tracker))
        if fallback:
            self.say(fallback)
        elif self.settings_note:
            self.say(self.settings_note)
        wanted = self.settings.backend
        if self.package_path is not None and wanted != getattr(tracker, "requested_backend", "auto"):
            self.load_package(self.package_path, wanted)     # opened elsewhere on another backend: reopen

    def _texture_or_shaded(self, tracker) -> None:
        """A package without a texture model shows its geometry: the 3D view's "shaded" mode."""
        combo = self.controls.mode_combo
        if not hasattr(tracker, "texture"):
            self._forced_shaded = self._forced_shaded or combo.currentText() == "textured"
            combo.setCurrentText("shaded")
        elif self._forced_shaded:
            self._forced_shaded = False
            combo.setCurrentText("textured")

    def load_package(self, path: str, backend: str | None = None) -> None:
        """Open a package off the UI thread (ONNX sessions can take seconds to build) on `backend` (None: the
        one saved for that package, else auto)."""
        self.say(f"opening {path}…")

        def work():
            try:
                chosen = saved.saved_backend(path) if backend is None else backend
                self._signals.package_opened.emit(open_package(path, chosen), path)
            except Exception as e:  # a broken package is a message, not a crash
                self._signals.package_opened.emit(None, f"cannot open {path}: {e}")

        threading.Thread(target=work, daemon=True).start()

    def set_backend(self, backend: str) -> None:
        """Reopen the open package on `backend` (auto|tensorrt|cuda|cpu) and remember the choice."""
        self._change(backend=backend)
        if self.package_path is not None:
            self.load_package(self.package_path, backend)

    def make_model(self) -> None:
        """The "Make my model" guide (app.onboarding), a window of its own."""
        try:
            from app.onboarding import MakeModelDialog
        except ImportError as e:
            self.say(f"Make my model is not available here ({e})")
            return
        self.make_model_dialog = MakeModelDialog(self)
        self.make_model_dialog.show()

    # -- per-package settings ------------------------------------------------------------------------------
    def _load_settings(self, key: str | None) -> None:
        """Show and apply the package's saved settings. The package already open keeps its settings in memory
        (a reopen on another backend must not read a file a pending save has not reached yet)."""
        self._check_calibration()             # a calibration still unseen belongs to the package we leave
        if self._save_timer.isActive():
            self.save_settings()              # the package we leave (or reopen) keeps its last changes
        if key is None or key != self.settings_key:
            self.settings_key = key
            self.settings, problems = saved.load_package_settings(key)    # None: the defaults
            self.settings_note = saved.problems_line(key, problems) if problems else None
        self._apply_settings()

    def _apply_settings(self) -> None:
        s, track = self.settings, self.pipeline.track
        self.controls.apply_settings(s)
        track.set_smoothing(s.smoothing)
        track.set_smoothing_params(s.min_cutoff, s.beta)
        track.set_tuning(s.gains, s.dead_zones)
        track.set_neutral(s.neutral)          # checked when loaded: it cannot fail here
        track.set_own_ranges(s.ranges)
        self._calibrations_seen, self._ranges_seen = track.calibrations, track.range_measures
        self.video.set_overlay(s.overlay)
        self.video.set_mirror(s.mirror)
        self._reopen_camera()

    def _change(self, camera: bool = False, **fields) -> None:
        """A control changed some settings: apply them now, save them a moment later."""
        for name, value in fields.items():
            setattr(self.settings, name, value)
        s, track = self.settings, self.pipeline.track
        if "smoothing" in fields:
            track.set_smoothing(s.smoothing)
        if "min_cutoff" in fields or "beta" in fields:
            track.set_smoothing_params(s.min_cutoff, s.beta)
        if "gains" in fields:
            track.set_tuning(s.gains, s.dead_zones)
        self.video.set_overlay(s.overlay)
        self.video.set_mirror(s.mirror)
        if camera:
            self._reopen_camera()
        self._save_timer.start(SAVE_DELAY_MS)

    def _reopen_camera(self) -> None:
        """A camera source asks for the saved size and fps only when it opens: reopen it when they changed."""
        source, s = self.pipeline.source, self.settings
        if isinstance(source, CameraSource):
            size = (s.camera_width, s.camera_height) if s.camera_width else None
            if (source.size, source.requested_fps) != (size, s.camera_fps or None):
                self.set_source(source.name)

    def reset_calibration(self) -> None:
        self.pipeline.track.set_neutral(None)
        self.settings.neutral = None
        self.controls.show_neutral(None)
        self.save_settings()
        self.say("calibration reset: the default face is neutral")

    def reset_range(self) -> None:
        self.pipeline.track.set_own_ranges(None)
        self.settings.ranges = None
        self.controls.show_range(None)
        self.save_settings()
        self.say("range reset: the model's own range")

    def save_settings(self) -> None:
        """Write the package's settings now (a failure is one line in the status bar)."""
        self._save_timer.stop()
        if (error := saved.save_package_settings(self.settings_key, self.settings, self.package_path)) is not None:
            self.say(error)

    def _check_calibration(self) -> None:
        """A calibration or a range taken by the track worker is saved at once."""
        track = self.pipeline.track
        if track.calibrations != self._calibrations_seen:
            self._calibrations_seen = track.calibrations
            self.settings.neutral = track.neutral_state()
            self.controls.show_neutral(self.settings.neutral)
            self.save_settings()
        if track.range_measures != self._ranges_seen:
            self._ranges_seen = track.range_measures
            self.settings.ranges = track.own_ranges
            self.controls.show_range(self.settings.ranges)
            self.save_settings()

    def _on_package(self, tracker, text: str) -> None:
        if tracker is None:
            self.say(text)
            return
        self.set_tracker(tracker, text)
        from app.studio import remember_opened

        remember_opened(text, tracker)       # the performer's own package opens at the next launch
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
        self._check_calibration()
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
        self._check_calibration()
        if self._save_timer.isActive():
            self.save_settings()
        self.pipeline.stop()
        for worker in list(self.pipeline._old):
            if worker.name == "record":
                worker.stop(wait=True)
        super().closeEvent(event)
