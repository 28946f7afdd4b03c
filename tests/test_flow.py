"""engine.flow: the teacher's landmarks fused with optical flow from the previous frame (TrackOptions.flow)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from engine import canonical, metrics
from engine.detection import Crop
from engine.flow import LandmarkFlow

SIZE = 192


def texture(seed: int = 0, size: int = 400) -> np.ndarray:
    """A skin-like random texture: smoothed noise at a few scales, RGB uint8."""
    rng = np.random.default_rng(seed)
    img = sum(cv2.GaussianBlur(rng.normal(0, 1, (size, size)), (0, 0), s) * s for s in (1.5, 4.0, 10.0))
    img = (img - img.min()) / np.ptp(img) * 200 + 25
    return np.repeat(img[..., None], 3, -1).astype(np.uint8)


def face_points() -> np.ndarray:
    """The mean face's 468 points laid out over the middle of a 192² crop."""
    X = canonical.load()[0][:, :2].astype(np.float64)
    X = (X - X.mean(0)) / np.ptp(X, 0).max() * 110
    return X + SIZE / 2


def seen(frame: np.ndarray, crop: Crop) -> np.ndarray:
    return crop.apply(frame, SIZE)


def step(flow: LandmarkFlow, frame: np.ndarray, crop: Crop, landmarks: np.ndarray, keep: bool = True) -> np.ndarray:
    """One frame of the loop's use: follow the crop, fuse the landmarks, keep the answer."""
    flow.follow(seen(frame, crop), crop)
    fused = flow.fuse(landmarks)
    if keep:
        flow.keep()
    return fused


