"""`facetrack eval`: the teacher on a synthetic clip with ground truth, the CLI's outputs, the baselines, and
what MODEL may be (never a silent stand-in). Package-vs-run parity is in test_export (it needs a built package)."""
import argparse
import json

import numpy as np
import pytest

from engine import evaluate, synth, video
from engine.errors import UserError

REQUIRED = {"frames", "frames_lost", "stability", "stability_unguarded", "stability_excluded", "stability_image",
            "nme", "reprojection_px", "vertex_error", "pose_error_deg", "backend", "ms_per_frame", "model",
            "tracker", "package_sha256", "motion_mm", "motion_ratio", "stability_common", "frozen_share",
            "vertex_error_nonrigid", "motion_ratio_gt", "expression_r", "gaze_error_deg", "gaze_r", "nme_gt"}


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return synth.write_clip(tmp_path_factory.mktemp("eval"), frames=30, domain="lab", seed=1, size=(320, 240))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def cli(*argv):
    """The `eval` subcommand through our own parser (engine.cli wires in the same add_parser)."""
    p = argparse.ArgumentParser()
    evaluate.add_parser(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(["eval", *map(str, argv)])
    args.run(args)


def test_teacher_on_synthetic_ground_truth(clip, tmp_path):
    r = evaluate.evaluate("teacher", clip / "video.mp4", gt=clip / "gt.npz")
    assert r["model"] == "teacher" and r["tracker"] == "baseline" and r["baseline"] is None and not r["smooth"]
    assert r["frames"] == 30 and r["frames_lost"] == 0 and r["gt_frames"] == 30
    assert 0.3 < r["motion_mm"] and 0.5 < r["motion_ratio_gt"] < 2.0         # it moves about as the truth does
    assert r["vertex_error_nonrigid"] <= r["vertex_error"]
    assert set(r["expression_r"]) == {"jaw_open", "smile_left", "smile_right", "blink_left", "blink_right",
                                      "brow_raise", "brow_frown", "pucker"}
    assert r["expression_r"]["jaw_open"] is None                  # no jaw motion in these 30 frames: no r
    assert r["expression_r"]["smile_right"] > 0.5, r["expression_r"]
    # the clip's own ceiling: the same ARKit code on the truth's meshes reads what the clip does, and no more
    ceiling = r["expression_r_ceiling"]
    assert set(ceiling) == set(r["expression_r"]) and ceiling["jaw_open"] is None
    assert ceiling["smile_right"] > 0.9 and ceiling["smile_right"] >= r["expression_r"]["smile_right"], ceiling
    assert np.isfinite(r["stability"]) and r["stability"] >= 1.0
    assert r["vertex_error"] < 0.5, r["vertex_error"]             # cm
    assert r["pose_error_deg"] < 5.0, r["pose_error_deg"]
    assert np.isfinite(r["nme"]) and r["nme"] < 10
    assert 0 < r["nme_gt"] < 10                                   # the 51 points against the truth's own


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
    # side by side on the same frames: the same landmark model moves as much, under one guard mask
    assert 0.7 < r["motion_ratio"] < 1.4 and base["motion_ratio"] == 1.0
    assert r["stability_common"] is not None and base["stability_common"] is not None


def test_facelandmarker_scores_its_own_blendshapes(clip, tmp_path):
    pytest.importorskip("mediapipe")
    from engine.baselines import FACELANDMARKER_TASK

    if not FACELANDMARKER_TASK.is_file():
        pytest.skip("no Face Landmarker bundle in ../shared")
    r = evaluate.evaluate("facelandmarker", clip / "video.mp4", gt=clip / "gt.npz", max_frames=20)
    assert r["tracker"] == "baseline" and "Face Landmarker" in r["backend"] and r["frames_lost"] == 0
    track = evaluate.Track.start(*evaluate.tracker_for("facelandmarker"))
    track.step(next(video.frames(clip / "video.mp4")))
    shapes = track.expressions[0]         # its own learned blendshapes (ARKit's names less tongueOut), not ours
    assert len(shapes) == 51 and {"jawOpen", "eyeBlinkLeft", "mouthPucker"} <= shapes.keys()


def test_model_must_be_a_package_a_run_or_a_name(clip, tmp_path):
    """A folder with no model is an error with exit 2, never a silent stand-in (the teacher used to be)."""
    empty = tmp_path / "run"
    empty.mkdir()
    with pytest.raises(UserError, match="neither a performer package"):
        evaluate.evaluate(empty, clip / "video.mp4")
    (empty / "i2z").mkdir()
    (empty / "i2z" / "model.safetensors").write_bytes(b"x")           # weights without a DAM: still not a run
    with pytest.raises(UserError, match="neither a performer package"):
        evaluate.evaluate(empty, clip / "video.mp4")
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "manifest.json").write_text("[]")                            # a package that fails its checks
    with pytest.raises(UserError, match="manifest"):
        evaluate.evaluate(pkg, clip / "video.mp4")
    from engine import cli

    assert cli.main(["eval", str(empty), str(clip / "video.mp4"), "--json", str(tmp_path / "o.json")]) == 2
    assert not (tmp_path / "o.json").exists()


def test_eval_scores_the_shipped_package(clip, tmp_path):
    """The sample package through the runtime: the JSON names the package, its backend and manifest hash."""
    from export.package import SAMPLE_PACKAGE, open_package, sha256

    r = evaluate.evaluate(SAMPLE_PACKAGE, clip / "video.mp4", gt=clip / "gt.npz", max_frames=12,
                          baseline="teacher", backend="cpu")
    assert r["tracker"] == "package" and r["model"] == str(SAMPLE_PACKAGE)
    assert r["package_sha256"] == sha256(SAMPLE_PACKAGE / "manifest.json")
    assert r["backend"].startswith("onnxruntime/CPUExecutionProvider")
    base = r["baseline"]
    assert base["tracker"] == "baseline" and base["model"] == "teacher"
    assert r["nme"] != base["nme"] and r["motion_mm"] != base["motion_mm"]    # two different trackers ran
    assert r["flow"] == 1.0 and base["flow"] is None          # the package's loop fuses flow; the teacher has no refit
    # its ARKit values ramp to the range it read on its enrollment, as in the studio; the teacher's to GAINS'
    assert r["expression_ranges"] == open_package(SAMPLE_PACKAGE).expression_ranges != None
    assert base["expression_ranges"] is None
    off = evaluate.evaluate(SAMPLE_PACKAGE, clip / "video.mp4", max_frames=12, backend="cpu", flow=0.0)
    assert off["flow"] == 0.0 and off["stability_unguarded"] != r["stability_unguarded"]     # --flow 0: without it


def test_bad_input(tmp_path, clip):
    with pytest.raises(UserError, match="no such file"):
        evaluate.evaluate("teacher", tmp_path / "missing.mp4")
    with pytest.raises(UserError, match="no such model"):
        evaluate.evaluate(tmp_path / "no_run", clip / "video.mp4")
    with pytest.raises(UserError, match="ground-truth"):
        evaluate.evaluate("teacher", clip / "video.mp4", gt=tmp_path / "gt.npz")
