"""Each loss pinned to a hand-computed value on hand-made inputs."""
import pytest
import torch

from engine import losses, pose


def test_L_z_and_L_view():
    a, b = torch.zeros(2, 4), torch.tensor([[1.0, 2, 0, 0], [0, 0, 0, 3]])
    assert losses.L_z(a, b).item() == pytest.approx((5 + 9) / 2)
    assert losses.L_view(b, b).item() == 0


def test_L_H_is_mean_squared_reprojection():
    G = torch.tensor([[[1.0, 0, 0], [0, 1, 0]]])
    H = torch.tensor([[2.0, 0, 0, 0, 10, 20]])                    # f = 2, no rotation, t = (10, 20)
    K = torch.tensor([[[12.0, 20], [10, 25]]])                    # first exact, second 3 px off in y
    assert losses.L_H(H, G, K).item() == pytest.approx((0 + 9) / 2)


def test_L_CFTC_zero_for_identical_frames_and_pinned_value():
    T = torch.rand(1, 3, 4, 4)
    W = torch.full((1, 1, 4, 4), 0.9)
    assert losses.L_CFTC(T, W, T.clone(), W.clone()).item() == 0
    T2 = T.clone()
    T2[0, 0, 0, 0] += 0.5                                         # one texel, one channel, differs by 0.5
    W2 = W.clone()
    W2[0, 0, 3, 3] = 0.1                                          # 0.9·0.1 = 0.09 ≥ threshold 0.04: still counts
    W2[0, 0, 3, 2] = 0.01                                         # 0.009 < threshold: set to 0
    expected = (0.81 * 0.5) ** 2 / 15                             # 15 nonzero product weights
    assert losses.L_CFTC(T2, W2, T, W).item() == pytest.approx(expected, rel=1e-5)


def test_L_MOTC_pinned_value():
    T_obs = torch.zeros(1, 3, 2, 2)
    T_model = torch.full((1, 3, 2, 2), 0.1)
    W = torch.tensor([[[[1.0, 0.5], [0.0, 0.0]]]])
    expected = (3 * 0.1 ** 2 + 3 * (0.5 * 0.1) ** 2) / 2
    assert losses.L_MOTC(T_obs, W, T_model).item() == pytest.approx(expected, rel=1e-5)


def test_L_FLRC_gradients_reach_pose_and_geometry():
    G = torch.randn(1, 468, 3, requires_grad=True)
    H = torch.tensor([[8.0, 0.1, 0.2, 0.0, 128, 128]], requires_grad=True)
    K = pose.project(G.detach(), H.detach()) + 1.0
    loss = losses.L_FLRC(H, G, K)
    assert loss.item() == pytest.approx(2.0, rel=1e-5)            # 1 px in x and y: 1² + 1²
    loss.backward()
    assert G.grad.abs().sum() > 0 and H.grad.abs().sum() > 0
