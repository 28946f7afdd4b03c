"""Make my model: the prompt script, the guided recording (files in, two clips out), the pipeline's frame tap,
BuildProcess (progress, cancel, failure) against a fake build, the `make-model` CLI (errors, SIGTERM mid-build,
and one real tiny build end to end: ~1–1.5 min on 2 CPU cores, the slowest test here), and the studio dialog.

Qt tests need a display or Qt's offscreen platform: `xvfb-run -a python -m pytest tests/test_make_model.py`.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from engine import prompts
from app.build_process import STAGE_WEIGHTS, BuildProcess, describe_eta
from app.guided import CLIPS, GuidedRecording, TapRecorder, enrollment_script, full_script
from app import make_model as mm
from app.interrupt import StopSignals
from engine import progress

cv2 = pytest.importorskip("cv2")

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "export" / "sample_package"
CLIP = SAMPLE / "synthetic.mp4"              # 150 frames, 25 fps, 640×480


def decoded(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while (ok := cap.read())[0]:
        frames.append(ok[1])
    cap.release()
    return frames


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:                                      # a zombie (exited, not yet reaped by its parent) is not running
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return True


def group_alive(pgid: int) -> bool:
    """Whether any running (non-zombie) process is in process group `pgid` (an orphan's zombie may wait a while
    for init to reap it; it runs nothing)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _ppid, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue
        if int(group) == pgid and state != "Z":
            return True
    return False


# ----------------------------------------------------------------------------------------------- the script
def test_prompt_script_covers_the_expressions_and_the_time():
    for seconds in (30.0, 7.5):
        script = enrollment_script(seconds)
        assert sum(p.seconds for p in script) == pytest.approx(seconds, abs=1e-9)
        assert all(p.seconds > 0 and p.clip == "enroll" for p in script)
    keys = {p.key for p in enrollment_script()}
    assert {"neutral", "blink", "smile", "jaw", "brows", "frown", "pucker", "look"} <= keys
    smiles = " ".join(p.text for p in enrollment_script() if p.key == "smile")
    assert "left side" in smiles and "right side" in smiles      # one-sided smiles for the expression basis
    looks = " ".join(p.text for p in enrollment_script() if p.key == "look")
    assert all(w in looks for w in ("left", "right", "up", "down"))
    full = full_script(30, 20, get_ready=3)
    assert [p.clip for p in full][0] is None and full[-1].clip == "perform" and full[-1].seconds == 20
    assert sum(p.seconds for p in full if p.clip == "enroll") == pytest.approx(30)
    assert "usual place" in full[-1].text


# ----------------------------------------------------------------------------------------------- recording
def test_guided_recording_splits_a_file_into_two_playable_clips(tmp_path):
    from app.sources import FileSource, SourceError
    from engine import video

    src = FileSource(CLIP, loop=False)
    src.open()
    rec = GuidedRecording(tmp_path, src.fps, enroll_seconds=2.0, perform_seconds=1.2, get_ready=0.4)
    originals = []
    try:
        while True:
            frame = src.read()
            originals.append(frame.image)
            if not rec.feed(frame.image):
                break
    except SourceError:
        pytest.fail("the clip ended before the script")
    finally:
        src.close()
    assert rec.state == "done" and rec.status().fraction == 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["enroll.mp4", "enroll.prompts.json", "perform.mp4"]
    expected = {"enroll": 50, "perform": 30}                                               # 2 s, 1.2 s at 25 fps
    assert rec.frames == expected
    # the enrollment's prompt timeline: each frame under the prompt shown when it was recorded
    steps = json.loads((tmp_path / "enroll.prompts.json").read_text())["steps"]
    assert [s["key"] for s in steps] == list(dict.fromkeys(p.key for p in rec.script if p.clip == "enroll"))
    assert steps[0]["start"] == 0 and steps[-1]["stop"] == 50
    assert prompts.keys_of(prompts.recorded(rec.paths["enroll"], 50)).tolist() == [
        s["key"] for s in steps for _ in range(s["start"], s["stop"])]
    for clip, first in (("enroll", 10), ("perform", 10 + 50 + 10)):                        # after each 0.4 s pause
        info = video.probe(rec.paths[clip])
        assert info.fps == pytest.approx(25.0) and (info.width, info.height) == (640, 480)
        frames = decoded(rec.paths[clip])
        assert len(frames) == expected[clip]
        got = cv2.cvtColor(frames[0], cv2.COLOR_BGR2RGB).astype(float)
        assert np.abs(got - originals[first]).mean() < 4       # the right frame (H.264 at crf 18 is near exact)
        assert np.abs(got - originals[first + 5]).mean() > np.abs(got - originals[first]).mean()


