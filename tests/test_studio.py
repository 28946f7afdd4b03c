"""The studio (app/): window, live behaviour, recording → replay, entry point, and the GL view.

Widgets run on Qt's offscreen platform when there is no display. The GL test needs a real X display:
    xvfb-run -a python -m pytest tests/test_studio.py
(it skips otherwise). The stand-in tracker is app.demo_tracker.DemoTracker (the runtime's interface).
"""
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
    session = load_session(folder)
    assert session.manifest["closed"] and len(session) == 5


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


def test_main_screenshot(qtbot, clip, tmp_path):
    from app.studio import main

    png = tmp_path / "studio.png"
    assert main(["--package", "demo", "--source", str(clip), "--screenshot", str(png), "--frames", "15"]) == 0
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
