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
