import numpy as np
import pytest
import torch

from engine import canonical, pose


def random_H(rng, n):
    return np.column_stack([rng.uniform(5, 12, n), rng.uniform(-0.6, 0.6, (n, 3)), rng.uniform(50, 200, (n, 2))])


def test_euler_round_trip_and_orthonormal():
    rng = np.random.default_rng(0)
    ang = rng.uniform(-1.2, 1.2, (100, 3))
    R = pose.rotation_matrix(ang)
    np.testing.assert_allclose(R @ R.swapaxes(-1, -2), np.broadcast_to(np.eye(3), R.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-12)
    np.testing.assert_allclose(pose.euler_angles(R), ang, atol=1e-9)


def test_rotation_order_is_roll_yaw_pitch():
    # yaw turns the nose (−z) towards +x or −x; roll alone keeps z.
    R = pose.rotation_matrix(np.array([0.0, np.pi / 2, 0.0]))
    np.testing.assert_allclose(R @ [0, 0, -1.0], [-1, 0, 0], atol=1e-12)
    Rz = pose.rotation_matrix(np.array([0.0, 0.0, 0.3]))
    assert Rz[2, 2] == pytest.approx(1.0)


def test_numpy_and_torch_agree():
    rng = np.random.default_rng(1)
    G, _ = canonical.load()
    H = random_H(rng, 4)
    ref = pose.project(G.astype(np.float64), H)
    out = pose.project(torch.tensor(G, dtype=torch.float64), torch.tensor(H))
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-9)
    assert ref.shape == (4, 468, 2)
    for i in range(4):                          # one numpy pose takes a fast path: the same answer, the same dtype
        np.testing.assert_allclose(pose.project(G.astype(np.float64), H[i]), ref[i], atol=1e-9)
        np.testing.assert_allclose(pose.rotation_matrix(H[i, 1:4]), pose.rotation_matrix(H[i:i + 1, 1:4])[0], atol=1e-12)
    one = H[0].astype(np.float32)
    assert pose.rotation_matrix(one[1:4]).dtype == np.float32 and pose.transform(G, one).dtype == np.float32


def test_procrustes_recovers_pose_and_shape():
    rng = np.random.default_rng(2)
    X, _ = canonical.load()
    X = X.astype(np.float64)
    H = random_H(rng, 5)
    G_true = X + rng.normal(0, 0.1, (5, *X.shape))   # an expression-like deformation
    Y = pose.transform(G_true, H)
    H_fit, G_fit = pose.pose_from_landmarks(X, Y)
    np.testing.assert_allclose(H_fit[:, 1:4], H[:, 1:4], atol=0.02)
    np.testing.assert_allclose(H_fit[:, 0] / H[:, 0], 1.0, atol=0.01)
    # G is exact up to the small similarity the deformation induces: re-posing it gives Y back.
    np.testing.assert_allclose(pose.transform(G_fit, H_fit)[..., :2], Y[..., :2], atol=1e-6)


def test_procrustes_is_differentiable():
    X, _ = canonical.load()
    X = torch.tensor(X, dtype=torch.float64)
    H = torch.tensor([8.0, 0.1, -0.2, 0.05, 128.0, 120.0], dtype=torch.float64, requires_grad=True)
    Y = pose.transform(X, H)
    H_fit, _ = pose.pose_from_landmarks(X, Y)
    H_fit.sum().backward()
    assert torch.isfinite(H.grad).all() and H.grad.abs().sum() > 0


def test_view_vector_faces_camera_when_frontal():
    v = pose.view_vector(np.array([1.0, 0, 0, 0, 0, 0]))
    np.testing.assert_allclose(v, [0, 0, -1], atol=1e-12)