def test_guided_recording_follows_the_clock_and_aborts_cleanly(tmp_path):
    rec = GuidedRecording(tmp_path, 30.0, enroll_seconds=3.0, perform_seconds=1.0, get_ready=1.0)
    image = np.zeros((48, 64, 3), np.uint8)
    assert rec.status().state == "waiting"
    rec.feed(image, t=100.0)
    rec.feed(image, t=100.5)                       # a camera's timestamps drive the prompts, not the frame count
    assert rec.status().prompt.key == "ready" and rec.frames["enroll"] == 0
    rec.feed(image, t=101.1)
    s = rec.status()
    assert s.prompt.key == "neutral" and s.state == "recording" and rec.frames["enroll"] == 1
    total = sum(step.share for step in prompts.ENROLL)        # the neutral prompt's share of the 3 s
    assert s.prompt_left == pytest.approx(3.0 * 3 / total - 0.1)
    with pytest.raises(Exception, match="changed frame size"):
        rec.feed(np.zeros((40, 64, 3), np.uint8), t=101.2)
    rec.abort()
    assert list(tmp_path.iterdir()) == [] and rec.state == "aborted"
    assert not rec.feed(image, t=101.3)


def test_a_short_clip_is_refused_and_leaves_nothing(tmp_path):
    rec = GuidedRecording(tmp_path, 10.0, enroll_seconds=1.0, perform_seconds=1.0, get_ready=0)
    for i in range(12):                            # 10 enrollment frames, 2 of the new environment
        rec.feed(np.full((32, 32, 3), i, np.uint8))
    with pytest.raises(Exception, match="new-environment clip"):
        rec.finish()
    assert list(tmp_path.iterdir()) == []


class FakeCamera:
    """app.sources.CameraSource's interface: 30 fps frames with their own timestamps, no device."""

    paced, fps = True, 30.0

    def __init__(self, index, stop_after=None, stop=None):
        self.name, self.count, self.stop_after, self.stop = f"camera:{index}", 0, stop_after, stop

    def open(self):
        pass

    def read(self):
        from app.sources import Frame

        self.count += 1
        if self.stop_after is not None and self.count > self.stop_after:
            self.stop.requested = "SIGINT"                  # as the signal handler would
        return Frame(np.full((48, 64, 3), self.count % 255, np.uint8), 1000.0 + self.count / 30.0, self.count)

    def close(self):
        pass


def test_camera_recording_shows_each_prompt_and_a_stop_keeps_nothing(tmp_path, monkeypatch, capsys):
    import app.sources

    monkeypatch.setattr(app.sources, "CameraSource", FakeCamera)
    stop = StopSignals()
    stop.requested = None
    clips = mm.record("camera:0", tmp_path / "a", 3.0, 1.0, stop, get_ready=0.5)
    lines = capsys.readouterr().err.splitlines()                     # off a terminal: one line per prompt
    assert [ln.rsplit("  ", 1)[0].strip() for ln in lines] == [p.text for p in full_script(3.0, 1.0, 0.5)]
    assert [len(decoded(clips[c])) for c in CLIPS] == [90, 30]

    monkeypatch.setattr(app.sources, "CameraSource", lambda index: FakeCamera(index, stop_after=40, stop=stop))
    assert mm.record("camera:0", tmp_path / "b", 3.0, 1.0, stop, get_ready=0.5) == {}
    assert list((tmp_path / "b").iterdir()) == []


