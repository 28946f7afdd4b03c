"""A `track` ended by a signal keeps everything it tracked: the session closes as at the end of the clip."""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from export.package import SAMPLE_PACKAGE

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_signal_mid_run_keeps_the_session(tmp_path, sig):
    from app.recording import load_session
    from engine import video

    out = tmp_path / "s"
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "track", str(SAMPLE_PACKAGE),
                             str(SAMPLE_PACKAGE / "synthetic.mp4"), "--out", str(out), "--backend", "cpu"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:                       # let it track a few frames first
        lines = out / "frames.jsonl"
        if lines.exists() and lines.read_text().count("\n") >= 5:
            break
        time.sleep(0.05)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    report = json.loads((out / "report.json").read_text())
    session = load_session(out)
    assert 5 <= report["frames"] < 150 and signal.Signals(sig).name in report["ended"]
    assert len(session) == report["frames"] and session.manifest["closed"]
    assert video.probe(out / "video.mp4").frames == report["frames"]       # video and lines in step
    assert not (out / ".lock").exists()