def test_fit_refines_pose_in_2d_and_reprojects_exactly():
    rng = np.random.default_rng(3)
    X, _ = canonical.load()
    X = X.astype(np.float64)
    H = np.array([9.0, 0.1, 0.6, -0.1, 128.0, 120.0])
    Y = pose.transform(X + rng.normal(0, 0.05, X.shape), H)
    Y[:, 2] = (Y[:, 2] - Y[:, 2].mean()) * 0.6          # a teacher whose depth is compressed
    H_closed, _ = pose.pose_from_landmarks(X, Y)
    H_fit, G_fit = pose.fit(X, Y)
    assert abs(H_fit[2] - H[2]) < 0.02 < abs(H_closed[2] - H[2])
    np.testing.assert_allclose(pose.project(G_fit, H_fit), Y[:, :2], atol=1e-8)


def test_refit_moves_h_onto_the_teachers_landmarks():
    """engine.tracking.refit without an expression basis: a person model whose H head is off by a few degrees and pixels gets the H under
    which its own mesh lands on the teacher's 2D landmarks; G and z stay the model's."""
    from engine.tracking import CropOutput, refit

    rng = np.random.default_rng(5)
    G = canonical.load()[0].astype(np.float64)
    H_true = np.array([7.0, 0.15, -0.4, 0.05, 130.0, 118.0])
    landmarks = pose.project(G, H_true) + rng.normal(0, 0.3, (468, 2))
    H_net = H_true + np.array([0.3, 0.05, -0.06, 0.03, 3.0, -2.0])
    z = rng.normal(size=128)
    out = refit(CropOutput(points=pose.project(G, H_net), presence=0.9, G=G, H=H_net, z=z, landmarks=landmarks))
    assert np.degrees(np.abs(out.H[1:4] - H_true[1:4])).max() < 0.3 and np.abs(out.H[4:] - H_true[4:]).max() < 0.2
    before = np.linalg.norm(pose.project(G, H_net) - landmarks, axis=1).mean()
    assert np.linalg.norm(out.points - landmarks, axis=1).mean() < 0.5 < before
    np.testing.assert_array_equal(out.G, G)
    assert out.z is z and out.presence == 0.9


def _basis(rng, k=6):
    """Orthonormal directions [k,468,3] and std (cm) of a made-up expression subspace that leaves the chin's height
    alone (the refit keeps the network's, REFIT_CHIN); a real DAM's first directions have σ ≈ 1–3 (about 1 mm a
    vertex)."""
    from engine.tracking import CHIN_POINTS

    a = rng.normal(size=(468, 3, k))
    a[list(CHIN_POINTS), 1] = 0.0
    q = np.linalg.qr(a.reshape(468 * 3, k))[0].T.reshape(k, 468, 3)
    return q, np.linspace(3.0, 1.0, k)


def test_refit_with_a_basis_recovers_the_expression_the_network_missed():
    """A network that answers the neutral face (c = 0) while the teacher's landmarks show an expression c_true: the
    joint refit finds c_true (up to the prior's pull) and the pose, and the returned points are G's projection."""
    from engine.tracking import CropOutput, ExpressionBasis, refit

    rng = np.random.default_rng(7)
    G = canonical.load()[0].astype(np.float64)
    B, std = _basis(rng)
    c_true = std * np.array([1.5, -1.0, 1.0, 0.5, -1.5, 1.0])
    H_true = np.array([10.0, 0.1, -0.3, 0.05, 128.0, 120.0])
    landmarks = pose.project(G + np.tensordot(c_true, B, 1), H_true) + rng.normal(0, 0.3, (468, 2))
    H_net = H_true + np.array([0.2, 0.04, -0.05, 0.02, 2.0, -2.0])
    net = CropOutput(points=pose.project(G, H_net), presence=1.0, G=G, H=H_net, landmarks=landmarks)
    out = refit(net, ExpressionBasis(B, std))
    c = np.einsum("kvj,vj->k", B, out.G - G)                       # the coefficients it added
    np.testing.assert_allclose(c, c_true, atol=0.15 * std.max())
    assert np.degrees(np.abs(out.H[1:4] - H_true[1:4])).max() < 0.3
    np.testing.assert_allclose(out.points, pose.project(out.G, out.H), atol=1e-9)
    without = refit(net)
    err = lambda o: np.linalg.norm(o.points - landmarks, axis=1).mean()
    assert err(out) < 0.5 < err(without)                           # the pose alone cannot explain an expression