def test_pipeline_tap_records_every_captured_frame_even_when_tracking_drops_them(tmp_path):
    from app.demo_tracker import DemoTracker
    from app.pipeline import Pipeline
    from app.sources import FileSource

    pipeline = Pipeline(tracker=DemoTracker(delay_s=0.12))       # ~8 fps tracking of a 25 fps file
    try:
        pipeline.set_source(FileSource(CLIP))
        deadline = time.monotonic() + 10
        while pipeline.capture.frames == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        recorder = TapRecorder(GuidedRecording(tmp_path, pipeline.source.fps, 0.8, 0.6, get_ready=0),
                               use_time=False)
        pipeline.add_tap(recorder)
        deadline = time.monotonic() + 20
        while not recorder.finished and time.monotonic() < deadline:
            time.sleep(0.05)
        pipeline.remove_tap(recorder)
        assert pipeline.capture.taps == ()
        assert recorder.error is None and recorder.dropped == 0
        assert recorder.recording.frames == {"enroll": 20, "perform": 15}
        assert pipeline.dropped > 0                               # the tracker saw fewer frames than the clips hold
        assert len(decoded(tmp_path / "enroll.mp4")) == 20 and len(decoded(tmp_path / "perform.mp4")) == 15
    finally:
        pipeline.stop()


def test_progress_lines_only_when_asked(monkeypatch, capsys):
    monkeypatch.delenv(progress.ENV, raising=False)
    progress.report("train-dam", 1, 10)
    assert capsys.readouterr().err == ""
    monkeypatch.setenv(progress.ENV, "1")
    for step in range(1, 11):
        progress.report("train-x", step, 10)           # throttled: the first and the last get through
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "##progress 1/10 train-x" and lines[-1] == "##progress 10/10 train-x" and len(lines) <= 3
    assert progress.parse(lines[0]) == ("train-x", 1, 10) and progress.parse("[1/5] enroll …") is None


# ----------------------------------------------------------------------------------------------- BuildProcess
FAKE_BUILD = r'''
import os, shutil, signal, subprocess, sys, time
mode, out, work, delay = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
say = lambda line: print(line, file=sys.stderr, flush=True)
os.makedirs(work, exist_ok=True)
open(os.path.join(work, "crops.npy"), "wb").write(b"x")
os.makedirs(out, exist_ok=True)
open(os.path.join(out, "tracker.onnx"), "wb").write(b"half")
assert os.environ.get("FACETRACK_PROGRESS") == "1"
if mode == "fail":
    say("[1/5] enroll …")
    say("error: enroll.mp4: no face found in any of 50 frames")
    sys.exit(2)
if mode in ("hang", "stubborn"):
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)        # inherited by the grandchild too
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    say(f"grandchild {child.pid}")
    say("[1/5] enroll …")
    say("##progress 3/10 enroll")
    time.sleep(300)
parts = {"train-i2z": ["train-i2z: pool", "train-i2z"], "adapt": ["adapt: teacher", "adapt"]}
for k, stage in enumerate(["enroll", "train-dam", "train-i2z", "adapt", "export"], 1):
    say(f"[{k}/5] {stage} …")
    for name in parts.get(stage, [stage]):
        for d in range(1, 5):
            say(f"##progress {d}/4 {name}")
            time.sleep(delay)
    say(f"[{k}/5] {stage} done in 0.1 s (fine); total 1 s")
if mode == "sample":
    shutil.rmtree(out)
    shutil.copytree(sys.argv[5], out, ignore=shutil.ignore_patterns("trt"))
else:
    open(os.path.join(out, "manifest.json"), "w").write("{}")
print("built")
'''


