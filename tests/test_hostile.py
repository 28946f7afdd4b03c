"""Hostile-input corpus (issue #13): every subcommand fed what a hostile or unlucky user would feed it.

Each case runs the real CLI in a subprocess and asserts what the README promises: exit status 2 (0 where the input
is legal), exactly one stderr line and it starts with `error:` (native libraries' log noise is silenced by
engine.cli, not ignored here), no traceback anywhere, and earlier output (a report, a CSV, a clip, a session) left
intact. Together with tests/test_package_security.py (tampered packages) and tests/test_cli_errors.py (options),
this is the corpus counted in docs/RELIABILITY.md.

    xvfb-run -a .venv/bin/python -m pytest -q tests/test_hostile.py        (< 3 min on 2 cores)

The studio cases use the X display when there is one, else Qt's offscreen platform. "Disk full" is simulated
with RLIMIT_FSIZE (a write past the limit fails with EFBIG, as ENOSPC would, at any point of the run), so it needs
no root and no small file system; one case uses a real full tmpfs where this process may mount one.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests import recorder_child

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "export" / "sample_package"
CLIP = PKG / "synthetic.mp4"
LONG = "n" * 300
EARLIER = "EARLIER OUTPUT: must survive\n"
STAGE_LINES = ("[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]")   # build's own progress lines on stderr


# ------------------------------------------------------------------------------------------------ helpers
def _env(extra: dict | None = None, display: bool = False) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("FACETRACK_NATIVE_LOGS", None)
    if not display:
        env.pop("DISPLAY", None)       # `demo` would open the studio; nothing here needs a window
        env.pop("WAYLAND_DISPLAY", None)
    env.update(extra or {})
    return env


def _limit_file_size(limit: int):
    """preexec: files larger than `limit` bytes cannot be written (EFBIG), as on a full disk."""
    def apply():
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def run_cli(*args, env: dict | None = None, display: bool = False, limit_bytes: int | None = None,
            timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli", *map(str, args)], cwd=ROOT, capture_output=True,
                          check=False, text=True, timeout=timeout, env=_env(env, display),
                          preexec_fn=_limit_file_size(limit_bytes) if limit_bytes else None)


def assert_one_error(result: subprocess.CompletedProcess, *words: str, allow: tuple = ()) -> str:
    """Exit 2, stderr is exactly one line, it starts with `error:` and holds `words`; no traceback."""
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith(allow or "\0")]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def assert_ok(result: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr
    assert result.returncode == 0, (result.returncode, result.stderr)
    assert not [line for line in result.stderr.splitlines() if line.startswith("error:")], result.stderr


def no_temp_files(folder: Path) -> bool:
    return not [p for p in Path(folder).iterdir() if ".tmp" in p.name or p.name.startswith(".facetrack-probe")]


def _ppid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def kill_with_children(proc: subprocess.Popen) -> int:
    """SIGKILL a process and its direct children (its ffmpeg encoders) at once; returns how many children."""
    kids = [int(d) for d in os.listdir("/proc") if d.isdigit() and _ppid(int(d)) == proc.pid]
    for pid in (proc.pid, *kids):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=30)
    return len(kids)


def video_frames(path: Path) -> int:
    cap, n = cv2.VideoCapture(str(path)), 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def wait_for_lines(folder_glob, root: Path, n: int, timeout: float = 90) -> Path:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for path in root.glob(folder_glob):
            try:
                if path.read_text().count("\n") >= n:
                    return path.parent
            except OSError:
                pass
        time.sleep(0.05)
    raise AssertionError(f"no {folder_glob} with {n} lines under {root} after {timeout} s")


# ------------------------------------------------------------------------------------------------ inputs
@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> dict:
    """Hostile inputs, made once: a clip with no face, corrupt and empty videos, frame folders of mixed sizes
    and with an undecodable image, a plain file where a folder is expected, junk run folders, junk npz files."""
    from engine.video import VideoWriter

    d = tmp_path_factory.mktemp("hostile")
    rng = np.random.default_rng(1)
    with VideoWriter(d / "wall.mp4", 25) as w:               # six frames of noise: no face anywhere
        for _ in range(6):
            w.write(rng.integers(100, 140, (120, 160, 3), dtype=np.uint8))
    shutil.copy(d / "wall.mp4", d / "guided.mp4")             # with a prompt timeline of another clip beside it
    (d / "guided.prompts.json").write_text(json.dumps(
        {"format": "facetrack-prompts", "version": 1, "frames": 7, "steps": [{"key": "neutral", "start": 0, "stop": 7}]}))
    (d / "corrupt.mp4").write_bytes(rng.integers(0, 255, 20000, dtype=np.uint8).tobytes())
    (d / "empty.mp4").write_bytes(b"")
    (d / "mixed").mkdir()
    cv2.imwrite(str(d / "mixed" / "a.png"), np.zeros((120, 160, 3), np.uint8))
    cv2.imwrite(str(d / "mixed" / "b.png"), np.zeros((100, 150, 3), np.uint8))
    (d / "badimg").mkdir()
    cv2.imwrite(str(d / "badimg" / "a.png"), np.zeros((120, 160, 3), np.uint8))
    (d / "badimg" / "b.png").write_text("not an image")
    (d / "noframes").mkdir()
    (d / "noframes" / "notes.txt").write_text("no images here")
    (d / "afile").write_text("a plain file")
    (d / "notpkg").mkdir()
    (d / "run_empty").mkdir()
    (d / "run_junk" / "enrollment").mkdir(parents=True)
    for name in ("G", "H", "textures", "weights", "crops", "landmarks"):
        (d / "run_junk" / "enrollment" / f"{name}.npy").write_text("junk")
    (d / "gt.txt").write_text("not an npz")
    np.savez(d / "gt_shapes.npz", G=np.zeros((3, 10, 3)), H=np.zeros((3, 6)))
    (d / "photo.txt").write_text("not a photo")
    return {k: d / k for k in ("wall.mp4", "guided.mp4", "corrupt.mp4", "empty.mp4", "mixed", "badimg", "noframes", "afile",
                               "notpkg", "run_empty", "run_junk", "gt.txt", "gt_shapes.npz", "photo.txt")} | {
        "dir": d}


@pytest.fixture
def readonly(tmp_path) -> Path:
    """A folder this process cannot write into: chmod 555 for a normal user; for root (which ignores modes)
    a path under /sys, where mkdir is refused."""
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        yield ro / "out"
        ro.chmod(0o755)
        return
    if not Path("/sys/kernel").is_dir():
        pytest.skip("no read-only location for root here")
    yield Path("/sys/facetrack-hostile-test/out")


def _path(spec: str, bad: dict, tmp: Path) -> str:
    """Placeholders in a case's arguments: @name → an input from `bad`, OUT/… → under the case's tmp folder."""
    if spec.startswith("@"):
        return str(bad[spec[1:]])
    if spec.startswith("OUT"):
        return str(tmp / spec)
    return {"PKG": str(PKG), "CLIP": str(CLIP), "LONG": str(tmp / LONG), "LONGJSON": str(tmp / (LONG + ".json")),
            "FILE": str(bad["afile"]), "UNDERFILE": str(bad["afile"] / "sub"),
            "UNDERFILEJSON": str(bad["afile"] / "x.json")}.get(spec, spec)


# ------------------------------------------------------------------------------------ errors before any work
# (command..., words expected in the one error line). Fast: each fails on an input or output check.
BEFORE_WORK = [
    # synth: output paths
    (("synth", "--out", "FILE"), "must be a folder"),
    (("synth", "--out", "UNDERFILE"), "Not a directory"),
    (("synth", "--out", "LONG"), "too long"),
    (("synth", "--out", "OUT/s", "--width", "63"), "--width"),
    (("synth", "--out", "OUT/s", "--domain", "moon"), "invalid choice"),
    (("synth", "--out", "OUT/s", "--seed", "-1"), "--seed"),
    # enroll / demo: output paths
    (("enroll", "@wall.mp4", "--out", "FILE"), "must be a folder"),
    (("enroll", "@wall.mp4", "--out", "OUT/r", "--max-frames", "0"), "--max-frames"),
    (("demo", "--out", "FILE", "--headless"), "must be a folder"),
    (("demo", "--out", "LONG", "--headless"), "too long"),
    (("demo", "--out", "OUT/d", "--max-frames", "0"), "--max-frames"),
    # track: package, source, output, stream, options
    (("track", "OUT/nopkg", "CLIP", "--out", "OUT/s"), "no such performer package"),
    (("track", "FILE", "CLIP", "--out", "OUT/s"), "performer package"),
    (("track", "@notpkg", "CLIP", "--out", "OUT/s"), "manifest.json"),
    (("track", "PKG", "OUT/nope.mp4", "--out", "OUT/s"), "no such file"),
    (("track", "PKG", "@corrupt.mp4", "--out", "OUT/s"), "cannot open"),
    (("track", "PKG", "@empty.mp4", "--out", "OUT/s"), "cannot open"),
    (("track", "PKG", "@noframes", "--out", "OUT/s"), "no image frames"),
    (("track", "PKG", "CLIP", "--out", "FILE"), "must be a folder"),
    (("track", "PKG", "CLIP", "--out", "LONG"), "too long"),
    (("track", "PKG", "camera:x", "--out", "OUT/s"), "camera:N"),
    (("track", "PKG", "camera:97", "--out", "OUT/s"), "cannot open camera 97"),   # OpenCV's own line silenced
    (("track", "PKG", "CLIP", "--out", "OUT/s", "--stream", "bogus"), "unknown stream protocol"),
    (("track", "PKG", "CLIP", "--out", "OUT/s", "--stream", "vmc:127.0.0.1:70000"), "70000"),
    (("track", "PKG", "CLIP", "--out", "OUT/s", "--backend", "gpu9000"), "invalid choice"),
    (("track", "PKG", "CLIP", "--out", "OUT/s", "--max-frames", "0"), "--max-frames"),
    # eval: model, video, output, ground truth, options
    (("eval", "OUT/nomodel", "CLIP", "--json", "OUT/e.json"), "no such model"),
    (("eval", "@notpkg", "CLIP", "--json", "OUT/e.json"), "neither a performer package"),
    (("eval", "PKG", "OUT/nope.mp4", "--json", "OUT/e.json"), "no such file"),
    (("eval", "PKG", "@corrupt.mp4", "--json", "OUT/e.json"), "cannot open"),
    (("eval", "PKG", "CLIP", "--json", "@dir"), "needs a file name"),
    (("eval", "PKG", "CLIP", "--json", "UNDERFILEJSON"), "is a file, not a folder"),
    (("eval", "PKG", "CLIP", "--json", "LONGJSON"), "too long"),
    (("eval", "PKG", "CLIP", "--json", "/dev/null"), "regular file"),
    (("eval", "PKG", "CLIP", "--json", "OUT/e.json", "--gt", "@gt.txt"), "not a ground-truth"),
    (("eval", "PKG", "CLIP", "--json", "OUT/e.json", "--gt", "@gt_shapes.npz"), "need G"),
    (("eval", "PKG", "CLIP", "--json", "OUT/e.json", "--gt", "OUT/nope.npz"), "no such ground-truth"),
    (("eval", "PKG", "CLIP", "--json", "OUT/e.json", "--start", "0.6", "--stop", "0.4"), "--start"),
    (("eval", "PKG", "CLIP", "--json", "OUT/e.json", "--max-frames", "2"), "--max-frames"),
    (("eval", "PKG", "CLIP", "--json", "OUT/e.json", "--baseline", "oracle"), "invalid choice"),
    # bench
    (("bench", "OUT/nopkg", "--json", "OUT/b.json"), "OUT/nopkg"),
    (("bench", "@notpkg", "--json", "OUT/b.json"), "manifest.json"),
    (("bench", "PKG", "--json", "@dir"), "needs a file name"),
    (("bench", "PKG", "--json", "UNDERFILEJSON"), "is a file, not a folder"),
    (("bench", "PKG", "--json", "/dev/null"), "regular file"),
    (("bench", "PKG", "--json", "OUT/b.json", "--source", "OUT/nope.mp4"), "no such file"),
    (("bench", "PKG", "--json", "OUT/b.json", "--frames", "1"), "--frames"),
    (("bench", "PKG", "--json", "OUT/b.json", "--precision", "fp4"), "invalid choice"),
    # build (its light parser; inputs are checked before its first stage)
    (("build", "OUT/nope.mp4", "CLIP", "--out", "OUT/p"), "no such file"),
    (("build", "CLIP", "CLIP", "--out", "FILE"), "must be a folder"),
    (("build", "CLIP", "CLIP", "--out", "OUT/p", "--work", "FILE"), "--work must be a folder"),
    (("build", "CLIP", "CLIP", "--out", "OUT/p", "--max-frames", "2"), "--max-frames"),
]


@pytest.mark.parametrize("args,words", BEFORE_WORK, ids=[" ".join(a[:1] + a[-2:]) for a, _ in BEFORE_WORK])
def test_rejected_before_any_work(bad, tmp_path, args, words):
    result = run_cli(*(_path(a, bad, tmp_path) for a in args))
    line = assert_one_error(result, words.replace("OUT/", str(tmp_path) + "/OUT/"))
    assert "[ WARN" not in result.stderr and "[ERROR" not in result.stderr, line
    assert not (tmp_path / "OUT").exists() or not any((tmp_path / "OUT").rglob("report.json"))


@pytest.mark.parametrize("command", [
    ("synth", "--out"), ("track", "PKG", "CLIP", "--out"), ("eval", "PKG", "CLIP", "--json"),
    ("bench", "PKG", "--json"), ("demo", "--headless", "--out"),
], ids=lambda c: c[0])
def test_output_on_a_read_only_place(bad, tmp_path, readonly, command):
    target = readonly.with_suffix(".json") if command[-1] == "--json" else readonly
    result = run_cli(*(_path(a, bad, tmp_path) for a in command), target)
    assert_one_error(result, "cannot write")


# ------------------------------------------------------------------------------ torch commands (slower)
TORCH_CASES = [
    (("train-dam", "@run_empty"), "no enrollment"),
    (("train-dam", "@run_junk"), "cannot read enrollment array"),
    (("train-dam", "FILE"), "RUN must be a folder"),
    (("train-i2z", "@run_empty"), "no enrollment"),
    (("train-i2z", "@run_empty", "--out", "FILE"), "--out must be a folder"),
    (("adapt", "@run_empty", "CLIP", "--out", "OUT/a"), "train the DAM first"),
    (("adapt", "@run_empty", "CLIP", "--out", "OUT/a", "--losses", "bogus"), "unknown or empty choice"),
    (("adapt", "@run_empty", "CLIP", "--out", "FILE"), "--out must be a folder"),
    (("export", "@run_empty", "--out", "OUT/p"), "no enrollment"),
    (("export", "@run_empty", "--out", "FILE"), "--out must be a folder"),
    (("bench-teacher", "--json", "@dir"), "needs a file name"),
    (("bench-teacher", "--video", "OUT/nope.mp4", "--json", "OUT/bt.json"), "no such file"),
    (("enroll", "@mixed", "--out", "OUT/r"), "the folder's first frame is 160x120"),
    (("enroll", "@guided.mp4", "--out", "OUT/r"), "guided.prompts.json: unusable prompt timeline (written for 7 frames"),
    (("build", "@guided.mp4", "CLIP", "--out", "OUT/p"), "unusable prompt timeline"),
    (("enroll", "@wall.mp4", "--out", "OUT/r", "--start", "0.7", "--stop", "0.3"), "--start"),
    (("synth", "--out", "OUT/s", "--frames", "2", "--width", "64", "--height", "64", "--face", "@photo.txt"),
     "cannot read image"),
]


@pytest.mark.parametrize("args,words", TORCH_CASES, ids=[" ".join(a[:2] + a[-1:]) for a, _ in TORCH_CASES])
def test_offline_steps_reject_bad_input(bad, tmp_path, args, words):
    assert_one_error(run_cli(*(_path(a, bad, tmp_path) for a in args)), words)


# ------------------------------------------------------------------------------------------ no face at all
@pytest.mark.parametrize("command", [
    ("eval", "PKG", "@wall.mp4", "--json", "OUT/report.json"),
    ("bench", "PKG", "--source", "@wall.mp4", "--frames", "4", "--rounds", "1", "--json", "OUT/report.json"),
], ids=lambda c: c[0])
def test_no_face_is_exit_2_and_keeps_the_earlier_report(bad, tmp_path, command):
    report = tmp_path / "OUT" / "report.json"
    report.parent.mkdir()
    report.write_text(EARLIER)
    assert_one_error(run_cli(*(_path(a, bad, tmp_path) for a in command)), "no face")
    assert report.read_text() == EARLIER and no_temp_files(report.parent)


def test_track_with_no_face_is_exit_2_and_keeps_the_session(bad, tmp_path):
    from app.recording import load_session

    out = tmp_path / "s"
    assert_one_error(run_cli("track", PKG, bad["wall.mp4"], "--out", out), "no face found in any of 6 frames")
    session = load_session(out)
    assert len(session) == 6 and not session.found.any() and session.manifest["closed"]


@pytest.mark.parametrize("command", [
    ("track", "PKG", "@mixed", "--out", "OUT/s"),
    ("eval", "PKG", "@mixed", "--json", "OUT/e.json"),
    ("bench", "PKG", "--source", "@mixed", "--json", "OUT/b.json"),
    ("eval", "PKG", "@badimg", "--json", "OUT/e.json"),
], ids=lambda c: f"{c[0]}-{c[-3] if c[0] != 'bench' else c[3]}")
def test_frame_folders_of_mixed_sizes_or_bad_images(bad, tmp_path, command):
    line = assert_one_error(run_cli(*(_path(a, bad, tmp_path) for a in command)))
    assert "b.png" in line and ("frame is 150x100" in line or "cannot decode" in line)


# ---------------------------------------------------------------------------------- earlier output intact
def test_track_refuses_a_folder_with_an_earlier_session(tmp_path):
    out = tmp_path / "s"
    out.mkdir()
    (out / "report.json").write_text(EARLIER)
    assert_one_error(run_cli("track", PKG, CLIP, "--out", out), "already holds files")
    assert [p.name for p in out.iterdir()] == ["report.json"] and (out / "report.json").read_text() == EARLIER


def test_track_refuses_a_folder_another_run_holds(tmp_path):
    out = tmp_path / "s"
    out.mkdir()
    (out / ".lock").write_text("")
    assert_one_error(run_cli("track", PKG, CLIP, "--out", out), "another run")
    assert (out / ".lock").exists() and [p.name for p in out.iterdir()] == [".lock"]


def test_demo_refuses_an_earlier_demo_folder(tmp_path):
    out = tmp_path / "d"
    out.mkdir()
    (out / "report.json").write_text(EARLIER)
    assert_one_error(run_cli("demo", "--out", out, "--headless"), "already holds files")
    assert (out / "report.json").read_text() == EARLIER


def test_demo_headless_runs(tmp_path):
    result = run_cli("demo", "--out", tmp_path / "d", "--headless", "--max-frames", "3")
    assert_ok(result)
    assert json.loads((tmp_path / "d" / "report.json").read_text())["frames"] == 3


def test_track_legal_run(tmp_path):
    result = run_cli("track", PKG, CLIP, "--out", tmp_path / "s", "--max-frames", "3", "--backend", "cpu")
    assert_ok(result)
    assert json.loads((tmp_path / "s" / "report.json").read_text())["frames"] == 3


def test_bench_legal_run_keeps_stderr_clean(tmp_path):
    """MediaPipe's absl/TFLite lines and OpenCV's logger never reach stderr (engine.cli filters them)."""
    pytest.importorskip("mediapipe")
    result = run_cli("bench", PKG, "--source", CLIP, "--frames", "3", "--rounds", "1", "--json", tmp_path / "b.json")
    assert_ok(result)
    assert result.stderr.strip() == "", result.stderr
    assert json.loads((tmp_path / "b.json").read_text())["frames_found"] == 3


# ------------------------------------------------------------------------------------------------ disk full
def test_synth_on_a_full_disk_keeps_the_earlier_clip(tmp_path):
    out = tmp_path / "clip"
    out.mkdir()
    for name in ("video.mp4", "gt.npz", "meta.json"):
        (out / name).write_text(EARLIER)
    result = run_cli("synth", "--out", out, "--frames", "2", "--width", "64", "--height", "64",
                     limit_bytes=1500)
    line = assert_one_error(result, str(out))
    assert "File too large" in line or "encoder" in line
    assert all((out / n).read_text() == EARLIER for n in ("video.mp4", "gt.npz", "meta.json"))
    assert no_temp_files(out)


def test_eval_on_a_full_disk_keeps_the_earlier_report(tmp_path):
    report = tmp_path / "e.json"
    report.write_text(EARLIER)
    result = run_cli("eval", PKG, CLIP, "--json", report, "--max-frames", "3", limit_bytes=1024)
    assert_one_error(result, str(report), "File too large")
    assert report.read_text() == EARLIER and no_temp_files(tmp_path)


def test_bench_on_a_full_disk_keeps_the_earlier_report(tmp_path):
    report = tmp_path / "b.json"
    report.write_text(EARLIER)
    result = run_cli("bench", PKG, "--source", CLIP, "--frames", "3", "--rounds", "1", "--json", report,
                     limit_bytes=1024)
    assert_one_error(result, str(report), "File too large")
    assert report.read_text() == EARLIER and no_temp_files(tmp_path)


@pytest.fixture
def full_disk(tmp_path):
    """A real 64 KiB tmpfs, filled: ENOSPC (needs a process that may mount; skipped elsewhere)."""
    mount = tmp_path / "full"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                                           capture_output=True, check=False).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        (mount / "EARLIER.csv").write_text(EARLIER)
        with open(mount / "filler", "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError:
                pass
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)


def test_export_session_on_a_real_full_disk(full_disk, session):
    assert_one_error(run_cli("export-session", session, "--csv", full_disk / "EARLIER.csv"),
                     "EARLIER.csv", "disk full")
    assert (full_disk / "EARLIER.csv").read_text() == EARLIER and no_temp_files(full_disk)


# ------------------------------------------------------------------------------------------ export-session
N_FRAMES, Z_DIM = 5, 16


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> Path:
    """A small recorded session: 5 frames 64x48, z of 16, expressions, vertices."""
    from app.recording import SessionRecorder

    folder = tmp_path_factory.mktemp("session") / "s"
    rng = np.random.default_rng(0)
    with SessionRecorder(folder, 30.0, (64, 48)) as rec:
        for i in range(N_FRAMES):
            rec.write(np.full((48, 64, 3), 10 * i, np.uint8), 100.0 + i / 30, rng.standard_normal(Z_DIM),
                      np.array([10.0, 0.01 * i, 0.02, 0.0, 32.0, 24.0]), {"jawOpen": 0.1 * i, "eyeBlinkLeft": 0.5},
                      G=rng.standard_normal((468, 3)).astype(np.float32))
    return folder


def _manifest(change):
    def apply(folder: Path):
        path = folder / "session.json"
        m = json.loads(path.read_text())
        change(m)
        path.write_text(json.dumps(m))
    return apply


def _line(k: int, change):
    """Change the k-th frames.jsonl record (a dict) with change(record) → new record (any JSON value)."""
    def apply(folder: Path):
        path = folder / "frames.jsonl"
        lines = path.read_text().splitlines()
        lines[k] = json.dumps(change(json.loads(lines[k])))
        path.write_text("\n".join(lines) + "\n")
    return apply


def _set(key, value):
    def change(r):
        r[key] = value
        return r
    return change


def _drop(key):
    def change(r):
        r.pop(key)
        return r
    return change


def _write(name: str, data: bytes | str):
    def apply(folder: Path):
        p = folder / name
        p.write_bytes(data) if isinstance(data, bytes) else p.write_text(data)
    return apply


def _delete(name: str):
    return lambda folder: (folder / name).unlink()


def _truncate_vertices(rows: int):
    def apply(folder: Path):
        p = folder / "vertices.f32"
        p.write_bytes(p.read_bytes()[: rows * 468 * 3 * 4])
    return apply


def _corrupt_middle(folder: Path):
    path = folder / "frames.jsonl"
    lines = path.read_text().splitlines()
    lines[1] = lines[1][: len(lines[1]) // 2]
    path.write_text("\n".join(lines) + "\n")


SESSION_CASES = {
    "manifest-list": (_write("session.json", "[1, 2, 3]"), "not a session manifest"),
    "manifest-not-json": (_write("session.json", "{fps: 30"), "not JSON"),
    "manifest-empty": (_write("session.json", ""), "not JSON"),
    "manifest-missing": (_delete("session.json"), "session.json: no such file"),
    "manifest-deeply-nested": (_write("session.json", "[" * 200_000 + "]" * 200_000), "not JSON"),
    "manifest-binary": (_write("session.json", b"\xff\xfe\x00garbage"), "session.json"),
    "fps-zero": (_manifest(lambda m: m.update(fps=0)), "fps must be"),
    "fps-negative": (_manifest(lambda m: m.update(fps=-30)), "fps must be"),
    "fps-nan": (_manifest(lambda m: m.update(fps=float("nan"))), "fps must be"),
    "fps-inf": (_manifest(lambda m: m.update(fps=float("inf"))), "fps must be"),
    "fps-string": (_manifest(lambda m: m.update(fps="30")), "fps must be"),
    "fps-huge": (_manifest(lambda m: m.update(fps=1e9)), "fps must be"),
    "fps-missing": (_manifest(lambda m: m.pop("fps")), "fps must be"),
    "fps-bool": (_manifest(lambda m: m.update(fps=True)), "fps must be"),
    "start-string": (_manifest(lambda m: m.update(started_unix="yesterday")), "started_unix"),
    "start-huge": (_manifest(lambda m: m.update(started_unix=1e20)), "started_unix"),
    "start-missing": (_manifest(lambda m: m.pop("started_unix")), "started_unix"),
    "format-future": (_manifest(lambda m: m.update(format=99)), "session format 99"),
    "frames-missing": (_delete("frames.jsonl"), "frames.jsonl: no such file"),
    "frames-binary": (_write("frames.jsonl", b'{"t": 1}\n\xff\xfe\xfd\n'), "frames.jsonl"),
    "line-list": (_line(1, lambda r: [1, 2, 3]), "line 2: not a JSON object"),
    "line-number": (_line(1, lambda r: 42), "line 2: not a JSON object"),
    "line-string": (_line(0, lambda r: "frame"), "line 1: not a JSON object"),
    "line-null": (_line(2, lambda r: None), "line 3: not a JSON object"),
    "line-corrupt-middle": (_corrupt_middle, "line 2 is corrupt"),
    "t-missing": (_line(1, _drop("t")), "'t' must be"),
    "t-string": (_line(1, _set("t", "noon")), "'t' must be"),
    "t-nan": (_line(1, _set("t", float("nan"))), "'t' must be"),
    "t-huge": (_line(1, _set("t", 1e300)), "'t' must be"),
    "found-string": (_line(1, _set("found", "no")), "'found' must be"),
    "z-missing": (_line(1, _drop("z")), "'z' must be"),
    "z-string": (_line(1, _set("z", "0.1,0.2")), "'z' must be"),
    "z-strings-inside": (_line(1, _set("z", ["a"] * Z_DIM)), "'z' must be"),
    "z-empty-among-latents": (_line(1, _set("z", [])), "'z' has 0 values"),   # [] only from a tracker without one
    "z-length-varies": (_line(2, _set("z", [0.0] * (Z_DIM - 3))), "'z' has 13 values"),
    "H-short": (_line(1, _set("H", [1.0] * 5)), "'H' has 5 values"),
    "H-missing": (_line(1, _drop("H")), "'H' must be"),
    "H-nested": (_line(1, _set("H", [[1.0] * 6])), "'H' must be"),
    "e-list": (_line(1, _set("e", [0.1, 0.2])), "'e' must be"),
    "e-string-value": (_line(1, _set("e", {"jawOpen": "wide"})), "'e' must be"),
    "e-missing": (_line(1, _drop("e")), "'e' must be"),
    "e-huge-integer": (_line(1, _set("e", {"jawOpen": 10**400})), "'e' must be"),
    "H-huge-integer": (_line(1, _set("H", [10**400] * 6)), "'H' must be"),
    "g-negative": (_line(1, _set("g", -1)), "'g' must be"),
    "g-huge": (_line(1, _set("g", 10**30)), "refers to row"),
    "g-float": (_line(1, _set("g", 1.5)), "'g' must be"),
    "g-bool": (_line(1, _set("g", True)), "'g' must be"),
    "g-string": (_line(1, _set("g", "1")), "'g' must be"),
    "vertices-short": (_truncate_vertices(2), "vertices.f32: holds 2 rows"),
    "vertices-missing": (_delete("vertices.f32"), "vertices.f32: is missing"),
}


@pytest.mark.parametrize("name", list(SESSION_CASES))
def test_export_session_trusts_nothing_in_a_session(session, tmp_path, name):
    tamper, words = SESSION_CASES[name]
    folder = tmp_path / "s"
    shutil.copytree(session, folder)
    tamper(folder)
    csv = tmp_path / "take.csv"
    csv.write_text(EARLIER)
    line = assert_one_error(run_cli("export-session", folder, "--csv", csv), words)
    assert str(folder) in line                          # the error names the session's file
    assert csv.read_text() == EARLIER and no_temp_files(tmp_path)


@pytest.mark.parametrize("args,words", [
    (("SESSION",), "nothing to do"),
    (("OUT/nope", "--csv", "OUT/a.csv"), "no such session folder"),
    (("FILE", "--csv", "OUT/a.csv"), "no such session folder"),
    (("SESSION", "--csv", "@dir"), "needs a file name"),
    (("SESSION", "--csv", "UNDERFILE"), "is a file, not a folder"),
    (("SESSION", "--csv", "LONG"), "too long"),
    (("SESSION", "--obj", "FILE"), "must be a folder"),
    (("SESSION", "--obj", "OUT/o", "--package", "OUT/nopkg"), "OUT/nopkg"),
], ids=["nothing", "no-session", "session-is-file", "csv-folder", "csv-under-file", "csv-long", "obj-file",
        "obj-bad-package"])
def test_export_session_paths(bad, session, tmp_path, args, words):
    argv = [str(session) if a == "SESSION" else _path(a, bad, tmp_path) for a in args]
    assert_one_error(run_cli("export-session", *argv), words.replace("OUT/", str(tmp_path) + "/OUT/"))


def test_export_session_without_vertices_has_no_obj(session, tmp_path):
    folder = tmp_path / "s"
    shutil.copytree(session, folder)
    _line(0, _set("g", None))(folder)
    for k in range(1, N_FRAMES):
        _line(k, _set("g", None))(folder)
    (folder / "vertices.f32").unlink()
    assert_one_error(run_cli("export-session", folder, "--obj", tmp_path / "obj"), "recorded no vertices")


def test_export_session_keeps_the_truncated_last_line_tolerance(session, tmp_path):
    """A killed recorder leaves half a last line: that session is legal, its complete frames export."""
    folder = tmp_path / "s"
    shutil.copytree(session, folder)
    with open(folder / "frames.jsonl", "a") as f:
        f.write('{"i": 5, "t": 100.2, "z": [0.1, 0.')
    result = run_cli("export-session", folder, "--csv", tmp_path / "a.csv", "--obj", tmp_path / "obj")
    assert_ok(result)
    assert len((tmp_path / "a.csv").read_text().splitlines()) == 1 + N_FRAMES
    assert len(list((tmp_path / "obj").glob("*.obj"))) == N_FRAMES


def test_export_session_with_z_beyond_float32(session, tmp_path):
    """z values a float32 cannot hold are legal JSON numbers: they read as ±inf, with no warning line."""
    folder = tmp_path / "s"
    shutil.copytree(session, folder)
    _line(1, _set("z", [1e300] * Z_DIM))(folder)
    result = run_cli("export-session", folder, "--csv", tmp_path / "a.csv")
    assert_ok(result)
    assert result.stderr.strip() == ""


def test_export_session_with_a_no_face_frame(session, tmp_path):
    folder = tmp_path / "s"
    shutil.copytree(session, folder)
    _line(2, lambda r: {"i": 2, "t": r["t"], "found": False})(folder)
    result = run_cli("export-session", folder, "--csv", tmp_path / "a.csv")
    assert_ok(result)
    assert len((tmp_path / "a.csv").read_text().splitlines()) == 1 + N_FRAMES


def test_export_session_on_a_full_disk_keeps_the_earlier_csv(session, tmp_path):
    csv = tmp_path / "take.csv"
    csv.write_text(EARLIER)
    assert_one_error(run_cli("export-session", session, "--csv", csv, limit_bytes=1024), "take.csv",
                     "File too large")
    assert csv.read_text() == EARLIER and no_temp_files(tmp_path)


# ------------------------------------------------------------------------------------------------ studio
def _studio_env() -> dict:
    return {} if os.environ.get("DISPLAY") else {"QT_QPA_PLATFORM": "offscreen"}


STUDIO_ERRORS = [
    (("--record", "FILE"), "--record must be a folder"),
    (("--record", "LONG"), "too long"),
    (("--screenshot", "@dir"), "needs a file name"),
    (("--port", "70000"), "70000"),
    (("--frames", "0"), "--frames"),
    (("--no-such-option",), "unrecognized arguments"),
]


@pytest.mark.parametrize("args,words", STUDIO_ERRORS, ids=[a[0] for a, _ in STUDIO_ERRORS])
def test_studio_rejects_bad_options(bad, tmp_path, args, words):
    result = run_cli("studio", *(_path(a, bad, tmp_path) for a in args), env=_studio_env(), display=True)
    assert_one_error(result, words)


def test_studio_without_a_display_is_one_error_line():
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    result = subprocess.run([sys.executable, "-m", "engine.cli", "studio", "--package", "demo"], cwd=ROOT,
                            capture_output=True, check=False, text=True, timeout=60, env=env)
    assert_one_error(result, "no display")


def _start_studio(rec: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "engine.cli", "studio", "--package", "demo", "--source", str(CLIP),
                             "--record", str(rec)], cwd=ROOT, env=_env(_studio_env(), display=True),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_studio_closes_cleanly_on_a_signal(tmp_path, sig):
    """Ctrl-C, SIGTERM and SIGHUP close the window: recording stops and the session is `closed: true`, every
    recorded line has its video frame, exit 0, no traceback."""
    from app.recording import load_session

    proc = _start_studio(tmp_path)
    try:
        folder = wait_for_lines("session-*/frames.jsonl", tmp_path, 10)
    except AssertionError:
        proc.kill()
        raise
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert f"{sig.name}: closed cleanly" in out
    session = load_session(folder)
    assert session.manifest["closed"] and session.manifest["frames"] == len(session) >= 10
    assert video_frames(folder / "video.mp4") == len(session)


def test_killed_studio_loses_at_most_a_second_of_video(tmp_path):
    """kill -9 of the studio and its ffmpeg while recording: the session reads back (closed: false) and its video
    lacks at most 1 s of the frames whose lines were written (fragmented MP4, zero-latency encoder)."""
    from app.recording import load_session

    proc = _start_studio(tmp_path)
    try:
        folder = wait_for_lines("session-*/frames.jsonl", tmp_path, 40)
    finally:
        encoders = kill_with_children(proc)
    assert encoders >= 1                               # the encoder died with it
    session = load_session(folder)
    lost = len(session) - video_frames(folder / "video.mp4")
    assert not session.manifest["closed"] and len(session) >= 40
    assert 0 <= lost <= session.manifest["fps"], lost


# --------------------------------------------------------------------------------------- signals, concurrency
def test_killed_track_keeps_what_it_tracked(tmp_path):
    """kill -9 of `track` and its encoders: every flushed line reads back, the video lacks at most 1 s."""
    from app.recording import load_session

    out = tmp_path / "s"
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "track", str(PKG), str(CLIP), "--out", str(out),
                             "--backend", "cpu"], cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_for_lines("frames.jsonl", out, 30)
    finally:
        kill_with_children(proc)
    session = load_session(out)
    lost = len(session) - video_frames(out / "video.mp4")
    assert len(session) >= 30 and 0 <= lost <= session.manifest["fps"], lost


def test_two_tracks_into_one_folder(tmp_path):
    """The second run into a folder the first one holds is refused; the first one's session is whole."""
    from app.recording import load_session

    out = tmp_path / "s"
    first = subprocess.Popen([sys.executable, "-m", "engine.cli", "track", str(PKG), str(CLIP), "--out", str(out),
                              "--backend", "cpu", "--max-frames", "60"], cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    wait_for_lines("frames.jsonl", out, 1)
    second = run_cli("track", PKG, CLIP, "--out", out, "--backend", "cpu")
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    line = assert_one_error(second)
    assert "another run" in line or "already holds files" in line
    report = json.loads((out / "report.json").read_text())
    session = load_session(out)
    assert session.manifest["closed"] and len(session) == report["frames"] == video_frames(out / "video.mp4")


SESSION_FOLDER_CHILD = """
import sys
from datetime import datetime
sys.path.insert(0, {root!r})
from app.outputs import session_folder
for _ in range(5):
    print(session_folder({parent!r}, clock=lambda: datetime(2030, 1, 2, 3, 4, 5)), flush=True)
"""


def test_recorders_started_in_the_same_second_never_share_a_folder(tmp_path):
    """Threads in one studio and two studio processes, all in the same second: every folder is new and theirs."""
    from app.outputs import session_folder

    def same_second():
        return datetime(2030, 1, 2, 3, 4, 5)

    got, threads = [], [threading.Thread(target=lambda: got.append(session_folder(tmp_path, clock=same_second)))
                        for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    children = [subprocess.Popen([sys.executable, "-c", SESSION_FOLDER_CHILD.format(root=str(ROOT),
                                                                                    parent=str(tmp_path))],
                                 stdout=subprocess.PIPE, text=True) for _ in range(2)]
    for child in children:
        out, _ = child.communicate(timeout=60)
        got += [Path(line) for line in out.split()]
    assert len(got) == 18 and len(set(got)) == 18 and all(p.is_dir() for p in got)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in got)


# ------------------------------------------------------------------------------------- measurements (docs)
def _kill_recorder(folder: Path, after: int) -> dict:
    from app.recording import load_session

    child = recorder_child.start(folder, (640, 480), 128)
    written = recorder_child.wait_written(child, after)
    kill_with_children(child)
    session = load_session(folder)
    return {"written": written, "lines": len(session), "video": video_frames(folder / "video.mp4"),
            "fps": session.manifest["fps"]}


def _kill_track(folder: Path, after: int) -> dict:
    from app.recording import load_session

    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "track", str(PKG), str(CLIP), "--out", str(folder),
                             "--backend", "cpu"], cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_for_lines("frames.jsonl", folder, after)
    kill_with_children(proc)
    session = load_session(folder)
    return {"lines": len(session), "video": video_frames(folder / "video.mp4"), "fps": session.manifest["fps"]}


