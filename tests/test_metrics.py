import math

import numpy as np
import pytest

from engine import metrics
from engine.pose import rotation_matrix


def _line(T=20, V=5, speeds=None, seed=0):
    """Vertices moving on straight lines; `speeds` [T] scales the step per frame (constant when None)."""
    rng = np.random.default_rng(seed)
    start, direction = rng.normal(size=(V, 3)), rng.normal(size=(V, 3))
    s = np.cumsum(np.ones(T) if speeds is None else speeds)
    return start + s[:, None, None] * direction


def test_straight_lines_are_perfect():
    for G in (_line(), _line(speeds=np.random.default_rng(1).uniform(0.1, 3.0, 20))):
        r = metrics.temporal_stability(G)
        assert r["stability"] == pytest.approx(1.0, abs=1e-12)
        assert r["stability_unguarded"] == pytest.approx(1.0, abs=1e-12)
        assert r["stability_excluded"] == 0.0
        assert len(r["per_frame"]) == 18


def test_jitter_scores_above_one():
    G = _line() + np.random.default_rng(2).normal(scale=0.5, size=(20, 5, 3))
    assert metrics.temporal_stability(G)["stability"] > 1.05


def test_hand_computed_value():
    # One vertex in 2D: (0,0) → (1,0) → (1,1) → (3,1). Frame 1: (1 + 1)/√2; frame 2: (1 + 2)/√5.
    P = np.array([[[0, 0]], [[1, 0]], [[1, 1]], [[3, 1]]], float)
    r = metrics.stability_image(P)
    assert r["per_frame"] == pytest.approx([2 / math.sqrt(2), 3 / math.sqrt(5)])
    assert r["stability"] == pytest.approx((math.sqrt(2) + 3 / math.sqrt(5)) / 2)


def test_guard_excludes_still_vertices_and_reports_share():
    G = _line(T=10, V=4)
    G[:, 0] = G[0, 0]  # vertex 0 never moves: 0/0 every frame
    r = metrics.temporal_stability(G)
    assert r["stability"] == pytest.approx(1.0)
    assert r["stability_excluded"] == pytest.approx(0.25)
    assert r["stability_unguarded"] == pytest.approx(1.0)  # ε in numerator and denominator: 0/0 → 1
    # Everything still: every frame is fully excluded and counts as 1.0, NaN-free.
    r = metrics.temporal_stability(np.zeros((6, 3, 3)))
    assert r["per_frame"] == [1.0] * 4 and r["stability_excluded"] == 1.0


def test_lost_frames_break_the_sequence():
    G = _line(T=12)
    G[5] = np.nan
    r = metrics.temporal_stability(G)
    assert r["frame_index"] == [1, 2, 3, 7, 8, 9, 10] and r["stability"] == pytest.approx(1.0)


def test_nme_exact():
    ref = np.zeros((2, 68, 2))
    ref[:, 36], ref[:, 45] = (100, 200), (180, 200)  # eye distance 80 px
    pred = ref[:, 17:].copy()
    pred[0] += (3, 4)  # every point 5 px off → 6.25 %
    pred[1, :, 0] += 8  # 8 px off → 10 %
    r = metrics.nme(pred, ref)
    assert r["per_frame_nme"] == pytest.approx([6.25, 10.0])
    assert r["nme"] == pytest.approx(8.125)
    assert r["reprojection_px"] == pytest.approx(6.5)
    # A frame without a reference face is left out.
    ref[1] = np.nan
    assert metrics.nme(pred, ref)["nme"] == pytest.approx(6.25) and metrics.nme(pred, ref)["frames"] == 1
    # A reference on another face (boxes barely overlap) is left out too, and counted.
    ref[1] = ref[0] + 150
    r = metrics.nme(pred, ref)
    assert r["frames"] == 1 and r["mismatched"] == 1 and r["nme"] == pytest.approx(6.25)


def test_nme_against_the_ground_truth():
    """The 51 inner points against the truth's own, over the truth's eye-corner distance; lost frames left out."""
    true = np.zeros((3, 51, 2))
    true[:, 19], true[:, 28] = (100, 200), (180, 200)    # iBUG 36 and 45: 80 px apart
    pred = true.copy()
    pred[0] += (3, 4)                                   # 5 px → 6.25 %
    pred[1, :, 0] += 8                                  # 8 px → 10 %
    pred[2] = np.nan                                    # lost
    assert metrics.nme_gt(pred, true) == pytest.approx(8.125)
    assert metrics.nme_gt(true, true) == 0.0 and metrics.nme_gt(pred[2:], true[2:]) is None
    with pytest.raises(ValueError):
        metrics.nme_gt(pred[:, :50], true[:, :50])


