import numpy as np

from engine import canonical, expressions, synth


def test_fields_move_the_right_places():
    B = dict(zip(expressions.NAMES, expressions.basis()))
    S, mirror = canonical.load()
    assert B["jaw_open"][152, 1] > 1.0 and not B["jaw_open"][13].any()  # chin drops, upper lip stays
    assert B["smile_left"][291, 0] > 0.3 and B["smile_left"][291, 1] < -0.3   # subject's left corner: out, up
    assert np.abs(B["smile_left"][61]).max() < 1e-3
    lid, low = expressions.UPPER_LID["left"][0], expressions.LOWER_LID["left"]
    closed = S[lid, 1] + B["blink_left"][lid, 1]
    assert abs(closed - S[low, 1]) < 0.15 and np.abs(B["blink_left"][low]).max() < 0.2
    assert (B["brow_raise"][list(expressions.BROWS), 1] < -0.5).all()
    assert B["pucker"][0, 2] < -0.5


def test_left_right_fields_mirror_each_other():
    B = dict(zip(expressions.NAMES, expressions.basis()))
    _, mirror = canonical.load()
    flip = np.array([-1, 1, 1])
    for a, b in (("smile_left", "smile_right"), ("blink_left", "blink_right")):
        np.testing.assert_allclose(B[a], (B[b] * flip)[mirror], atol=1e-4)


def test_tracks_are_smooth_bounded_and_seeded():
    rng = lambda: np.random.default_rng(7)
    H1 = synth.pose_path(rng(), 300, (640, 480), 17.0)
    H2 = synth.pose_path(rng(), 300, (640, 480), 17.0)
    np.testing.assert_array_equal(H1, H2)
    deg = np.degrees(np.abs(H1[:, 1:4])).max(0)
    assert (deg <= synth.POSE_LIMITS_DEG + 1e-6).all() and (deg > 0.5 * synth.POSE_LIMITS_DEG).all()
    assert np.degrees(np.abs(np.diff(H1[:, 1:4], axis=0))).max() < 3.0    # ≤ 3° per frame at 25 fps
    expr = synth.expression_track(rng(), 300)
    assert expr.shape == (300, len(expressions.NAMES)) and expr.min() >= 0 and expr.max() <= 1
    assert (expr.max(0) > 0.3).sum() >= 6                                   # most expressions show up
