"""Live-app building blocks: ARKit expressions from G, VMC streaming, session recording (all torch-free)."""
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine import expressions as synth
from export.expressions import ARKIT_NAMES, ExpressionEstimator
from tests import recorder_child

ROOT = Path(__file__).resolve().parents[1]


def _synth(**activations) -> np.ndarray:
    a = np.zeros(len(synth.NAMES), np.float32)
    for name, value in activations.items():
        a[synth.NAMES.index(name)] = value
    return synth.apply(a)


# ---------------------------------------------------------------- expressions
@pytest.fixture(scope="module")
def estimator():
    return ExpressionEstimator()


def test_arkit_names():
    assert len(ARKIT_NAMES) == 52 == len(set(ARKIT_NAMES))
    assert ARKIT_NAMES[:2] == ("eyeBlinkLeft", "eyeLookDownLeft") and ARKIT_NAMES[-1] == "tongueOut"
    assert ARKIT_NAMES.index("jawOpen") == 17 and ARKIT_NAMES.index("browDownLeft") == 41


def test_neutral_reads_zero(estimator):
    values = estimator(_synth())
    assert list(values) == list(ARKIT_NAMES)
    assert max(values.values()) < 0.05


def test_blink_is_one_sided(estimator):
    v = estimator(_synth(blink_left=1))
    assert v["eyeBlinkLeft"] > 0.8 and v["eyeBlinkRight"] < 0.1
    v = estimator(_synth(blink_right=1))
    assert v["eyeBlinkRight"] > 0.8 and v["eyeBlinkLeft"] < 0.1


def test_jaw_smile_brows_pucker(estimator):
    v = estimator(_synth(jaw_open=1))
    assert v["jawOpen"] > 0.6 and v["mouthClose"] < 0.1
    v = estimator(_synth(smile_left=1))
    assert v["mouthSmileLeft"] > 0.6 and v["mouthSmileRight"] < 0.05
    v = estimator(_synth(brow_raise=1))
    assert v["browInnerUp"] > 0.5 and v["browDownLeft"] == v["browDownRight"] == 0
    v = estimator(_synth(brow_frown=1))
    assert v["browDownLeft"] > 0.6 and v["browDownRight"] > 0.6 and v["browInnerUp"] == 0
    v = estimator(_synth(pucker=1))
    assert v["mouthPucker"] > 0.6 and v["mouthFunnel"] < 0.1 and v["jawOpen"] < 0.05


def test_values_grow_with_activation(estimator):
    readings = [estimator(_synth(jaw_open=a))["jawOpen"] for a in (0.25, 0.5, 0.75, 1.0)]
    assert all(b > a for a, b in zip(readings, readings[1:]))


def test_uniform_scale_and_translation_invariance(estimator):
    G = _synth(smile_right=0.7, blink_left=0.5, jaw_open=0.4)
    a, b = estimator(G), estimator(2.5 * G + np.array([3.0, -1.0, 7.0], np.float32))
    assert max(abs(a[k] - b[k]) for k in a) < 1e-5


def test_calibration_makes_a_resting_face_neutral():
    resting = _synth(smile_left=0.4, smile_right=0.4)  # a performer whose face rests half-smiling
    est = ExpressionEstimator()
    assert est(resting)["mouthSmileLeft"] > 0.1
    est.calibrate(resting)
    assert max(est(resting).values()) < 0.05
    assert ExpressionEstimator(neutral_G=resting)(resting)["mouthSmileLeft"] < 0.05


# ---------------------------------------------------------------- VMC
from app.vmc import VMCSender, head_rotation_unity, quaternion  # noqa: E402
from engine.pose import rotation_matrix  # noqa: E402


def _pose(rx=0.0, ry=0.0, rz=0.0, f=10.0, tx=128.0, ty=128.0):
    return np.array([f, math.radians(rx), math.radians(ry), math.radians(rz), tx, ty])


def test_unity_rotation_of_single_axes():
    s, c = math.sin(math.radians(15)), math.cos(math.radians(15))
    # Unity's Quaternion.Euler(0, 30, 0): nose turns to the avatar's right, as the subject's yaw +30° does.
    assert np.allclose(head_rotation_unity(_pose(ry=30)), (0, s, 0, c))
    assert np.allclose(head_rotation_unity(_pose(rx=30)), (s, 0, 0, c))   # looks down
    assert np.allclose(head_rotation_unity(_pose(rz=30)), (0, 0, s, c))