def test_vertex_and_pose_error():
    G = np.zeros((3, 4, 3))
    assert metrics.vertex_error(G + (0, 3, 4), G)["mean"] == pytest.approx(5.0)
    H_gt = np.array([[1.0, 0.3, -0.2, 0.1, 5, 6]] * 2)
    # Compose a known 10° rotation about an arbitrary axis with the ground truth, then read its angles back.
    from engine.pose import euler_angles

    axis = np.array([1.0, 2.0, 2.0]) / 3.0
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    th = math.radians(10)
    Q = np.eye(3) + math.sin(th) * K + (1 - math.cos(th)) * K @ K
    H_pred = H_gt.copy()
    H_pred[:, 1:4] = euler_angles(Q @ rotation_matrix(H_gt[:, 1:4]))
    r = metrics.pose_error_deg(H_pred, H_gt)
    assert r["per_frame"] == pytest.approx([10.0, 10.0]) and r["mean"] == pytest.approx(10.0)
    assert metrics.pose_error_deg(H_gt, H_gt)["mean"] == pytest.approx(0.0, abs=1e-6)


def test_one_euro_smooths_noise_and_follows_a_step_with_lag():
    noisy = 2.0 + np.random.default_rng(3).normal(scale=0.1, size=(300, 2, 3))
    f = metrics.one_euro(min_cutoff=1.0, beta=0.0)
    smooth = f.run(noisy)
    assert smooth.shape == noisy.shape
    assert smooth[30:].var() < 0.2 * noisy[30:].var()
    step = np.r_[np.zeros(30), np.ones(60)]
    out = metrics.OneEuro(min_cutoff=1.0, beta=0.0).run(step)
    assert out[30] < 0.5  # lags behind the step ...
    assert np.all(np.diff(out) >= -1e-12) and out[-1] > 0.99  # ... rises monotonically and gets there
    fast = metrics.OneEuro(min_cutoff=1.0, beta=1.0).run(step)
    assert fast[31] > out[31]  # speed raises the cutoff: less lag


def test_dlib_reference_on_obama(shared_data):
    cv2 = pytest.importorskip("cv2")
    pytest.importorskip("dlib")
    from engine.reference import DlibReference

    ref = DlibReference()
    img = cv2.imread(str(shared_data / "images/faces/face_recognition/obama.jpg"))[:, :, ::-1]
    pts = ref.landmarks(img)
    assert pts is not None and pts.shape == (68, 2)
    box = ref.face(img)
    pad = 0.15 * box.width()  # the jaw line may reach slightly past the HOG box
    assert np.all(pts[:, 0] > box.left() - pad) and np.all(pts[:, 0] < box.right() + pad)
    assert np.all(pts[:, 1] > box.top() - pad) and np.all(pts[:, 1] < box.bottom() + pad)
    assert ref.landmarks(np.zeros((120, 160, 3), np.uint8)) is None


# ---------------------------------------------------------------------------- frozen or jittery face metrics
def test_motion_mm_hand_computed_and_lost_frames():
    # Two frames, two vertices; vertex 0 moves 0.2 cm along x. Mean shape: its midpoint, 0.1 cm from either
    # frame; vertex 1 is still. Mean over 2 frames × 2 vertices of (0.1, 0.1, 0, 0) cm = 0.05 cm = 0.5 mm.
    G = np.zeros((2, 2, 3))
    G[1, 0, 0] = 0.2
    assert metrics.motion_mm(G) == pytest.approx(0.5)
    lost = np.full((1, 2, 3), np.nan)
    assert metrics.motion_mm(np.concatenate([G, lost])) == pytest.approx(0.5)  # a lost frame is skipped
    assert metrics.motion_mm(lost) is None
    assert metrics.motion_mm(np.repeat(G[:1], 5, 0)) == 0.0