@pytest.fixture
def fake(tmp_path):
    script = tmp_path / "fake_build.py"
    script.write_text(FAKE_BUILD)

    def command(mode: str, out: Path, work: Path, delay: float = 0.01) -> list[str]:
        return [sys.executable, str(script), mode, str(out), str(work), str(delay), str(SAMPLE)]

    return command


def test_build_progress_is_parsed_to_a_weighted_fraction(tmp_path, fake):
    out, work = tmp_path / "pkg", tmp_path / "pkg.work"
    build = BuildProcess("e.mp4", "p.mp4", out, command=fake("ok", out, work, 0.05)).start()
    seen = []
    while build.wait(0.02) == "running":
        seen.append((build.fraction, build.stage, build.detail))
    assert build.state == "done" and build.error is None and build.fraction == 1.0
    fractions = [f for f, *_ in seen]
    assert fractions == sorted(fractions) and len({f for f in fractions if 0 < f < 1}) > 5
    stages = {s for _, s, _ in seen}
    assert "3/5 training your tracker" in stages and "1/5 reading your face" in stages
    assert any(d.startswith("step ") for *_, d in seen)
    assert (out / "manifest.json").is_file() and work.is_dir()         # the caller decides about the work folder


def test_build_fraction_uses_stage_weights():
    build = BuildProcess("e", "p", "/nonexistent/pkg")
    for line in ("[1/5] enroll …", "[1/5] enroll done in 3 s (x); total 3 s", "[2/5] train-dam done in 3 s (x)",
                 "[3/5] train-i2z …", "##progress 1000/2000 train-i2z", "##progress 10/18 train-i2z: pool"):
        build._parse(line)
    w = STAGE_WEIGHTS
    within = 0.06 + (0.97 - 0.06) * 0.5                    # a late pool line does not move it back
    assert build.fraction == pytest.approx((w["enroll"] + w["train-dam"] + w["train-i2z"] * within) / sum(w.values()))
    assert build.detail == "preparing views 10/18"
    clock = [0.0]
    build._clock, build._started, build.state = (lambda: clock[0]), 0.0, "running"
    clock[0] = 120.0
    assert build.eta_s == pytest.approx(120.0 * (1 - build.fraction) / build.fraction)
    assert describe_eta(None).startswith("estimating") and describe_eta(400) == "about 7 min left"


def test_failing_build_surfaces_its_error_line_and_removes_the_half_package(tmp_path, fake):
    out, work = tmp_path / "pkg", tmp_path / "pkg.work"
    build = BuildProcess("e.mp4", "p.mp4", out, command=fake("fail", out, work)).start()
    assert build.wait(30) == "failed"
    assert build.error == "enroll.mp4: no face found in any of 50 frames"
    assert not out.exists() and not work.exists()


@pytest.mark.parametrize("mode", ["hang", "stubborn"])
def test_cancel_stops_the_process_group_and_removes_only_what_it_created(tmp_path, fake, mode):
    out, work = tmp_path / "pkg", tmp_path / "mine"
    work.mkdir()
    (work / "precious.txt").write_text("not the build's")         # a work folder that held files: left alone
    build = BuildProcess("e.mp4", "p.mp4", out, command=fake(mode, out, work)).start()
    deadline = time.monotonic() + 30
    while build.fraction == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    grandchild = int(next(ln.split()[1] for ln in build.lines if ln.startswith("grandchild")))
    pgid = build._proc.pid
    assert build.stage == "1/5 reading your face" and build.fraction > 0
    t0 = time.monotonic()
    build.cancel(grace_s=0.5 if mode == "stubborn" else 10.0)
    assert build.state == "cancelled" and time.monotonic() - t0 < 8
    assert not group_alive(pgid)                                    # nobody of the group is left
    assert not alive(grandchild)
    assert not out.exists() and (work / "precious.txt").is_file()


# ----------------------------------------------------------------------------------------------- the CLI
def facetrack(*argv, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "engine.cli", *map(str, argv)], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=kw.get("timeout", 120))


