"""`facetrack eval`: the teacher tracker on a synthetic clip with ground truth, the CLI's outputs, the baseline."""
import argparse
import json

import numpy as np
import pytest

from engine import evaluate, synth
from engine.errors import UserError

REQUIRED = {"frames", "frames_lost", "stability", "stability_unguarded", "stability_excluded", "stability_image",
            "nme", "reprojection_px", "vertex_error", "pose_error_deg", "backend", "ms_per_frame", "model"}


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return synth.write_clip(tmp_path_factory.mktemp("eval"), frames=30, domain="lab", seed=1, size=(320, 240))


@pytest.fixture(autouse=True)
def one_torch_thread():
    """1 torch thread: on a shared 2-core CPU, 2 threads make the teacher 10x+ slower. Restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def cli(*argv):
    """The `eval` subcommand through our own parser (engine.cli wires in the same add_parser)."""
    p = argparse.ArgumentParser()
    evaluate.add_parser(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(["eval", *map(str, argv)])
    args.run(args)


def test_teacher_on_synthetic_ground_truth(clip, tmp_path):
    run = tmp_path / "run"
    run.mkdir()                                   # a run folder with no trained I2ZNet → the teacher
    r = evaluate.evaluate(run, clip / "video.mp4", gt=clip / "gt.npz")
    assert r["model"] == f"teacher (no i2znet in {run})" and r["baseline"] is None and not r["smooth"]
    assert r["frames"] == 30 and r["frames_lost"] == 0 and r["gt_frames"] == 30
    assert np.isfinite(r["stability"]) and r["stability"] >= 1.0
    assert r["vertex_error"] < 0.5, r["vertex_error"]             # cm
    assert r["pose_error_deg"] < 5.0, r["pose_error_deg"]
    assert np.isfinite(r["nme"]) and r["nme"] < 10


def test_cli_writes_json_and_plot(clip, tmp_path):
    out = tmp_path / "eval" / "out.json"
    cli("teacher", clip / "video.mp4", "--json", out, "--gt", clip / "gt.npz", "--max-frames", 12, "--smooth",
        "--threads", 1)
    r = json.loads(out.read_text())
    assert REQUIRED <= r.keys() and r["frames"] == 12 and r["torch_threads"] == 1
    assert r["smooth"] and r["smoothing"]["filter"] == "one_euro"
    assert r["vertex_error"] is not None and r["pose_error_deg"] is not None
    assert out.with_suffix(".png").stat().st_size > 5000


def test_baseline_on_real_clip(shared_data, tmp_path):
    pytest.importorskip("mediapipe")
    out = tmp_path / "lily.json"
    cli("teacher", shared_data / "videos/lily_aldridge/vox2_517600055_indoor.mp4", "--json", out,
        "--baseline", "mediapipe", "--max-frames", 40)
    r = json.loads(out.read_text())
    ours, base = {k: v for k, v in r.items() if k in REQUIRED | {"nme_frames"}}, r["baseline"]
    assert REQUIRED <= base.keys() and base.keys() <= r.keys()
    assert ours["frames"] == base["frames"] == 40 and base["model"] == "mediapipe"
    assert r["vertex_error"] is None and base["pose_error_deg"] is None       # no --gt
    for x in (ours, base):
        assert 1.0 <= x["stability"] < 3 and 0 < x["nme"] < 10 and x["nme_frames"] > 30
    assert abs(ours["nme"] - base["nme"]) < 1.0                              # the same landmark model


def test_bad_input(tmp_path, clip):
    with pytest.raises(UserError, match="no such file"):
        evaluate.evaluate("teacher", tmp_path / "missing.mp4")
    with pytest.raises(UserError, match="no such model"):
        evaluate.evaluate(tmp_path / "no_run", clip / "video.mp4")
    with pytest.raises(UserError, match="ground-truth"):
        evaluate.evaluate("teacher", clip / "video.mp4", gt=tmp_path / "gt.npz")