def test_motion_ratio_frozen_same_and_common_frames():
    moving = _line(T=10)
    frozen = np.repeat(moving[:1], 10, 0)
    assert metrics.motion_ratio(frozen, moving) == 0.0
    assert metrics.motion_ratio(moving, moving) == pytest.approx(1.0)
    assert metrics.motion_ratio(moving, frozen) is None  # the reference does not move: no ratio
    # A scaled-up copy moves twice as much (around a mean shape that scales with it).
    assert metrics.motion_ratio(2 * moving, moving) == pytest.approx(2.0)
    # Only frames found by both count: ours lost the second half, so the ref is measured on the first half too.
    ours = moving.copy()
    ours[5:] = np.nan
    assert metrics.motion_ratio(ours, moving) == pytest.approx(1.0)
    assert metrics.motion_ratio(np.full_like(moving, np.nan), moving) is None
    with pytest.raises(ValueError):
        metrics.motion_ratio(moving[:5], moving)


def test_stability_common_identical_trackers_match_stability_terms():
    G = _line(T=20, V=6) + np.random.default_rng(4).normal(scale=0.2, size=(20, 6, 3))
    r = metrics.stability_common(G, G)
    expected = metrics.temporal_stability(G)["stability_terms"]
    assert r["a"]["stability"] == r["b"]["stability"] == pytest.approx(expected)
    assert r["a"]["frozen_share"] == r["b"]["frozen_share"] == 0.0
    assert r["terms"] == r["a"]["terms"] == 18 * 6 and r["excluded"] == 0.0


def test_stability_common_hand_computed():
    # One 2D vertex per tracker. a: (0,0) → (1,0) → (1,1) → (3,1), terms (1+1)/√2 and (1+2)/√5 (see above).
    # b: a straight line, terms 1 and 1.
    a = np.array([[[0, 0]], [[1, 0]], [[1, 1]], [[3, 1]]], float)
    b = np.array([[[0, 0]], [[1, 0]], [[2, 0]], [[3, 0]]], float)
    r = metrics.stability_common(a, b)
    assert r["a"]["stability"] == pytest.approx((math.sqrt(2) + 3 / math.sqrt(5)) / 2)
    assert r["b"]["stability"] == pytest.approx(1.0)
    assert r["terms"] == 2 and r["excluded"] == 0.0


def test_stability_common_jitter_raises_the_value():
    G = _line(T=30, V=8)
    jittery = G + np.random.default_rng(5).normal(scale=0.3, size=G.shape)
    r = metrics.stability_common(G, jittery)
    assert r["a"]["stability"] == pytest.approx(1.0)
    assert r["b"]["stability"] > 1.05
    assert r["a"]["frozen_share"] == r["b"]["frozen_share"] == 0.0


def test_frozen_mesh_never_reads_as_stable():
    moving = _line(T=15, V=5)
    frozen = np.repeat(moving[:1], 15, 0)
    r = metrics.stability_common(frozen, moving)
    assert r["a"]["stability"] is None and r["a"]["frozen_share"] == 1.0 and r["a"]["terms"] == 0
    assert r["b"]["stability"] == pytest.approx(1.0) and r["b"]["frozen_share"] == 0.0
    # Alone, Eq. 10 guards every still vertex out and the frozen mesh reads a perfect 1.0: the reason for this.
    assert metrics.temporal_stability(frozen)["stability"] == 1.0
    # Almost frozen: a smooth drift far below the guard has straight (perfect) paths, but is still "frozen".
    drift = frozen + 1e-7 * np.arange(15)[:, None, None]
    r = metrics.stability_common(drift, moving)
    assert r["a"]["stability"] is None and r["a"]["frozen_share"] == 1.0 and r["a"]["terms"] == 13 * 5
    # Frozen on one vertex of five (the other four move): a minority, so a stability is given, over the four.
    some = moving.copy()
    some[:, 0] = moving[0, 0]
    r = metrics.stability_common(some, moving)
    assert r["a"]["frozen_share"] == pytest.approx(0.2) and r["a"]["stability"] == pytest.approx(1.0)
    assert r["a"]["terms"] == 13 * 4 and r["terms"] == 13 * 5
    # Neither moves: nothing is kept, no evidence either way.
    r = metrics.stability_common(frozen, frozen)
    assert r["terms"] == 0 and r["excluded"] == 1.0 and r["a"]["stability"] is None