def test_cli_refuses_bad_outputs_and_short_files_before_building(tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    r = facetrack("make-model", "--out", full, "--source", CLIP)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [f"error: {full}: already holds files; choose a new "
                                                                  "package folder"]
    (tmp_path / "f").write_text("x")
    r = facetrack("make-model", "--out", tmp_path / "p", "--keep-clips", tmp_path / "f", "--source", CLIP)
    assert r.returncode == 2 and "--keep-clips must be a folder" in r.stderr
    r = facetrack("make-model", "--out", tmp_path / "p", "--source", CLIP, "--seconds", 10)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith(f"error: {CLIP}: 6.0 s long, too short")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f", "full"]        # no package, no PACKAGE.work


def test_cli_sigterm_during_the_build_cancels_it_and_keeps_nothing(tmp_path):
    out = tmp_path / "pkg"
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "make-model", "--out", str(out), "--source",
                             str(CLIP), "--seconds", "1", "--perform-seconds", "1", "--max-frames", "10"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    build = tmp_path / "pkg.work" / "build"
    deadline = time.monotonic() + 90
    while not build.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)                              # the build's own process creates its work folder
    assert build.exists(), proc.stderr.read() if proc.poll() is not None else "no build started"
    children = [int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err.strip().splitlines()[-1] == "error: make-model: interrupted", err
    assert children and not any(group_alive(c) for c in children)     # the build led its own group
    assert list(tmp_path.iterdir()) == []


def test_cli_make_model_end_to_end_builds_a_package_the_runtime_opens(tmp_path):
    """The real build, made tiny (hidden --steps-scale, --max-frames): ~1–1.5 min on 2 shared cores."""
    from export.runtime import open_tracker

    out, clips = tmp_path / "performers" / "me", tmp_path / "clips"
    r = facetrack("make-model", "--out", out, "--source", CLIP, "--seconds", 2, "--perform-seconds", 2,
                  "--keep-clips", clips, "--steps-scale", 0.02, "--max-frames", 20, timeout=400)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"made {out} in ") and "facetrack studio --package" in r.stdout
    assert "[100%]" not in r.stderr and "5/5 packaging your model" in r.stderr       # one line per stage off a tty
    assert not (tmp_path / "performers" / "me.work").exists()
    assert [len(decoded(clips / f"{c}.mp4")) for c in CLIPS] == [50, 50]
    report = json.loads((out / "build_report.json").read_text())
    assert report["stages"]["enroll"]["frames_total"] == 20
    tracker = open_tracker(out, "cpu")
    assert tracker.package.path == out


# ----------------------------------------------------------------------------------------------- the dialog
@pytest.fixture
def studio(qtbot, tmp_path, monkeypatch):
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    pytest.importorskip("PySide6.QtWidgets")
    pytest.importorskip("pytestqt")
    from app.main_window import MainWindow
    from app.sources import FileSource

    monkeypatch.setenv("FACETRACK_DATA", str(tmp_path / "data"))
    # no tracker: TrackWorker.set_tracker waits on a lock the track thread re-takes frame after frame while it
    # is behind the source, so the switch to the new package could wait minutes on a loaded CPU (app.tracking)
    w = MainWindow(tracker=None)
    qtbot.addWidget(w)
    w.resize(900, 600)
    w.show()
    w.set_source(FileSource(CLIP))
    qtbot.waitUntil(lambda: w.pipeline.capture.frames > 0, timeout=10000)
    yield w
    w.pipeline.stop()


def make_dialog(qtbot, window, fake, mode="sample", delay=0.02):
    from app.onboarding import MakeModelDialog

    dlg = MakeModelDialog(window, enroll_seconds=0.8, perform_seconds=0.6, get_ready=0.2,
                          build_command=lambda e, p, out, work: fake(mode, out, work, delay))
    dlg.show()
    qtbot.waitExposed(dlg)
    return dlg