def test_the_prior_holds_the_expression_where_the_landmarks_say_nothing_new():
    """On landmarks of the network's own face the refit adds (almost) nothing; with a tiny σ it cannot move."""
    from engine.tracking import CropOutput, ExpressionBasis, refit

    rng = np.random.default_rng(8)
    G = canonical.load()[0].astype(np.float64)
    B, std = _basis(rng)
    H = np.array([6.0, 0.0, 0.2, 0.0, 128.0, 128.0])
    landmarks = pose.project(G, H) + rng.normal(0, 0.5, (468, 2))
    out = refit(CropOutput(points=landmarks, presence=1.0, G=G, H=H, landmarks=landmarks), ExpressionBasis(B, std))
    assert np.linalg.norm(out.G - G, axis=1).max() < 0.05
    c_true = np.full(6, 0.3)
    moved = pose.project(G + np.tensordot(c_true, B, 1), H)
    stiff = refit(CropOutput(points=moved, presence=1.0, G=G, H=H, landmarks=moved), ExpressionBasis(B, std * 1e-4))
    assert np.linalg.norm(stiff.G - G, axis=1).max() < 1e-3


def test_the_refit_keeps_the_networks_chin_height_against_a_teacher_whose_chin_stays_shut(monkeypatch):
    """Off its domain the teacher's chin hardly moves for an open jaw, while the network reads it: the chin's height is
    the one thing the refit keeps of the network's answer (REFIT_CHIN); the other directions still follow the teacher."""
    from engine import tracking
    from engine.tracking import CHIN_POINTS, CropOutput, ExpressionBasis, refit

    rng = np.random.default_rng(12)
    G = canonical.load()[0].astype(np.float64)
    jaw = np.zeros((468, 3))
    lower = np.flatnonzero(G[:, 1] > G[list(CHIN_POINTS), 1].mean() - 3.0)     # chin, jaw line, lower lip: down
    jaw[lower, 1] = 1.0
    q = np.linalg.qr(np.column_stack([jaw.ravel(), rng.normal(size=(468 * 3, 5))]))[0]
    B, std = (q * np.sign(q[:, :1].T @ jaw.ravel())).T.reshape(6, 468, 3), np.linspace(3.0, 1.0, 6)
    c_net = np.array([2.0, 0, 0, 0, 0, 0])                       # the network: the jaw open
    c_teacher = np.array([0.0, 1.0, -1.0, 0.5, 0, 0])            # the teacher: the jaw shut, other expression
    H = np.array([10.0, 0.1, -0.3, 0.05, 128.0, 120.0])
    landmarks = pose.project(G + np.tensordot(c_teacher, B, 1), H)
    net = CropOutput(points=landmarks, presence=1.0, G=G + np.tensordot(c_net, B, 1), H=H, landmarks=landmarks)

    def coefficients():
        return np.einsum("kvj,vj->k", B, refit(net, ExpressionBasis(B, std)).G - G)

    kept = coefficients()
    assert kept[0] > 0.5 * c_net[0]                              # most of the network's jaw stays
    np.testing.assert_allclose(kept[1:4], c_teacher[1:4], atol=0.2)      # up to the priors' pull
    monkeypatch.setattr(tracking, "REFIT_CHIN", 0.0)
    assert coefficients()[0] < 0.1 * c_net[0]                    # without it the teacher's shut chin wins


def test_two_gauss_newton_steps_reach_the_damped_minimum():
    rng = np.random.default_rng(6)
    X = canonical.load()[0].astype(np.float64)
    H = np.array([6.0, -0.1, 0.5, 0.1, 100.0, 90.0])
    y = pose.project(X, H) + rng.normal(0, 0.5, (468, 2))
    start = H + np.array([0.2, 0.03, -0.05, 0.02, 2.0, 1.5])
    np.testing.assert_allclose(pose.gauss_newton(X, y, start, 2), pose.refine(X, y, start), rtol=1e-4, atol=1e-3)


