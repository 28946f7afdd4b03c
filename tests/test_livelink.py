"""Live Link Face CSV: header exactly as the fixture (written from the format's documentation), a recorded session
→ CSV → parsed back to the same values and times, a frame without a face present and flagged."""
from pathlib import Path

import numpy as np
import pytest

from app.livelink import (
    LLF_BLENDSHAPES,
    LLF_HEADER,
    export_csv,
    head_angles_arkit,
    parse_timecode,
    read_csv,
    timecode,
    timecode_rate,
    write_csv,
)
from app.recording import SessionRecorder, load_session
from export.expressions import ARKIT_NAMES

FIXTURE = Path(__file__).parent / "fixtures" / "livelink_header.csv"
FPS = 30.0


def _record(folder, n=6, no_face=(3,)):
    """A small session: frame i has a face (H, all 52 values) except the frames in `no_face`, recorded as the
    studio and `track` record them (a no-face line)."""
    rng = np.random.default_rng(1)
    frames = []
    with SessionRecorder(folder, FPS, (32, 24)) as rec:
        for i in range(n):
            image, t = np.zeros((24, 32, 3), np.uint8), 1000.0 + i / FPS
            if i in no_face:
                H, e = np.full(6, np.nan), {}
                rec.write(image, t)
            else:
                H = np.array([10.0, 0.05 * i, -0.1 * i, 0.02, 120.0 + i, 130.0])
                e = dict(zip(ARKIT_NAMES, rng.uniform(0, 1, len(ARKIT_NAMES)).round(6)))
                rec.write(image, t, np.zeros(8), H, e)
            frames.append((H, e))
    return frames


def test_header_is_the_fixture():
    fixture = FIXTURE.read_text().strip().split(",")
    assert list(LLF_HEADER) == fixture and len(fixture) == 2 + 52 + 9
    # Live Link Face's order is not Apple's: JawRight before JawLeft, MouthRight before MouthLeft
    assert fixture.index("JawRight") < fixture.index("JawLeft")
    assert fixture.index("MouthRight") < fixture.index("MouthLeft")
    assert sorted(c[0].lower() + c[1:] for c in LLF_BLENDSHAPES) == sorted(ARKIT_NAMES)


def test_session_round_trip_with_a_no_face_frame(tmp_path):
    frames = _record(tmp_path / "s")
    session = load_session(tmp_path / "s")
    export_csv(session, tmp_path / "take.csv")
    assert (tmp_path / "take.csv").read_text().splitlines()[0] == FIXTURE.read_text().strip()
    take = read_csv(tmp_path / "take.csv")
    assert take.columns == list(LLF_HEADER[2:]) and take.values.shape == (6, 61)
    assert take.found.tolist() == [True, True, True, False, True, True]        # present, not dropped, flagged
    assert take.counts.tolist() == [61, 61, 61, 0, 61, 61]
    assert not take.values[3].any()                                            # zeros for the no-face frame
    for i, (H, e) in enumerate(frames):
        if not e:
            continue
        for column in LLF_BLENDSHAPES:
            assert take.column(column)[i] == pytest.approx(e[column[0].lower() + column[1:]], abs=1e-8)
        yaw, pitch, roll = head_angles_arkit(H)
        assert [take.column(c)[i] for c in ("HeadYaw", "HeadPitch", "HeadRoll")] == pytest.approx(
            [yaw, pitch, roll], abs=1e-8)
        assert take.column("HeadYaw")[i] == pytest.approx(-H[2], abs=1e-8)   # radians
        assert not take.values[i, -6:].any()                                   # no gaze recorded: eyes 0
    # time codes keep the recorded times: consecutive rows 1/30 s apart, FF below 30 at 30 fps
    seconds = take.seconds()
    assert np.allclose(np.diff(seconds), 1 / FPS, atol=1e-4)
    assert all(int(tc.split(":")[3].split(".")[0]) < 30 for tc in take.timecodes)


def test_gaze_fills_the_eye_columns(tmp_path):
    t = np.arange(3) / FPS
    H = np.tile([10.0, 0.0, 0.0, 0.0, 128.0, 128.0], (3, 1))
    gaze = np.array([[[0.1, 0.2], [0.3, -0.1]], [[np.nan, np.nan], [np.nan, np.nan]], [[0.0, 0.05], [0.0, 0.05]]])
    write_csv(tmp_path / "g.csv", t, H, [{"jawOpen": 0.5}] * 3, FPS, 0.0, gaze=gaze)
    take = read_csv(tmp_path / "g.csv")
    eyes = take.values[:, -6:]
    # yaw negated like the head's (ARKit frame), pitch as is, roll 0; NaN (no gaze) → 0
    assert eyes[0] == pytest.approx([-0.1, 0.2, 0.0, -0.3, -0.1, 0.0])
    assert not eyes[1].any() and eyes[2] == pytest.approx([0.0, 0.05, 0.0, 0.0, 0.05, 0.0])
    assert take.column("JawOpen").tolist() == [0.5] * 3 and take.found.all()


class _WithFound:
    """A recorded session plus a per-frame `found` flag (what a session format with one would load)."""

    def __init__(self, session, found):
        self._session, self.found = session, found

    def __getattr__(self, name):
        return getattr(self._session, name)

    def __len__(self):
        return len(self._session)


def test_session_found_flag_wins(tmp_path):
    _record(tmp_path / "s", n=3, no_face=())
    session = _WithFound(load_session(tmp_path / "s"), np.array([True, False, True]))
    export_csv(session, tmp_path / "f.csv")
    assert read_csv(tmp_path / "f.csv").counts.tolist() == [61, 0, 61]


def test_timecodes():
    assert timecode(3600 + 62.5, 30) == "01:01:02:15.000"
    assert timecode(59.999, 30) == "00:00:59:29.970"
    assert timecode_rate(25) == 30 and timecode_rate(30) == 30 and timecode_rate(50) == 60
    # a 25 fps frame keeps its exact time in a 30 fps time code (fractional frame)
    assert timecode(12.04, timecode_rate(25)) == "00:00:12:01.200"
    assert parse_timecode("00:00:12:01.200", 30) == pytest.approx(12.04)
    assert parse_timecode("14:03:52:28.207", 30) == pytest.approx(14 * 3600 + 3 * 60 + 52 + 28.207 / 30)


def test_cli_writes_the_same_csv(tmp_path):
    from engine import cli

    _record(tmp_path / "s", n=4, no_face=(1,))
    assert cli.main(["export-session", str(tmp_path / "s"), "--csv", str(tmp_path / "cli.csv")]) == 0
    assert read_csv(tmp_path / "cli.csv").counts.tolist() == [61, 0, 61, 61]


def test_read_csv_rejects_other_files(tmp_path):
    (tmp_path / "x.csv").write_text("a,b,c\n1,2,3\n")
    with pytest.raises(ValueError):
        read_csv(tmp_path / "x.csv")
