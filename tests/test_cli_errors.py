"""Bad input ends with exit status 2 and one `error:` line naming the file — never a traceback."""
import subprocess
import sys

import numpy as np
import pytest

from engine.video import VideoWriter


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "engine.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def assert_user_error(result, name, words):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert name in lines[0] and words in lines[0], lines[0]


def test_missing_video(tmp_path):
    result = run_cli("enroll", tmp_path / "nope.mp4", "--out", tmp_path / "run")
    assert_user_error(result, "nope.mp4", "no such file")


def test_corrupt_video(tmp_path):
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 255, 20000, dtype=np.uint8).tobytes())
    assert_user_error(run_cli("enroll", bad, "--out", tmp_path / "run"), "corrupt.mp4", "cannot open")


def test_empty_video(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    assert_user_error(run_cli("enroll", empty, "--out", tmp_path / "run"), "empty.mp4", "cannot open")


def test_empty_frame_folder(tmp_path):
    (tmp_path / "frames").mkdir()
    assert_user_error(run_cli("enroll", tmp_path / "frames", "--out", tmp_path / "run"), "frames", "no image frames")


def test_video_without_a_face(tmp_path):
    clip = tmp_path / "wall.mp4"
    rng = np.random.default_rng(1)
    with VideoWriter(clip, 25) as w:
        for _ in range(8):
            w.write(rng.integers(100, 140, (240, 320, 3), dtype=np.uint8))
    result = run_cli("enroll", clip, "--out", tmp_path / "run")
    assert_user_error(result, "wall.mp4", "no face found in any of 8 frames")
    assert not (tmp_path / "run" / "report.json").exists()


@pytest.mark.parametrize("frames", ["0", "-3"])
def test_synth_rejects_no_frames(tmp_path, frames):
    assert_user_error(run_cli("synth", "--out", tmp_path / "s", "--frames", frames), "--frames", "outside 1..")


@pytest.mark.parametrize("args,name,words", [
    (("track", "export/sample_package", "synthetic", "--out", "OUT", "--threads", "100000"), "--threads", "cores"),
    (("track", "export/sample_package", "synthetic", "--out", "OUT", "--threads", "-1"), "--threads", "choose 0"),
    (("bench", "export/sample_package", "--json", "OUT", "--rounds", "0"), "--rounds", "outside 1.."),
    (("eval", "teacher", "x.mp4", "--json", "OUT", "--start", "nan"), "--start", "not a finite number"),
    (("eval", "teacher", "x.mp4", "--json", "OUT", "--stop", "1.5"), "--stop", "not a fraction"),
    (("eval", "teacher", "x.mp4", "--json", "OUT", "--flow", "-1"), "--flow", "outside [0, 100]"),
    (("synth", "--out", "OUT", "--width", "100000", "--height", "100000"), "--width", "outside 64..7680"),
    (("enroll", "x.mp4", "--out", "OUT", "--texture-size", "0"), "--texture-size", "outside 16..2048"),
    (("track", "export/sample_package", "synthetic", "--out", "OUT", "--texture-hz", "0"), "--texture-hz", "outside"),
])
def test_numeric_options_are_range_checked_before_work(tmp_path, args, name, words):
    """Every numeric option is checked by the parser (engine.options): one error line, nothing started."""
    out = tmp_path / "out"
    result = run_cli(*(str(out) if a == "OUT" else a for a in args))
    assert_user_error(result, name, words)
    assert not out.exists()