def test_quaternion_round_trip():
    rng = np.random.default_rng(0)
    for angles in rng.uniform(-3.0, 3.0, (50, 3)):
        R = rotation_matrix(angles)
        x, y, z, w = quaternion(R)
        assert abs(x * x + y * y + z * z + w * w - 1) < 1e-9
        Q = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                      [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                      [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
        assert np.allclose(Q, R, atol=1e-9)


def test_head_position_from_neutral():
    sender = VMCSender()
    sender.calibrate(_pose())
    assert sender.position(_pose()) == (0.0, 0.0, 0.0)
    # 2 cm towards the subject's left (image right, +x) and 1 cm down → avatar's left (−x) and down (−y).
    assert np.allclose(sender.position(_pose(tx=128 + 20, ty=128 + 10)), (-0.02, -0.01, 0.0))
    # Half the scale: twice as far, 0.6 m further back → Unity −z.
    assert np.allclose(sender.position(_pose(f=5.0)), (0.0, 0.0, -0.6))


@pytest.mark.parametrize("host,port", [("no-such-host.invalid", 39539), ("127.0.0.1", 0)])
def test_vmc_never_raises_on_network_errors(caplog, host, port):
    sender = VMCSender(host, port)
    assert sender.send(_pose(), {"jawOpen": 0.5}) is False
    sender._retry_at = 0.0  # retry at once
    assert sender.send(_pose(), {"jawOpen": 0.5}) is False
    assert sum("VMC" in r.message for r in caplog.records) == 1  # logged once


# ---------------------------------------------------------------- recording
from app.recording import (LLF_COLUMNS, SessionRecorder, export_csv, export_obj_sequence,  # noqa: E402
                           load_session, timecode)

FPS, SIZE = 30.0, (64, 48)


def _frame(i: int) -> np.ndarray:
    img = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
    img[:, : (i % SIZE[0]) + 1] = (200, 100, 50)
    return img


def _data(i: int):
    rng = np.random.default_rng(i)
    z = rng.standard_normal(128).astype(np.float32)
    H = np.array([10.0 + i * 0.01, 0.01 * i, -0.02 * i, 0.005, 120.0 + i, 130.0])
    e = dict.fromkeys(ARKIT_NAMES, 0.0) | {"jawOpen": float(rng.uniform()), "eyeBlinkLeft": 0.1 * (i % 10)}
    return z, H, e, _synth(jaw_open=(i % 10) / 10)


def _record(folder, n, close=True, clock=None):
    rec = SessionRecorder(folder, FPS, SIZE, **({"clock": clock} if clock else {}))
    for i in range(n):
        z, H, e, G = _data(i)
        rec.write(_frame(i), 1000.0 + i / FPS, z, H, e, G)
    if close:
        rec.close()
    return rec


def test_round_trip_after_close(tmp_path):
    _record(tmp_path, 40)
    s = load_session(tmp_path)
    assert len(s) == 40 and s.manifest["closed"] and s.manifest["frames"] == 40
    for i in range(40):
        z, H, e, G = _data(i)
        assert np.array_equal(s.z[i], z) and np.array_equal(s.H[i], H) and s.expressions(i) == e
        assert np.array_equal(s.G[i], G)
    assert np.allclose(s.t, 1000.0 + np.arange(40) / FPS)
    cap = cv2.VideoCapture(str(tmp_path / "video.mp4"))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 40


def test_no_face_frames_are_recorded_flagged_and_replay_as_none(tmp_path):
    """A frame with no face is a line of its own: the lines stay in step with the video, the reader flags it
    (z, H NaN) and the replay gives no face for it instead of the previous one."""
    from app.replay import SessionSource

    rec = SessionRecorder(tmp_path, FPS, SIZE)
    for i in range(4):
        if i == 2:
            rec.write(_frame(i), 1000.0 + i / FPS)
        else:
            z, H, e, G = _data(i)
            rec.write(_frame(i), 1000.0 + i / FPS, z, H, e, G)
    rec.close()
    s = load_session(tmp_path)
    assert len(s) == 4 and s.found.tolist() == [True, True, False, True]
    assert np.isnan(s.H[2]).all() and np.isnan(s.z[2]).all() and np.isnan(s.G[2]).all()
    assert np.array_equal(s.H[3], _data(3)[1]) and np.array_equal(s.G[3], _data(3)[3])
    replay = SessionSource(tmp_path)
    replay.open()
    assert replay.result(2) is None and replay.result(3) is not None


def test_unclosed_session_loses_at_most_a_second(tmp_path):
    # Mocked clock at 30 fps: 40 frames = 1.33 s, never closed; what is on disk is what a kill would leave.
    t = iter(np.arange(1000) / FPS)
    rec = _record(tmp_path, 40, close=False, clock=lambda: next(t))
    s = load_session(tmp_path)
    assert len(s) >= 40 - FPS and not s.manifest["closed"]
    # A truncated last line (the one being written at the kill) is skipped.
    with open(tmp_path / "frames.jsonl", "a") as f:
        f.write('{"i": 40, "z": [0.1, 0.')
    assert len(load_session(tmp_path)) == len(s)
    del rec


KILL_CHILD = """
import sys, time, numpy as np
sys.path.insert(0, {root!r})
from app.recording import SessionRecorder
rec = SessionRecorder({folder!r}, 30.0, (64, 48))
frame = np.zeros((48, 64, 3), np.uint8)
for i in range(1000):
    rec.write(frame + i % 255, time.monotonic(), np.full(128, i, np.float32), np.arange(6.0), {{"jawOpen": 0.5}})
    print(i + 1, flush=True)
    time.sleep(1 / 30)
"""


def test_killed_recorder_loses_at_most_a_second(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", KILL_CHILD.format(root=str(ROOT), folder=str(tmp_path))],
                             stdout=subprocess.PIPE, text=True)
    written = 0
    try:
        for line in child.stdout:  # ~1.2 s of frames at 30 fps
            written = int(line)
            if written >= 36:
                break
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    s = load_session(tmp_path)
    assert written - FPS <= len(s) <= written + 1
    assert np.array_equal(s.z[:, 0], np.arange(len(s), dtype=np.float32))
    # The fragmented MP4 stays decodable without its recorder (ffmpeg finishes on the closed pipe).
    deadline, n = time.time() + 10, 0
    while time.time() < deadline:
        cap, n = cv2.VideoCapture(str(tmp_path / "video.mp4")), 0
        while cap.read()[0]:
            n += 1
        if n >= written - FPS:
            break
        time.sleep(0.2)
    assert n >= written - FPS


def test_killed_recorder_and_encoder_lose_at_most_a_second(tmp_path):
    """kill -9 of the recorder *and* its ffmpeg (a crash of the whole app): what ffmpeg held is lost, which the
    zero-latency encoder and 0.25 s fragments keep well under a second (before: 1.2-1.6 s at 640x480)."""
    child = recorder_child.start(tmp_path, (320, 240), 16)
    try:
        written = recorder_child.wait_written(child, 60)          # ~2 s of frames at 30 fps
    finally:
        kids = _children(child.pid)
        for pid in (child.pid, *kids):
            os.kill(pid, signal.SIGKILL)
        child.wait()
    assert kids, "the recorder's ffmpeg was not found"
    s = load_session(tmp_path)
    assert written - 1 <= len(s) <= written + 1          # every written line is on disk
    cap, n = cv2.VideoCapture(str(tmp_path / "video.mp4")), 0
    while cap.read()[0]:
        n += 1
    assert 0 <= len(s) - n <= FPS, (len(s), n)


def _children(pid: int) -> list[int]:
    """Direct children of a process (Linux /proc)."""
    kids = []
    for d in filter(str.isdigit, os.listdir("/proc")):
        try:
            if int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(d))
        except (OSError, ValueError, IndexError):
            pass
    return kids


def test_a_failed_encoder_still_closes_the_session(tmp_path):
    """The encoder dying (disk full) ends the recording with an OSError naming the video, and the session is
    still closed on disk: every line kept, `closed: true`."""
    import json

    rec = _record(tmp_path, 5, close=False)
    rec._video._process.kill()
    rec._video._process.wait()
    with pytest.raises(OSError, match="video.mp4"):
        for i in range(5, 400):                      # the dead pipe shows within a few frames
            z, H, e, G = _data(i)
            rec.write(_frame(i), 1000.0 + i / FPS, z, H, e, G)
    with pytest.raises(OSError):
        rec.close()
    manifest = json.loads((tmp_path / "session.json").read_text())
    assert manifest["closed"] and manifest["frames"] == len(load_session(tmp_path)) >= 5


@pytest.mark.parametrize("change,words", [
    (lambda m, lines: m.update(fps=0), "fps must be"),
    (lambda m, lines: lines.__setitem__(1, "[1, 2]"), "line 2: not a JSON object"),
    (lambda m, lines: lines.__setitem__(1, lines[1].replace('"g": 1', '"g": 99')), "refers to row 99"),
])
def test_load_session_trusts_nothing(tmp_path, change, words):
    import json

    from app.recording import SessionError

    _record(tmp_path, 3)
    m = json.loads((tmp_path / "session.json").read_text())
    lines = (tmp_path / "frames.jsonl").read_text().splitlines()
    change(m, lines)
    (tmp_path / "session.json").write_text(json.dumps(m))
    (tmp_path / "frames.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(SessionError, match=words) as err:
        load_session(tmp_path)
    assert str(tmp_path) in str(err.value)


def test_session_folders_are_created_once(tmp_path):
    from datetime import datetime

    from app.outputs import session_folder

    def same():
        return datetime(2030, 1, 1, 12, 0, 0)

    a, b, c = (session_folder(tmp_path / "rec", clock=same) for _ in range(3))
    assert [p.name for p in (a, b, c)] == ["session-20300101-120000", "session-20300101-120000-2",
                                           "session-20300101-120000-3"]
    assert all(p.is_dir() for p in (a, b, c))


def test_live_link_face_csv(tmp_path):
    _record(tmp_path / "s", 12)
    s = load_session(tmp_path / "s")
    export_csv(s, tmp_path / "take.csv")
    lines = (tmp_path / "take.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert header[:4] == ["Timecode", "BlendShapeCount", "EyeBlinkLeft", "EyeLookDownLeft"]
    assert header[-9:-6] == ["HeadYaw", "HeadPitch", "HeadRoll"] and len(header) == 2 + 61
    assert "MouthSmileLeft" in header and "BrowInnerUp" in header and "TongueOut" in header
    assert len(lines) == 13
    for i, line in enumerate(lines[1:]):
        cells = line.split(",")
        assert len(cells) == len(header) and cells[1] == "61"
        hh, mm, ss, rest = cells[0].split(":")
        ff, ms = rest.split(".")
        assert len(hh) == len(mm) == len(ss) == len(ff) == 2 and len(ms) == 3 and int(ff) < 30
        assert float(cells[header.index("JawOpen")]) == pytest.approx(s.E[i, s.names.index("jawOpen")], abs=1e-5)
        assert float(cells[header.index("HeadYaw")]) == pytest.approx(-s.H[i, 2], abs=1e-5)
    assert LLF_COLUMNS[0] == "EyeBlinkLeft"


def test_timecode_format():
    assert timecode(3600 + 62.5, 30) == "01:01:02:15.000"
    assert timecode(59.999, 30) == "00:00:59:29.970"


def test_obj_sequence(tmp_path):
    from engine.topology import topology

    topo = topology()
    _record(tmp_path / "s", 3)
    paths = export_obj_sequence(load_session(tmp_path / "s"), tmp_path / "obj", topo.triangles, topo.uv)
    assert [p.name for p in paths] == ["frame_000000.obj", "frame_000001.obj", "frame_000002.obj"]
    for i, p in enumerate(paths):
        rows = [line.split() for line in p.read_text().splitlines() if line and not line.startswith("#")]
        v = np.array([r[1:] for r in rows if r[0] == "v"], float)
        vt = [r for r in rows if r[0] == "vt"]
        f = np.array([[int(c.split("/")[0]) for c in r[1:]] for r in rows if r[0] == "f"])
        assert v.shape == (468, 3) and len(vt) == 468 and f.shape == (len(topo.triangles), 3)
        assert f.min() == 1 and f.max() <= 468
        G = _data(i)[3]
        assert np.allclose(v, G * np.array([1, -1, -1]), atol=1e-4)
        # Outward normals face +z (the viewer) in the OBJ frame for the frontal face.
        a, b, c = v[f[:, 0] - 1], v[f[:, 1] - 1], v[f[:, 2] - 1]
        assert (np.cross(b - a, c - a)[:, 2] > 0).mean() > 0.9


def test_live_modules_do_not_import_torch():
    code = "import export.expressions, app.vmc, app.recording, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
