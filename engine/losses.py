"""The paper's losses, by their names (Eq. 2–4 for training I2ZNet, Eq. 6, 8, 9 for domain adaptation).

Units: textures T, T̃ in [0, 1]; landmarks in pixels of the 256² crop; z in DAM latent units. With these the
paper's defaults λ_CFTC = 100, λ_MOTC = 100, λ_FLRC = 1 put the three adaptation terms on a comparable footing:
a 2/255 per-channel texture mismatch costs 100·3·(2/255)² ≈ 0.02 and a 0.1 px landmark error costs 0.01.
Every loss reduces over its batch by the mean, so values do not depend on the batch size.
"""
from __future__ import annotations

import torch

from engine import pose

LAMBDA_CFTC, LAMBDA_MOTC, LAMBDA_FLRC = 100.0, 100.0, 1.0
W_THRESHOLD = 0.2 ** 2   # product confidences below this (both views at > ~78° incidence) are set to 0 (Eq. 6)


def _masked_mse(weights: torch.Tensor, diff: torch.Tensor) -> torch.Tensor:
    """‖w ⊙ d‖²_F / (number of nonzero weights), per sample, then the batch mean. weights [B,1,S,S], diff [B,3,S,S]."""
    nonzero = (weights > 0).flatten(1).sum(1).clamp(min=1)
    return ((weights * diff) ** 2).flatten(1).sum(1).div(nonzero).mean()


def L_z(z_pred: torch.Tensor, z_gt: torch.Tensor) -> torch.Tensor:
    """Eq. 2: direct supervision of the latent code, ‖z_I − z_gt‖²."""
    return ((z_pred - z_gt) ** 2).sum(-1).mean()


def L_G(G_pred: torch.Tensor, G_gt: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Decoded-geometry supervision ‖D(z_I) − D(z_gt)‖²: per-vertex squared distance (cm²), averaged over the
    vertices with `weights` [V] (e.g. eyelids, lips and brows weighted up), then over the batch."""
    d = (G_pred - G_gt).square().sum(-1)
    if weights is None:
        return d.mean()
    return (d * weights).sum(-1).div(weights.sum()).mean()


def L_H(H_pred: torch.Tensor, G_pred: torch.Tensor, K_gt: torch.Tensor, landmarks=slice(None)) -> torch.Tensor:
    """Eq. 3: (1/K) Σ_k ‖Π H_I K^k(G_I) − K_gt^k‖², crop pixels². G_pred [B,V,3], K_gt [B,K,2]."""
    return ((pose.project(G_pred[:, landmarks], H_pred) - K_gt) ** 2).sum(-1).mean()


def L_view(z_v: torch.Tensor, z_w: torch.Tensor) -> torch.Tensor:
    """Eq. 4: the same instant seen from two views must give the same z."""
    return ((z_v - z_w) ** 2).sum(-1).mean()


def L_CFTC(T_obs: torch.Tensor, W: torch.Tensor, T_obs_prev: torch.Tensor, W_prev: torch.Tensor,
           threshold: float = W_THRESHOLD) -> torch.Tensor:
    """Eq. 6: consecutive-frame texture consistency, ‖(W^t ⊙ W^{t−1}) ⊙ (T̃^t − T̃^{t−1})‖²_F / #nonzero weights."""
    both = W * W_prev
    both = torch.where(both < threshold, torch.zeros_like(both), both)
    return _masked_mse(both, T_obs - T_obs_prev)


def L_MOTC(T_obs: torch.Tensor, W: torch.Tensor, T_model_corrected: torch.Tensor,
           threshold: float = W_THRESHOLD) -> torch.Tensor:
    """Eq. 8: model-to-observation texture consistency, ‖W^t ⊙ (T̃^t − C(T^t))‖²_F / #nonzero weights."""
    W = torch.where(W < threshold, torch.zeros_like(W), W)
    return _masked_mse(W, T_obs - T_model_corrected)


def L_FLRC(H: torch.Tensor, G: torch.Tensor, K_2d: torch.Tensor, landmarks=slice(None)) -> torch.Tensor:
    """Eq. 9: mean squared 2D distance between the teacher's landmarks K_2d [B,K,2] and Π H K(G), crop pixels²."""
    return L_H(H, G, K_2d, landmarks)