def test_flow_averages_the_teachers_noise_away_without_lagging_a_moving_face():
    """A textured face drifting 0.8 px a frame; the teacher reads each point with 0.4 px of independent noise. The
    fused points are nearer the truth than the teacher's (the noise variance falls towards 1/(1 + 2w)) and carry no
    lag: their mean error along the motion is ~0."""
    rng = np.random.default_rng(1)
    frame0, crop = texture(), Crop(200.0, 200.0, SIZE)
    flow = LandmarkFlow(1.0, SIZE)
    truth0 = face_points()
    raw_err, fused_err = [], []
    for t in range(40):
        shift = np.array([0.8 * t, 0.3 * t])
        frame = cv2.warpAffine(frame0, np.float64([[1, 0, shift[0]], [0, 1, shift[1]]]), frame0.shape[1::-1],
                               flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        truth = truth0 + shift
        teacher = truth + rng.normal(0, 0.4, truth.shape)
        fused = step(flow, frame, crop, teacher)
        if t >= 5:
            raw_err.append(teacher - truth), fused_err.append(fused - truth)
    raw, fused = np.array(raw_err), np.array(fused_err)
    rms = lambda e: float(np.sqrt((e ** 2).sum(-1).mean()))
    assert rms(fused) < 0.75 * rms(raw)                            # 1/√3 = 0.58 with exact flow
    lag = (fused.reshape(-1, 2) @ np.array([0.8, 0.3])) / np.hypot(0.8, 0.3)
    assert abs(lag.mean()) < 0.05                                   # px: no trailing behind the motion


def test_a_point_the_flow_disagrees_with_is_the_teachers_and_weight_zero_is_the_teacher():
    frame, crop = texture(2), Crop(200.0, 200.0, SIZE)
    truth = face_points()
    flow = LandmarkFlow(1.0, SIZE)
    assert np.array_equal(step(flow, frame, crop, truth), truth)    # nothing kept yet: the teacher's own points
    jumped = truth.copy()
    jumped[100] += [6.0, 0.0]                                       # the teacher saw this point move; the pixels did not
    jumped[200] += [0.5, 0.0]                                       # within the gate: averaged with the flow
    fused = step(flow, frame, crop, jumped, keep=False)
    assert np.allclose(fused[100], jumped[100])
    assert fused[200][0] == pytest.approx(truth[200][0] + 0.25, abs=0.05)
    flow.reset()
    assert np.array_equal(step(flow, frame, crop, jumped), jumped)
    off = LandmarkFlow(0.0, SIZE)
    step(off, frame, crop, truth)
    assert np.array_equal(step(off, frame, crop, jumped), jumped)


def test_a_moved_crop_sees_the_previous_frame_through_the_new_one():
    """The face stays still in the frame while the crop moves by 4 px and turns by 0.02 rad (the dead band let go): the
    previous points are carried into the new crop, so fusing clean landmarks returns them unchanged."""
    frame = texture(3)
    a, b = Crop(200.0, 200.0, SIZE), Crop(204.0, 198.0, SIZE, 0.02)
    in_frame = a.to_frame(face_points(), SIZE)
    flow = LandmarkFlow(1.0, SIZE)
    step(flow, frame, a, a.to_crop(in_frame, SIZE))
    clean = b.to_crop(in_frame, SIZE)
    fused = step(flow, frame, b, clean)
    assert np.abs(fused - clean).mean() < 0.05 and np.abs(fused - clean).max() < 0.3


def test_options_reject_a_negative_flow_weight():
    from engine.tracking import TrackOptions

    with pytest.raises(ValueError, match="flow"):
        TrackOptions(flow=-1.0)


def test_the_sample_package_is_steadier_with_flow_and_moves_as_much(shared_data):
    """End to end on real video through the shipped package: with the flow the mesh is steadier (Eq. 10,
    unguarded), moves as much, and lands where it did without it (the fit is still to this frame's pixels)."""
    from engine import video
    from engine.tracking import FaceLoop, TrackOptions
    from export.runtime import Tracker

    clip = shared_data / "videos/obama/obama_weekly_address_window_256.mov"
    frames = [f for _, f in zip(range(60), video.frames(clip))]
    runs = {}
    for w in (0.0, 1.0):
        loop = FaceLoop(Tracker("export/sample_package", "cpu", 1).model, TrackOptions(flow=w, eyes=False))
        results = [loop(f) for f in frames]
        runs[w] = (np.array([r.G for r in results]), np.array([r.points for r in results]))
    (G0, p0), (G1, p1) = runs[0.0], runs[1.0]
    steady0, steady1 = (metrics.temporal_stability(G)["stability_unguarded"] for G in (G0, G1))
    assert steady1 < 0.95 * steady0
    assert metrics.motion_mm(G1) > 0.8 * metrics.motion_mm(G0)
    assert np.linalg.norm(p1 - p0, axis=-1).mean() < 1.0            # frame px on a 256² clip


def test_the_sample_package_is_steadier_near_its_last_frame_and_a_reset_forgets_it(shared_data, monkeypatch):
    """End to end through the shipped package: the refit's temporal prior (engine.tracking.REFIT_TEMPORAL) makes the
    mesh steadier (Eq. 10, unguarded) while it moves nearly as much and lands where it did; after `reset` the loop
    answers the clip exactly as a fresh one does (no last frame leaks into a new face)."""
    from engine import tracking, video
    from engine.tracking import FaceLoop, TrackOptions
    from export.runtime import Tracker, package_basis

    clip = shared_data / "videos/obama/obama_weekly_address_window_256.mov"
    frames = [f for _, f in zip(range(60), video.frames(clip))]
    model = Tracker("export/sample_package", "cpu", 1).model
    shipped = tracking.REFIT_TEMPORAL
    runs = {}
    for temporal in (0.0, shipped):
        monkeypatch.setattr(tracking, "REFIT_TEMPORAL", temporal)
        model.expression_basis = package_basis(model.package)
        loop = FaceLoop(model, TrackOptions(eyes=False))
        results = [loop(f) for f in frames]
        runs[temporal] = (np.array([r.G for r in results]), np.array([r.points for r in results]))
    (G0, p0), (G1, p1) = runs[0.0], runs[shipped]
    steady0, steady1 = (metrics.temporal_stability(G)["stability_unguarded"] for G in (G0, G1))
    assert steady1 < 0.99 * steady0          # deterministic: the 240-frame sample 0.96×, the guided one 0.98×
    assert metrics.motion_mm(G1) > 0.9 * metrics.motion_mm(G0)
    assert np.linalg.norm(p1 - p0, axis=-1).mean() < 0.5            # frame px on a 256² clip
    loop.reset()
    np.testing.assert_allclose(np.array([loop(f).G for f in frames[:5]]), G1[:5], atol=1e-6)