def _kill_studio(root: Path, after: int, sig=signal.SIGKILL) -> dict:
    from app.recording import load_session

    proc = _start_studio(root)
    folder = wait_for_lines("session-*/frames.jsonl", root, after)
    t0 = time.time()
    if sig == signal.SIGKILL:
        kill_with_children(proc)
    else:
        proc.send_signal(sig)
        proc.communicate(timeout=60)
    seconds = time.time() - t0
    session = load_session(folder)
    return {"lines": len(session), "video": video_frames(folder / "video.mp4"), "fps": session.manifest["fps"],
            "closed": session.manifest["closed"], "exit": proc.returncode, "seconds": round(seconds, 2)}


def measure(repeats: int = 5) -> None:
    """The kill/signal numbers of docs/RELIABILITY.md: `xvfb-run -a .venv/bin/python tests/test_hostile.py`."""
    import tempfile

    def report(name, rows):
        lost = [r["lines"] - r["video"] for r in rows]
        print(f"| {name} | {len(rows)} | {min(r['lines'] for r in rows)}–{max(r['lines'] for r in rows)} | "
              f"{min(lost)}–{max(lost)} | {max(lost) / rows[0]['fps']:.2f} s |"
              + (f" {sorted({r['exit'] for r in rows})}, closed {all(r['closed'] for r in rows)},"
                 f" {max(r['seconds'] for r in rows):.2f} s |" if "exit" in rows[0] else " |"), flush=True)

    print("| case | runs | lines kept | video frames lost | worst loss | exit / closed / time to close |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        report("kill -9 recorder + its ffmpeg, 640x480 noise at 30 fps",
               [_kill_recorder(tmp / f"rec{k}", 45 + 11 * k) for k in range(repeats)])
        report("kill -9 `track` + its encoders",
               [_kill_track(tmp / f"track{k}", 20 + 15 * k) for k in range(repeats)])
        report("kill -9 studio + its ffmpeg while recording",
               [_kill_studio(tmp / f"studio{k}", 30 + 10 * k) for k in range(repeats)])
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            report(f"{sig.name} to the studio while recording",
                   [_kill_studio(tmp / f"{sig.name}{k}", 20 + 10 * k, sig) for k in range(max(2, repeats // 2))])


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    measure(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
