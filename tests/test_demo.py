"""The README's main command: the committed sample package tracks its synthetic clip, torch-free."""
import json
import subprocess
import sys

from export.package import SAMPLE_PACKAGE, open_package


def test_sample_package_verifies_and_is_small():
    package = open_package(SAMPLE_PACKAGE)
    assert {"synthetic.mp4", "synthetic_gt.npz"} <= package.manifest["files"].keys()
    size = sum(p.stat().st_size for p in SAMPLE_PACKAGE.iterdir())
    assert size < 25e6


def test_demo_headless_writes_report_and_overlay(tmp_path):
    code = ("import sys; from engine import cli; rc = cli.main(['demo', '--out', sys.argv[1], '--headless', "
            "'--max-frames', '40']); assert 'torch' not in sys.modules, 'demo loaded torch'; sys.exit(rc)")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["frames"] == 40 and report["frames_found"] >= 38
    acc = report["accuracy"]
    assert acc["vertex_error_cm"] < 0.6 and acc["pose_error_deg"] < 15 and acc["stability"] >= 1.0
    assert (tmp_path / "overlay.mp4").stat().st_size > 10_000