def test_dialog_records_builds_and_switches_to_the_new_package(qtbot, studio, fake, tmp_path):
    from app import settings

    dlg = make_dialog(qtbot, studio, fake)
    out = tmp_path / "data" / "performers" / dlg.name_edit.text()
    assert dlg.folder_label.text() == str(out)                                 # not under ~: shown whole
    assert "video FILE, not a camera" in dlg.source_label.text()
    qtbot.mouseClick(dlg.start_button, qtbot_button())
    assert dlg.state == "recording" and not dlg.start_button.isEnabled() and dlg.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: dlg.recorder.status().state == "recording", timeout=10000)
    qtbot.waitUntil(lambda: dlg.countdown_label.text() != "", timeout=5000)
    assert dlg.prompt_label.text() in [p.text for p in dlg.recorder.recording.script]
    qtbot.waitUntil(lambda: dlg.state != "recording", timeout=20000)
    assert dlg.recorder.recording.frames == {"enroll": 20, "perform": 15}    # every frame of a 25 fps file
    assert dlg.state in ("building", "done")
    qtbot.waitUntil(lambda: dlg.state == "done", timeout=30000)
    assert dlg.build_bar.value() == 100 and "ready" in dlg.message_label.text()
    assert settings.last_package() == out
    assert not (out.parent / f"{out.name}.work").exists() and (out / "manifest.json").is_file()
    qtbot.waitUntil(lambda: studio.pipeline.tracker is not None and
                    getattr(studio.pipeline.tracker, "package", None) is not None, timeout=30000)
    assert studio.pipeline.tracker.package.path == out
    dlg.close()


def test_dialog_cancel_during_the_build_and_close_mid_recording(qtbot, studio, fake, tmp_path):
    dlg = make_dialog(qtbot, studio, fake, mode="hang")
    out = tmp_path / "data" / "performers" / dlg.name_edit.text()
    dlg.start()
    # the label follows the build on the dialog's next UI tick, not at once
    qtbot.waitUntil(lambda: dlg.state == "building" and dlg.stage_label.text().startswith("1/5 reading your face"),
                    timeout=30000)
    assert dlg.build.fraction > 0
    pgid = dlg.build._proc.pid
    qtbot.mouseClick(dlg.cancel_button, qtbot_button())
    qtbot.waitUntil(lambda: dlg.state == "cancelled", timeout=20000)
    assert not group_alive(pgid)
    assert not out.exists() and not (out.parent / f"{out.name}.work").exists()
    assert "nothing was kept" in dlg.message_label.text() and dlg.start_button.text() == "Start again"

    dlg.start()                                       # again, then close the window mid-recording
    assert dlg.state == "recording"
    dlg.confirm = lambda question: False
    dlg.close()
    assert dlg.isVisible() and dlg.state == "recording"          # "no" keeps it going
    dlg.confirm = lambda question: True
    dlg.close()
    assert not dlg.isVisible() and studio.pipeline.capture.taps == ()
    assert not out.exists() and not (out.parent / f"{out.name}.work").exists()


def test_dialog_closing_mid_build_leaves_no_process(qtbot, studio, fake):
    dlg = make_dialog(qtbot, studio, fake, mode="stubborn")
    dlg.start()
    qtbot.waitUntil(lambda: dlg.state == "building" and dlg.build.fraction > 0, timeout=30000)
    build = dlg.build
    grandchild = int(next(ln.split()[1] for ln in build.lines if ln.startswith("grandchild")))
    dlg.confirm = lambda question: True
    dlg.close()
    assert build.state == "cancelled" and not alive(grandchild)


def test_dialog_shows_a_failed_build_line(qtbot, studio, fake):
    dlg = make_dialog(qtbot, studio, fake, mode="fail")
    dlg.start()
    qtbot.waitUntil(lambda: dlg.state == "failed", timeout=30000)
    assert dlg.message_label.text() == "build: enroll.mp4: no face found in any of 50 frames"
    assert "failed" in studio.message_label.text()
    dlg.close()


def qtbot_button():
    from PySide6.QtCore import Qt

    return Qt.MouseButton.LeftButton
