"""The studio (app/): window, live behaviour, recording → replay, entry point, and the GL view.

Widgets run on Qt's offscreen platform when there is no display. The GL test needs a real X display:
    xvfb-run -a python -m pytest tests/test_studio.py
(it skips otherwise). The stand-in tracker is app.demo_tracker.DemoTracker (the runtime's interface).
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

if not os.environ.get("DISPLAY"):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("PySide6.QtWidgets")
pytest.importorskip("pytestqt")
pytest.importorskip("pyqtgraph")
cv2 = pytest.importorskip("cv2")

from app.demo_tracker import DemoTracker  # noqa: E402
from app.mailbox import LatestSlot  # noqa: E402
from app.recording import load_session  # noqa: E402
from app.replay import SessionSource  # noqa: E402
from app.sources import CameraSource, FileSource, Frame, SourceError, open_source  # noqa: E402
from app.stats import RollingStability  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A 2 s, 30 fps, 320×240 clip with a moving disc (the demo tracker ignores the content)."""
    path = tmp_path_factory.mktemp("studio") / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (320, 240))
    for i in range(60):
        img = np.full((240, 320, 3), 50, np.uint8)
        cv2.circle(img, (160 + int(60 * np.sin(i / 8)), 120), 40, (0, 180, 255), -1)
        writer.write(img)
    writer.release()
    return path


@pytest.fixture
def window(qtbot):
    from app.main_window import MainWindow

    made = []

    def make(**kw):
        w = MainWindow(**kw)
        qtbot.addWidget(w)
        w.resize(1000, 700)
        w.show()
        made.append(w)
        return w

    yield make
    for w in made:
        w.pipeline.stop()


class FlakySource:
    """A camera that disappears after `frames_before_loss` frames and stays away until `present` is True."""

    paced = True
    fps = 30.0
    name = "camera:flaky"

    def __init__(self, frames_before_loss=10):
        self.present, self.left, self.opened = True, frames_before_loss, 0

    def open(self):
        if not self.present:
            raise SourceError("no such device")
        self.opened += 1

    def read(self):
        time.sleep(1 / 30)
        self.left -= 1
        if self.left < 0:
            self.present = False
        if not self.present:
            raise OSError("device unplugged")  # not a SourceError: any exception must be survived
        return Frame(np.zeros((120, 160, 3), np.uint8), time.monotonic(), 0)

    def close(self):
        pass


