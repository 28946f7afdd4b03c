"""The synthetic performer's contract and enrollment on it (with ground truth) and on real footage."""
import json

import numpy as np
import pytest

from engine import enroll, metrics, prompts, synth, video
from engine.detection import Crop
from engine.tracking import frame_pose


@pytest.fixture(scope="module")
def lab_clip(tmp_path_factory):
    return synth.write_clip(tmp_path_factory.mktemp("lab"), frames=40, domain="lab", seed=3, size=(320, 240))


def test_synth_contract_and_determinism(lab_clip, tmp_path):
    gt = np.load(lab_clip / "gt.npz")
    assert gt["G"].shape == (40, 468, 3) and gt["H"].shape == (40, 6) and gt["expr"].shape == (40, 8)
    assert list(gt["expr_names"]) == list(synth.expressions.NAMES)
    assert gt["gaze"].shape == (40, 2, 2) and np.abs(gt["gaze"]).max() <= np.radians(25.0) + 1e-6
    again = synth.write_clip(tmp_path, frames=40, domain="lab", seed=3, size=(320, 240))
    gt2 = np.load(again / "gt.npz")
    for key in ("G", "H", "expr", "gaze"):
        np.testing.assert_array_equal(gt[key], gt2[key])
    a, b = list(video.frames(lab_clip / "video.mp4")), list(video.frames(again / "video.mp4"))
    assert len(a) == len(b) == 40
    assert max(np.abs(x.astype(int) - y).max() for x, y in zip(a, b)) == 0


def test_wild_domain_differs_from_lab(tmp_path):
    lab = synth.write_clip(tmp_path / "lab", frames=3, domain="lab", seed=5, size=(320, 240))
    wild = synth.write_clip(tmp_path / "wild", frames=3, domain="wild", seed=5, size=(320, 240))
    np.testing.assert_array_equal(np.load(lab / "gt.npz")["H"], np.load(wild / "gt.npz")["H"])
    f_lab, f_wild = next(video.frames(lab / "video.mp4")), next(video.frames(wild / "video.mp4"))
    border = lambda f: np.concatenate([f[:20].reshape(-1, 3), f[-20:].reshape(-1, 3)])
    assert border(f_lab).std(0).mean() < 12 < border(f_wild).std(0).mean()    # plain vs cluttered backdrop


def test_enrollment_recovers_synthetic_pose(lab_clip, tmp_path):
    report = enroll.enroll([lab_clip / "video.mp4"], tmp_path / "run", texture_size=128)
    assert report["frames_total"] == 40 and report["frames_kept"] == 40
    gt = np.load(lab_clip / "gt.npz")
    # Enrollment keeps H in its crop's pixels (I2ZNet learns it from the crop); the crop turns with the head.
    H_crop = np.load(tmp_path / "run" / "enrollment" / "H.npy")
    boxes = np.load(tmp_path / "run" / "enrollment" / "crop_boxes.npy")
    H = np.array([frame_pose(h, Crop(*box), 256) for h, box in zip(H_crop, boxes)])
    err = np.asarray(metrics.pose_error_deg(H, gt["H"])["per_frame"])
    assert np.median(err) < 4.0 and err.max() < 10.0, err
    assert metrics.vertex_error(np.load(tmp_path / "run" / "enrollment" / "G.npy"), gt["G"])["mean"] < 0.4  # cm
    T = np.load(tmp_path / "run" / "enrollment" / "textures.npy")
    W = np.load(tmp_path / "run" / "enrollment" / "weights.npy")
    assert T.shape == (40, 128, 128, 3) and W.shape == (40, 128, 128) and (W > 128).mean() > 0.2
    for png in ("contact_sheet.png", "mean_texture.png"):
        assert (tmp_path / "run" / png).stat().st_size > 1000


def test_a_guided_clip_carries_its_prompts_and_enrollment_keeps_them(tmp_path):
    """`synth --script enroll` writes the prompt timeline beside its video; the enrollment keeps the prompt of each
    of its frames (where the export measures ranges and the teacher's view bias); a random clip rendered over it
    takes the timeline away."""
    clip = synth.write_clip(tmp_path / "clip", frames=30, domain="lab", seed=1, size=(320, 240), script="enroll")
    codes = prompts.recorded(clip / "video.mp4", 30)
    assert prompts.keys_of(codes).tolist() == prompts.frame_keys(30, synth.FPS)
    report = enroll.enroll([clip / "video.mp4"], tmp_path / "run", texture_size=64)
    kept = np.load(tmp_path / "run" / "enrollment" / "source.npy")[:, 1]
    assert np.load(tmp_path / "run" / "enrollment" / "prompt.npy").tolist() == codes[kept].tolist()
    assert report["frames_resting"] == np.isin(prompts.keys_of(codes[kept]), prompts.HOLD_STILL).sum() > 0
    synth.write_clip(tmp_path / "clip", frames=3, domain="lab", seed=1, size=(320, 240))
    assert prompts.recorded(clip / "video.mp4", 3) is None


def test_enrollment_on_real_footage(shared_data, tmp_path):
    clip = shared_data / "videos" / "lily_aldridge" / "vox2_517600055_indoor.mp4"
    report = enroll.enroll([clip], tmp_path / "run", max_frames=30)
    saved = json.loads((tmp_path / "run" / "report.json").read_text())
    assert saved["frames_total"] == 30 and saved["frames_kept"] >= 28
    assert {"frames_total", "frames_kept", "ms_per_frame"} <= saved.keys() and report == saved
    lm = np.load(tmp_path / "run" / "enrollment" / "landmarks.npy")
    # The crop rule frames the face the same way every frame: landmarks fill ~2/3 of the 256² crop.
    extent = lm[..., :2].max(1) - lm[..., :2].min(1)
    assert np.all((extent.max(1) > 140) & (extent.max(1) < 200))


def test_enrollment_with_several_faces_tracks_the_largest_and_counts(shared_data, tmp_path):
    import cv2

    photo = cv2.imread(str(shared_data / "images" / "faces" / "face_recognition" / "two_people.jpg"))
    clip = tmp_path / "two.mp4"
    with video.VideoWriter(clip, 25) as w:
        for _ in range(3):
            w.write(cv2.cvtColor(photo, cv2.COLOR_BGR2RGB))
    report = enroll.enroll([clip], tmp_path / "run", texture_size=64)
    assert report["frames_kept"] == 3 and report["frames_several_faces"] >= 1


def test_video_writer_accepts_odd_frame_sizes(tmp_path):
    with video.VideoWriter(tmp_path / "odd.mp4", 25) as w:
        for i in range(3):
            w.write(np.full((17, 33, 3), 40 * i, np.uint8))
    frames = list(video.frames(tmp_path / "odd.mp4"))
    assert len(frames) == 3 and frames[0].shape == (18, 34, 3)     # padded by one row and column, not rescaled