def test_stability_common_lost_frames_and_errors():
    G = _line(T=12)
    H = G.copy()
    H[5] = np.nan  # lost by b only: no triplet around frame 5 counts for either
    r = metrics.stability_common(G, H)
    assert r["terms"] == 7 * 5 and r["a"]["stability"] == r["b"]["stability"] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        metrics.stability_common(G, G[:10])
    with pytest.raises(ValueError):
        metrics.stability_common(G, np.full_like(G, np.nan))


def _rotation(axis, deg):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    th = math.radians(deg)
    return np.eye(3) + math.sin(th) * K + (1 - math.cos(th)) * K @ K


def test_vertex_error_nonrigid_removes_similarity():
    gt = np.random.default_rng(6).normal(size=(3, 30, 3))
    R = _rotation((1, 2, 2), 25)
    pred = 1.7 * gt @ R.T + (3.0, -2.0, 5.0)
    assert metrics.vertex_error(pred, gt)["mean"] > 1.0
    r = metrics.vertex_error_nonrigid(pred, gt)
    assert r["mean"] == pytest.approx(0.0, abs=1e-9) and len(r["per_frame"]) == 3
    assert np.allclose(metrics.similarity_align(pred, gt), gt)
    # A mirror image is not a similarity: no reflection is allowed, so it keeps an error.
    assert metrics.vertex_error_nonrigid(gt * (-1, 1, 1), gt)["mean"] > 0.1
    # Shape error survives: one vertex 1 cm off on a frame where nothing else differs stays visible.
    bumped = gt.copy()
    bumped[0, 0, 0] += 1.0
    per = metrics.vertex_error_nonrigid(bumped, gt)["per_frame"]
    assert per[0] > 0.01 and per[1] == pytest.approx(0.0, abs=1e-9)
    # A frame with NaN in either input is skipped.
    pred[1] = np.nan
    r = metrics.vertex_error_nonrigid(pred, gt)
    assert math.isnan(r["per_frame"][1]) and r["mean"] == pytest.approx(0.0, abs=1e-9)


def test_pearson_r():
    assert metrics.pearson_r([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)  # Σdadb = 1, Σda² = Σdb² = 2
    assert metrics.pearson_r([1, np.nan, 2, 3, 5], [1, 4, 3, 2, np.nan]) == pytest.approx(0.5)  # same 3 pairs
    t = np.arange(10.0)
    assert metrics.pearson_r(t, 3 * t + 1) == pytest.approx(1.0)
    assert metrics.pearson_r(t, -t) == pytest.approx(-1.0)
    assert metrics.pearson_r(t, np.full(10, 0.1)) is None  # flat prediction: no correlation, not 0
    assert metrics.pearson_r([1, 2], [2, 1]) is None  # fewer than 3 points
    with pytest.raises(ValueError):
        metrics.pearson_r(t, t[:5])


def test_expression_r_and_gt_channels():
    t = np.arange(6.0)
    truth = {"jaw_open": t, "pucker": t, "blink_left": t}
    pred = {"jaw_open": 2 * t, "pucker": np.zeros(6), "extra": t}
    assert metrics.expression_r(pred, truth) == {"jaw_open": pytest.approx(1.0), "pucker": None, "blink_left": None}

    assert set(metrics.GT_TO_ARKIT) == {"jaw_open", "smile_left", "smile_right", "blink_left", "blink_right",
                                        "brow_raise", "brow_frown", "pucker"}
    arkit = {"browInnerUp": [0.3, 0.6], "browOuterUpLeft": [0.0, 0.3], "browOuterUpRight": [0.6, 0.0],
             "browDownLeft": [1.0, 0.0], "eyeBlinkLeft": [0.2, 0.4], "cheekPuff": [1.0, 1.0]}
    gt = metrics.gt_channels(arkit)
    assert set(gt) == {"brow_raise", "brow_frown", "blink_left"}  # channels with no ARKit name present: left out
    assert gt["brow_raise"] == pytest.approx([0.3, 0.3])  # (0.3+0+0.6)/3, (0.6+0.3+0)/3
    assert gt["brow_frown"] == pytest.approx([1.0, 0.0])  # browDownRight missing: skipped
    assert gt["blink_left"] == pytest.approx([0.2, 0.4])