# ------------------------------------------------------------------------------------------------- pieces
def test_no_torch_in_app():
    code = ("import sys, app.studio, app.main_window, app.demo_tracker, app.replay, app.pipeline; "
            "assert 'torch' not in sys.modules, 'app imports torch'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_latest_slot_keeps_newest_and_counts_drops():
    slot = LatestSlot()
    for i in range(5):
        slot.put(i)
    assert slot.take(0) == 4 and slot.dropped == 4
    assert slot.take(0.01) is None


def test_open_source_specs(tmp_path):
    cam = open_source("camera:3")
    assert isinstance(cam, CameraSource) and cam.index == 3
    with pytest.raises(SourceError):
        open_source("synthetic")  # no clip configured
    syn = open_source("synthetic", synthetic_clip=tmp_path / "s.mp4")
    assert isinstance(syn, FileSource) and syn.name == "synthetic"
    with pytest.raises(SourceError):
        syn.open()  # the file is not there: an error the capture worker reports and retries


def test_rolling_stability_straight_motion_is_one():
    s = RollingStability(10)
    base = np.random.default_rng(0).normal(size=(468, 3)).astype(np.float32)
    assert s.value() is None
    for t in range(10):
        s.push(base + 0.1 * t)
    assert s.value() == pytest.approx(1.0, abs=1e-4)
    s.push(None)  # a lost face breaks the run but not the value
    assert s.value() == pytest.approx(1.0, abs=1e-4)


# ----------------------------------------------------------------------------------------------- window
def test_window_tracks_a_file(window, qtbot, clip):
    w = window(tracker=DemoTracker(), source=str(clip))
    qtbot.waitUntil(lambda: w.frames_shown >= 20, timeout=15000)
    last = w.pipeline.track.last
    assert last.found and last.points.shape == (468, 2) and len(last.expressions) == 52
    assert w.video._points is not None
    qtbot.waitUntil(lambda: "track" in w.rate_label.text(), timeout=3000)
    assert "demo" in w.backend_label.text()
    assert w.plots["pose"].latest("yaw") is not None


def test_drops_stale_frames_when_tracking_is_slow(window, qtbot, clip):
    w = window(tracker=DemoTracker(delay_s=0.15), source=str(clip))
    qtbot.waitUntil(lambda: w.frames_shown >= 8, timeout=15000)
    p = w.pipeline
    assert p.dropped > 0
    # every captured frame was either tracked, dropped, or is still waiting in the slot
    assert p.capture.frames - p.dropped - p.slot.delivered in (0, 1)
    assert p.slot.delivered < p.capture.frames / 2  # ~6.5 fps tracking of a 30 fps file
    qtbot.waitUntil(lambda: "dropped" in w.rate_label.text(), timeout=3000)


def test_camera_loss_shows_message_and_reconnects(window, qtbot):
    w = window(tracker=DemoTracker())
    src = FlakySource()
    w.set_source(src)
    qtbot.waitUntil(lambda: "lost" in w.message_label.text(), timeout=5000)
    assert w.pipeline.capture.alive and w.pipeline.track.alive
    shown = w.frames_shown
    src.present, src.left = True, 1000
    qtbot.waitUntil(lambda: "reconnected" in w.message_label.text(), timeout=5000)
    qtbot.waitUntil(lambda: w.frames_shown > shown + 3, timeout=5000)
    assert src.opened == 2


def test_tracker_error_does_not_crash(window, qtbot, clip):
    class Broken(DemoTracker):
        def __call__(self, frame):
            raise RuntimeError("backend exploded")

    w = window(tracker=Broken(), source=str(clip))
    qtbot.waitUntil(lambda: "backend exploded" in w.message_label.text(), timeout=5000)
    qtbot.waitUntil(lambda: w.frames_shown >= 5, timeout=5000)  # frames still flow (without a face)


def test_record_then_replay_round_trips(window, qtbot, clip, tmp_path):
    w = window(tracker=DemoTracker(), source=str(clip), record_dir=tmp_path)
    w.set_recording(True)
    qtbot.waitUntil(lambda: w.pipeline.recording is not None and w.pipeline.recording.written >= 20,
                    timeout=15000)
    folder = w.pipeline.stop_recording(wait=True)
    session = load_session(folder)
    assert session.manifest["closed"] and len(session) >= 20 and session.G is not None
    assert session.manifest["frame_size"] == [320, 240]

    w.set_tracker(None)  # replay needs no tracker
    w.set_source(SessionSource(folder))
    qtbot.waitUntil(lambda: w.pipeline.track.last is not None and w.pipeline.track.last.frame.recorded is not None,
                    timeout=10000)
    qtbot.waitUntil(lambda: w.frames_shown >= 10, timeout=10000)
    item = w.pipeline.track.last
    i = item.frame.index
    np.testing.assert_allclose(item.H, session.H[i])
    np.testing.assert_allclose(item.G, session.G[i])
    assert item.expressions == pytest.approx(session.expressions(i))
    assert item.frame.image.shape == (240, 320, 3)


def test_recording_box_unticks_when_the_recorder_dies(window, qtbot, clip, tmp_path, monkeypatch):
    """A recorder that stops on an error (disk full) unticks Recording, says why, and still closes its session."""
    import errno

    import app.outputs
    from app.recording import SessionRecorder

    class DiskFull(SessionRecorder):
        def write(self, *args, **kw):
            if self.count >= 5:
                raise OSError(errno.ENOSPC, "No space left on device", str(self.folder / "frames.jsonl"))
            super().write(*args, **kw)

    monkeypatch.setattr(app.outputs, "SessionRecorder", DiskFull)
    w = window(tracker=DemoTracker(), source=str(clip), record_dir=tmp_path)
    w.set_recording(True)
    assert w.controls.record_check.isChecked()
    qtbot.waitUntil(lambda: not w.controls.record_check.isChecked(), timeout=10000)
    assert w.pipeline.recording is None
    qtbot.waitUntil(lambda: "No space left" in w.message_label.text() or "saved" in w.message_label.text()
                    or "closed" in w.message_label.text(), timeout=5000)
    (folder,) = tmp_path.iterdir()
    # The worker says why it stopped, then closes the session: wait for the closed manifest, not for the message.
    qtbot.waitUntil(lambda: load_session(folder).manifest["closed"], timeout=5000)
    assert len(load_session(folder)) == 5


def test_recording_into_an_unwritable_folder_is_a_message(window, qtbot, clip, tmp_path):
    (tmp_path / "afile").write_text("")
    w = window(tracker=DemoTracker(), source=str(clip), record_dir=tmp_path / "afile")
    w.set_recording(True)
    assert not w.controls.record_check.isChecked() and w.pipeline.recording is None
    assert "cannot record" in w.message_label.text()


def test_closing_the_window_closes_a_background_stopped_session(window, qtbot, clip, tmp_path):
    w = window(tracker=DemoTracker(), source=str(clip), record_dir=tmp_path)
    w.set_recording(True)
    qtbot.waitUntil(lambda: w.pipeline.recording is not None and w.pipeline.recording.written >= 5, timeout=15000)
    w.set_recording(False)                       # stops in the background (wait=False) ...
    w.close()                                    # ... and the window waits for it before it goes
    (folder,) = tmp_path.iterdir()
    assert load_session(folder).manifest["closed"]


def test_no_display_is_an_error_line_not_an_abort(monkeypatch, capsys):
    from app import studio

    for key in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    assert studio.main(["--package", "demo"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "no display" in err[0]


def test_streams_vmc_and_calibrates(window, qtbot, clip):
    import socket

    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(5)
    w = window(tracker=DemoTracker(), source=str(clip))
    w.controls.port_spin.setValue(rx.getsockname()[1])
    w.controls.stream_check.setChecked(True)
    w.controls.calibrate_button.click()
    qtbot.waitUntil(lambda: "calibrated" in w.message_label.text(), timeout=5000)
    data = rx.recv(65536)
    rx.close()
    assert b"#bundle" in data and b"/VMC/Ext/Bone/Pos" in data and b"jawOpen" in data
    w.controls.stream_check.setChecked(False)
    assert w.pipeline.track.sender is None


def test_stream_protocol_and_expression_set_are_choices(window, qtbot, clip):
    """The Stream box picks the protocol (its default port follows) and, for VMC, the expression names sent."""
    import socket

    w = window(tracker=DemoTracker(), source=str(clip))
    c = w.controls
    c.protocol_combo.setCurrentIndex(c.protocol_combo.findData("ifacialmocap"))
    assert c.port_spin.value() == 49983 and not c.expressions_combo.isEnabled()
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(5)
    try:
        c.port_spin.setValue(rx.getsockname()[1])
        c.stream_check.setChecked(True)
        text = rx.recv(65536).decode()
        assert "jawOpen-" in text and "=head#" in text                       # iFacialMocap's text format
        c.stream_check.setChecked(False)
        c.protocol_combo.setCurrentIndex(c.protocol_combo.findData("vmc"))
        assert c.port_spin.value() == 39539 and c.expressions_combo.isEnabled()
        c.expressions_combo.setCurrentIndex(c.expressions_combo.findData("vrm"))
        c.port_spin.setValue(rx.getsockname()[1])
        while True:                                                           # drain iFacialMocap's last packets
            rx.settimeout(0.2)
            try:
                rx.recv(65536)
            except socket.timeout:
                break
        rx.settimeout(5)
        c.stream_check.setChecked(True)
        seen = b"".join(rx.recv(65536) for _ in range(6))
        assert b"Blink_L" in seen and b"jawOpen" not in seen                  # VRM presets only
    finally:
        c.stream_check.setChecked(False)
        rx.close()


def test_main_screenshot(clip, tmp_path):
    # In a process of its own: once app.exec() has run with the workers' threads, PySide's later qWait calls in
    # this process keep the GIL, and the tests after it would see their workers starve.
    png = tmp_path / "studio.png"
    subprocess.run([sys.executable, "-m", "app.studio", "--package", "demo", "--source", str(clip),
                    "--screenshot", str(png), "--frames", "15"], check=True, cwd=ROOT, timeout=180)
    img = cv2.imread(str(png))
    assert img is not None and img.shape[0] > 300 and img.shape[1] > 600


# ---------------------------------------------------------------------------------------------- GL view
def _gl_or_skip():
    if not os.environ.get("DISPLAY") or os.environ.get("QT_QPA_PLATFORM") == "offscreen":
        pytest.skip("the GL view needs an X display: run under xvfb-run -a")
    from app.gl_view import gl_available

    if not gl_available():
        pytest.skip("no OpenGL 3.3 context on this display")


def test_gl_view_draws_the_face(qtbot, tmp_path):
    _gl_or_skip()
    from app.gl_view import BACKGROUND, FaceGLView

    tracker = DemoTracker()
    result = tracker(np.zeros((480, 640, 3), np.uint8))
    view = FaceGLView()
    qtbot.addWidget(view)
    view.resize(300, 300)
    view.set_topology(*tracker.topology)
    view.set_texture(np.full((64, 64, 3), (220, 40, 40), np.uint8))  # plain red
    view.set_face(result.G, result.H)
    view.show()
    qtbot.waitExposed(view)
    qtbot.waitUntil(lambda: view.frames_drawn > 0, timeout=5000)
    assert view.error is None

    def pixels():
        img = view.grabFramebuffer().convertToFormat(view.grabFramebuffer().Format.Format_RGB888)
        arr = np.frombuffer(img.constBits(), np.uint8).reshape(img.height(), img.bytesPerLine())
        return arr[:, : img.width() * 3].reshape(img.height(), img.width(), 3).copy(), img

    rgb, img = pixels()
    img.save(str(tmp_path / "gl_textured.png"))
    bg = np.round(np.array(BACKGROUND) * 255)
    assert np.abs(rgb[0, 0] - bg).max() <= 2  # a corner is background
    centre = rgb[rgb.shape[0] // 2, rgb.shape[1] // 2].astype(int)
    assert centre[0] > 150 and centre[1] < 90 and centre[2] < 90  # the face, in the texture's red
    face = np.abs(rgb.astype(int) - bg).max(-1) > 10
    assert 0.15 < face.mean() < 0.9

    view.set_mode("wireframe")
    qtbot.waitUntil(lambda: view.frames_drawn > 1, timeout=5000)
    wire, img = pixels()
    img.save(str(tmp_path / "gl_wireframe.png"))
    lines = np.abs(wire.astype(int) - bg).max(-1) > 10
    assert 0.01 < lines.mean() < face.mean()  # edges only: fewer pixels than the filled face


# ------------------------------------------------------------------------ performer controls, per package
def _sample_tracker():
    from app.main_window import open_package
    from export.package import SAMPLE_PACKAGE

    return open_package(str(SAMPLE_PACKAGE))          # read-only: settings live in the test's own config


@pytest.fixture(scope="module")
def still_clip(tmp_path_factory) -> Path:
    """The sample package's first frame, held still for 1 s: a performer at rest."""
    from export.package import SAMPLE_PACKAGE

    cap = cv2.VideoCapture(str(SAMPLE_PACKAGE / "synthetic.mp4"))
    ok, frame = cap.read()
    cap.release()
    assert ok
    path = tmp_path_factory.mktemp("still") / "still.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (frame.shape[1], frame.shape[0]))
    for _ in range(30):
        writer.write(frame)
    writer.release()
    return path


def _activate(combo, data) -> None:
    """Pick an item as a user does (`activated` is what the window listens to)."""
    i = combo.findData(data)
    assert i >= 0
    combo.setCurrentIndex(i)
    combo.activated.emit(i)


def test_controls_are_saved_per_package_and_restored(window, qtbot):
    from app import settings as saved

    w = window(tracker=_sample_tracker())
    c = w.controls
    key = w.settings_key
    assert key and saved.package_settings_file(key).parent == saved.config_dir() / "packages"
    c.min_cutoff_slider.slider.setValue(20)
    c.beta_slider.slider.setValue(35)
    c.smoothing_check.setChecked(False)
    c.overlay_check.setChecked(False)
    c.mirror_check.setChecked(True)
    _activate(c.size_combo, "1280x720")
    _activate(c.fps_combo, 60)
    c.shapes_dialog.gain["jawOpen"].setValue(1.5)
    c.shapes_dialog.dead_zone["browInnerUp"].setValue(0.2)
    cutoff, beta = c.min_cutoff_slider.value(), c.beta_slider.value()
    assert cutoff < 0.5 and beta == 3.5
    assert w.pipeline.track._smoother.min_cutoff == cutoff and not w.pipeline.track.smoothing
    assert w.pipeline.track.tuning == ({"jawOpen": 1.5}, {"browInnerUp": 0.2})
    w.close()                                              # a pending save is written on close
    assert json.loads(saved.package_settings_file(key).read_text())["camera"]["fps"] == 60

    w2 = window(tracker=_sample_tracker())
    c2 = w2.controls
    assert (c2.min_cutoff_slider.value(), c2.beta_slider.value()) == (cutoff, beta)
    assert c2.min_cutoff_slider.label.text() == f"{cutoff:.2f} Hz"
    assert not c2.smoothing_check.isChecked() and not c2.overlay_check.isChecked() and c2.mirror_check.isChecked()
    assert c2.size_combo.currentData() == "1280x720" and c2.fps_combo.currentData() == 60
    assert c2.shapes_dialog.gain["jawOpen"].value() == 1.5 and c2.shapes_dialog.values()[1] == {"browInnerUp": 0.2}
    track = w2.pipeline.track
    assert (track._smoother.min_cutoff, track._smoother.beta, track.smoothing) == (cutoff, beta, False)
    assert track.tuning == ({"jawOpen": 1.5}, {"browInnerUp": 0.2})
    assert not w2.video.overlay and w2.video.mirror
    w2.set_source("camera:9")                              # the saved camera mode is what a camera is asked for
    assert (w2.pipeline.source.size, w2.pipeline.source.requested_fps) == ((1280, 720), 60)
    _activate(c2.fps_combo, 15)                            # a change reopens the camera with it
    assert w2.pipeline.source.requested_fps == 15


def test_calibration_is_saved_and_restored(window, qtbot, still_clip):
    from app import settings as saved

    w = window(tracker=_sample_tracker(), source=str(still_clip))
    qtbot.waitUntil(lambda: w.pipeline.track.last is not None and w.pipeline.track.last.found, timeout=20000)
    assert max(w.pipeline.track.last.expressions.values()) > 0.2     # this face is not the default neutral
    assert not w.controls.reset_calibration_button.isEnabled()
    w.controls.calibrate_button.click()
    qtbot.waitUntil(lambda: w.settings.neutral is not None, timeout=10000)
    assert "calibrated" in w.controls.neutral_label.text() and w.controls.reset_calibration_button.isEnabled()
    stored = json.loads(saved.package_settings_file(w.settings_key).read_text())["neutral"]
    assert set(stored) == {"measures", "eyes", "head"} and len(stored["head"]) == 6
    w.close()

    w2 = window(tracker=_sample_tracker(), source=str(still_clip))
    assert w2.settings.neutral is not None and "calibrated" in w2.controls.neutral_label.text()
    qtbot.waitUntil(lambda: w2.frames_shown >= 8 and w2.pipeline.track.last.found, timeout=20000)
    assert max(w2.pipeline.track.last.expressions.values()) < 0.1   # the resting face reads ~0
    w2.controls.reset_calibration_button.click()
    assert w2.settings.neutral is None
    assert json.loads(saved.package_settings_file(w2.settings_key).read_text())["neutral"] is None


def test_the_measured_range_is_saved_and_restored(window, qtbot, clip, monkeypatch):
    """"Measure my range" waits for a calibrated neutral, then takes the next seconds of faces: the expressions shown
    reach 1 there, the range is saved with the package's settings, restored at the next launch and reset."""
    import app.tracking
    from app import settings as saved

    monkeypatch.setattr(app.tracking, "RANGE_SECONDS", 1.5)
    w = window(tracker=DemoTracker(), source=str(clip))
    c = w.controls
    qtbot.waitUntil(lambda: w.pipeline.track.last is not None and w.pipeline.track.last.found, timeout=20000)
    assert not c.range_button.isEnabled() and not c.reset_range_button.isEnabled()   # no neutral to measure from
    c.calibrate_button.click()
    qtbot.waitUntil(lambda: w.settings.neutral is not None, timeout=10000)
    assert c.range_button.isEnabled()
    c.range_button.click()
    qtbot.waitUntil(lambda: w.settings.ranges is not None, timeout=20000)
    assert {"jawOpen", "mouthSmile"} <= set(w.settings.ranges) and "measured" in c.range_label.text()
    assert w.pipeline.track.estimator.gains["jawOpen"][1] == w.settings.ranges["jawOpen"]
    assert json.loads(saved.package_settings_file(w.settings_key).read_text())["ranges"] == w.settings.ranges
    ranges = w.settings.ranges
    w.close()

    w2 = window(tracker=DemoTracker(), source=str(clip))
    assert w2.settings.ranges == ranges and w2.pipeline.track.own_ranges == ranges
    assert "measured" in w2.controls.range_label.text() and w2.controls.reset_range_button.isEnabled()
    w2.controls.reset_range_button.click()
    assert w2.settings.ranges is None and w2.pipeline.track.own_ranges is None
    assert json.loads(saved.package_settings_file(w2.settings_key).read_text())["ranges"] is None


def test_backend_choice_reopens_and_shows_the_fallback(window, qtbot):
    from app import settings as saved

    w = window(tracker=_sample_tracker())
    assert w.controls.backend_combo.isEnabled() and w.controls.backend_note.text()
    _activate(w.controls.backend_combo, "cuda")
    qtbot.waitUntil(lambda: getattr(w.pipeline.tracker, "requested_backend", None) == "cuda", timeout=20000)
    note = w.controls.backend_note.text()
    assert note.startswith("wanted cuda") and "running on cpu" in note and "\n" not in note
    w.close()
    assert json.loads(saved.package_settings_file(w.settings_key).read_text())["backend"] == "cuda"

    w2 = window(tracker=_sample_tracker())         # opened on auto: the saved backend reopens it on cuda
    qtbot.waitUntil(lambda: getattr(w2.pipeline.tracker, "requested_backend", None) == "cuda", timeout=20000)
    assert w2.controls.backend_combo.currentData() == "cuda"


def _green_pixels(view) -> int:
    img = view.grab().toImage().convertToFormat(view.grab().toImage().Format.Format_RGB888)
    arr = np.frombuffer(img.constBits(), np.uint8).reshape(img.height(), img.bytesPerLine())
    rgb = arr[:, : img.width() * 3].reshape(img.height(), img.width(), 3).astype(int)
    return int(((rgb[..., 1] > 180) & (rgb[..., 0] < 150) & (rgb[..., 2] < 200)).sum())


def test_overlay_off_draws_no_mesh(window, qtbot, clip):
    w = window(tracker=DemoTracker(), source=str(clip))
    qtbot.waitUntil(lambda: w.frames_shown >= 5 and w.video._points is not None, timeout=15000)
    assert _green_pixels(w.video) > 200 and w.video.mesh_drawn
    w.controls.overlay_check.setChecked(False)
    assert _green_pixels(w.video) == 0 and not w.video.mesh_drawn
    w.controls.overlay_check.setChecked(True)
    assert _green_pixels(w.video) > 200


def test_mirror_preview_flips_the_picture_only(qtbot):
    from app.controls import MIRROR_TIP
    from app.video_view import VideoView

    view = VideoView()
    qtbot.addWidget(view)
    view.resize(320, 240)
    rgb = np.zeros((240, 320, 3), np.uint8)
    rgb[:, :80] = (255, 0, 0)                            # red on the left of the frame
    points = np.array([[10.0, 120.0]] * 468)
    view.overlay = False
    view.show_frame(rgb, points)

    def red_side():
        img = view.grab().toImage()
        return "left" if img.pixelColor(20, 120).red() > 200 else "right" if img.pixelColor(300, 120).red() > 200 \
            else None

    assert red_side() == "left"
    view.set_mirror(True)
    assert red_side() == "right" and view._points[0, 0] == 10.0     # the data is not mirrored
    assert "not mirrored" in MIRROR_TIP                              # and the tooltip says so


def test_bad_settings_file_is_one_line_and_defaults(window, qtbot):
    from app import settings as saved

    path = saved.package_settings_file("demo")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"smoothing": {"min_cutoff": "fast", "beta": 2.0}, "overlay": 7,
                                "shapes": {"jawOpen": {"gain": 2.0}, "nope": {}}}))
    w = window(tracker=DemoTracker())
    text = w.message_label.text()
    assert "ignored" in text and "min_cutoff" in text and "\n" not in text
    assert w.controls.min_cutoff_slider.value() == 1.0 and w.controls.beta_slider.value() == 2.0
    assert w.controls.overlay_check.isChecked() and w.pipeline.track.tuning[0] == {"jawOpen": 2.0}


def test_unwritable_config_is_a_message(window, qtbot, tmp_path, monkeypatch):
    blocker = tmp_path / "cfg"
    blocker.write_text("")
    monkeypatch.setenv("FACETRACK_CONFIG", str(blocker))
    w = window(tracker=DemoTracker())
    w.controls.mirror_check.setChecked(True)
    w.save_settings()
    assert w.message_label.text().startswith("cannot save settings") and w.video.mirror


def test_a_package_without_texture_shows_the_shaded_view(window, qtbot):
    class Geometry:                                     # a package without a face model: no texture
        backend, fallback = "cpu", None

        def __init__(self):
            self._demo = DemoTracker()
            self.topology = self._demo.topology

        def __call__(self, frame):
            return self._demo(frame)

    w = window(tracker=Geometry())
    assert w.controls.mode_combo.currentText() == "shaded" and w.pipeline.texture is None
    w.set_tracker(DemoTracker())
    assert w.controls.mode_combo.currentText() == "textured"


def test_make_model_button(window, qtbot, monkeypatch):
    import types

    from PySide6.QtWidgets import QDialog

    w = window(tracker=DemoTracker())
    monkeypatch.setitem(sys.modules, "app.onboarding", None)      # the module is not there: one line
    w.controls.make_model_button.click()
    assert "Make my model" in w.message_label.text() and w.make_model_dialog is None

    fake = types.ModuleType("app.onboarding")

    class MakeModelDialog(QDialog):
        def __init__(self, parent):
            super().__init__(parent)
            self.opened_by = parent

    fake.MakeModelDialog = MakeModelDialog
    monkeypatch.setitem(sys.modules, "app.onboarding", fake)
    w.controls.make_model_button.click()
    assert isinstance(w.make_model_dialog, MakeModelDialog) and w.make_model_dialog.isVisible()
    assert w.make_model_dialog.opened_by is w
    w.make_model_dialog.close()
