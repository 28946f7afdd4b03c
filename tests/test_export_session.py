"""`facetrack export-session`: a recorded session → Live Link Face CSV + OBJ sequence, through the CLI."""
import numpy as np

from app.recording import SessionRecorder
from engine import canonical, cli
from export.expressions import ARKIT_NAMES


def test_export_session_cli(tmp_path, capsys):
    G = canonical.load()[0]
    with SessionRecorder(tmp_path / "s", fps=25, frame_size=(64, 48)) as rec:
        for i in range(5):
            H = np.array([8.0, 0.0, 0.1 * i, 0.0, 32.0, 24.0])
            rec.write(np.zeros((48, 64, 3), np.uint8), i / 25, np.zeros(128), H, {"jawOpen": 0.1 * i}, G=G)
    assert cli.main(["export-session", str(tmp_path / "s"), "--csv", str(tmp_path / "s.csv"),
                     "--obj", str(tmp_path / "obj")]) == 0
    rows = (tmp_path / "s.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert header[:3] == ["Timecode", "BlendShapeCount", "EyeBlinkLeft"] and len(rows) == 6
    assert abs(float(rows[-1].split(",")[header.index("JawOpen")]) - 0.4) < 1e-5
    assert len(header) == 2 + len(ARKIT_NAMES) + 9
    objs = sorted((tmp_path / "obj").glob("*.obj"))
    assert len(objs) == 5 and sum(l.startswith("v ") for l in objs[0].read_text().splitlines()) == 468
    assert cli.main(["export-session", str(tmp_path / "s")]) == 2       # nothing asked: one error line
    assert capsys.readouterr().err.startswith("error:")
