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


def test_refit_pose_moves_h_onto_the_teachers_landmarks():
    """engine.tracking.refit_pose: a person model whose H head is off by a few degrees and pixels gets the H under
    which its own mesh lands on the teacher's 2D landmarks; G and z stay the model's."""
    from engine.tracking import CropOutput, refit_pose

    rng = np.random.default_rng(5)
    G = canonical.load()[0].astype(np.float64)
    H_true = np.array([7.0, 0.15, -0.4, 0.05, 130.0, 118.0])
    landmarks = pose.project(G, H_true) + rng.normal(0, 0.3, (468, 2))
    H_net = H_true + np.array([0.3, 0.05, -0.06, 0.03, 3.0, -2.0])
    z = rng.normal(size=128)
    out = refit_pose(CropOutput(points=pose.project(G, H_net), presence=0.9, G=G, H=H_net, z=z, landmarks=landmarks))
    assert np.degrees(np.abs(out.H[1:4] - H_true[1:4])).max() < 0.3 and np.abs(out.H[4:] - H_true[4:]).max() < 0.2
    before = np.linalg.norm(pose.project(G, H_net) - landmarks, axis=1).mean()
    assert np.linalg.norm(out.points - landmarks, axis=1).mean() < 0.5 < before
    assert out.G is G and out.z is z and out.presence == 0.9


def test_two_gauss_newton_steps_reach_the_damped_minimum():
    rng = np.random.default_rng(6)
    X = canonical.load()[0].astype(np.float64)
    H = np.array([6.0, -0.1, 0.5, 0.1, 100.0, 90.0])
    y = pose.project(X, H) + rng.normal(0, 0.5, (468, 2))
    start = H + np.array([0.2, 0.03, -0.05, 0.02, 2.0, 1.5])
    np.testing.assert_allclose(pose.gauss_newton(X, y, start, 2), pose.refine(X, y, start), rtol=1e-4, atol=1e-3)