def test_the_refit_answers_the_same_in_any_crop_size():
    """ρ is stated for a 256² crop: a model answering in 192² crop pixels (the package's crop) gets the prior scaled
    with its pixels, so the same face and landmarks seen at either size refit to the same expression."""
    from engine.tracking import CropOutput, ExpressionBasis, refit

    rng = np.random.default_rng(11)
    G = canonical.load()[0].astype(np.float64)
    B, std = _basis(rng)
    H = np.array([10.0, 0.1, -0.3, 0.05, 128.0, 120.0])
    landmarks = pose.project(G + np.tensordot(std * np.array([1.0, -0.5, 0.8, 0, 0, 0]), B, 1), H)
    landmarks += rng.normal(0, 0.3, (468, 2))
    k = 192 / 256
    to192 = lambda p: (p + 0.5) * k - 0.5                                      # noqa: E731  pixel-index coordinates
    H192 = np.array([H[0] * k, *H[1:4], *to192(H[4:6])])
    big = refit(CropOutput(points=landmarks, presence=1.0, G=G, H=H, landmarks=landmarks), ExpressionBasis(B, std))
    small = refit(CropOutput(points=to192(landmarks), presence=1.0, G=G, H=H192, landmarks=to192(landmarks)),
                  ExpressionBasis(B, std, crop_size=192))
    np.testing.assert_allclose(small.G, big.G, atol=1e-6)
    np.testing.assert_allclose(small.points, to192(big.points), atol=1e-6)


def test_the_temporal_prior_steadies_a_jittery_network_and_still_follows_a_new_expression(monkeypatch):
    """A still face whose network G jitters in the basis and whose teacher landmarks are noisy, then a new expression:
    refit frame by frame from the last answer (REFIT_TEMPORAL), the still stretch moves less from frame to frame than
    without it, and the new expression is reached within a few frames (a random walk, not a hold)."""
    from engine import tracking
    from engine.tracking import CropOutput, ExpressionBasis, refit

    rng = np.random.default_rng(13)
    G = canonical.load()[0].astype(np.float64)
    B, std = _basis(rng)
    H = np.array([10.0, 0.1, -0.3, 0.05, 128.0, 120.0])
    c_true = np.where(np.arange(40)[:, None] < 20, 0.0, std * np.array([1.0, -1.0, 0.8, 0.0, 0.0, 0.0]))
    frames = []
    for c in c_true:
        landmarks = pose.project(G + np.tensordot(c, B, 1), H) + rng.normal(0, 1.0, (468, 2))
        G_net = G + np.tensordot(rng.normal(0, 0.5, 6), B, 1)               # the network's jitter
        frames.append(CropOutput(points=landmarks, presence=1.0, G=G_net, H=H, landmarks=landmarks))

    def track(temporal):
        monkeypatch.setattr(tracking, "REFIT_TEMPORAL", temporal)
        basis, previous, c = ExpressionBasis(B, std), None, []
        for out in frames:
            previous = refit(out, basis, previous).G
            c.append(np.einsum("kvj,vj->k", B, previous - G))
        return np.array(c)

    shipped = tracking.REFIT_TEMPORAL
    free, held = track(0.0), track(shipped)
    jitter = lambda c: np.linalg.norm(np.diff(c[2:20], axis=0), axis=1).mean()     # noqa: E731
    assert jitter(held) < 0.8 * jitter(free)
    step = np.abs(c_true[-1]).max()
    assert np.abs(held[20] - c_true[-1]).max() < 0.5 * step             # most of the way on the frame it comes
    assert np.abs(held[21:] - c_true[-1]).max() < 0.1 * step            # and there from the next on
    alone = [np.einsum("kvj,vj->k", B, refit(out, ExpressionBasis(B, std)).G - G) for out in frames]
    np.testing.assert_allclose(free, alone, atol=1e-9)                  # τ = 0: each frame on its own
