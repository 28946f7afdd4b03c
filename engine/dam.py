"""Deep Appearance Model (DAM, Lombardi et al. 2018) of one performer, as used by Yoon et al. 2019 (§3.1).

A conditional VAE over X = (G, T):

    E_X(G, T̃, W) → (μ, log σ²) ∈ R^128          encoder: geometry MLP + texture conv net, fused
    z = μ + σ·ε                                   reparameterisation (training only; z = μ otherwise)
    D(z, v) → (G, T)                              decoder: G from z alone, T from z and the view vector v

G [V,3] is the mesh in the canonical head frame (cm, rigid motion removed), T [3,S,S] the UV texture in [0,1].
T is view dependent (v = pose.view_vector(H), the unit direction to the camera in the head frame), G is not:
the same expression seen from another camera has the same shape but other shading and occlusion.

Both decoder heads predict residuals over the enrollment statistics kept as buffers (mean shape, per-coordinate
shape std, W-weighted mean texture), with zero-initialised last layers, so an untrained DAM already decodes the
mean face. C, the 1×1 colour correction of the adaptation's L_MOTC (Eq. 8), lives here too (multiface style).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from engine.weights import load_model, save_model

LATENT = 128          # z ∈ R^128 (paper §3.1)
VERTICES = 468        # the teacher's mesh
# Directions of the expression basis the tracking loop fits per frame (engine.tracking.refit): on the enrollments
# measured, the first 16 hold ≥ 99.99 % of the decoded geometry's variance.
EXPRESSION_DIRECTIONS = 16


def default_config(texture_size: int = 64, **widths) -> dict:
    """Sizes of one DAM. `channels` is the conv width at each level from 4×4 up to the texture size."""
    config = {"latent": LATENT, "vertices": VERTICES, "texture_size": texture_size,
              "channels": [64, 64, 32, 16], "hidden": 256, "view_embedding": 8}
    config.update(widths)
    levels = int(round(math.log2(texture_size / 4)))
    if 4 * 2 ** levels != texture_size or len(config["channels"]) != levels:
        raise ValueError(f"texture size {texture_size} needs {levels} channel widths (4·2^k texels), "
                         f"got {config['channels']}")
    return config


def _act():
    return nn.LeakyReLU(0.2)


class Encoder(nn.Module):
    """E_X: (G, T̃, W) → (μ, log σ²). The texture branch sees T̃ − T̄ masked by W, and W itself, so unseen
    texels (W = 0) read as 'unknown' rather than as black."""

    def __init__(self, config: dict):
        super().__init__()
        hidden, latent, channels = config["hidden"], config["latent"], config["channels"][::-1]  # fine → coarse
        self.geometry = nn.Sequential(nn.Linear(config["vertices"] * 3, hidden), _act(),
                                      nn.Linear(hidden, hidden), _act())
        layers, width = [], 4
        for c in channels:                                   # each level halves the resolution, S → 4
            layers += [nn.Conv2d(width, c, 4, stride=2, padding=1), _act()]
            width = c
        self.texture = nn.Sequential(*layers, nn.Flatten(), nn.Linear(width * 16, hidden), _act())
        self.fuse = nn.Linear(2 * hidden, 2 * latent)

    def forward(self, g, t):
        """g: normalised geometry [B, V·3]; t: [B, 4, S, S] = ((T̃ − T̄)·W, W)."""
        mu, logvar = self.fuse(torch.cat([self.geometry(g), self.texture(t)], 1)).chunk(2, 1)
        return mu, logvar


class Decoder(nn.Module):
    """D: z → normalised geometry residual; (z, v) → texture residual in logit space."""

    def __init__(self, config: dict):
        super().__init__()
        hidden, latent, channels = config["hidden"], config["latent"], config["channels"]
        self.geometry = nn.Sequential(nn.Linear(latent, hidden), _act(), nn.Linear(hidden, config["vertices"] * 3))
        # A small embedding of v conditions only the texture: view-dependent appearance, view-independent shape.
        self.view = nn.Sequential(nn.Linear(3, config["view_embedding"]), _act())
        self.texture_in = nn.Sequential(nn.Linear(latent + config["view_embedding"], channels[0] * 16), _act())
        blocks = []
        for c_in, c_out in zip(channels, channels[1:] + channels[-1:]):
            # Upsample + conv rather than transposed conv: no checkerboard on a small data set.
            blocks += [nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                       nn.Conv2d(c_in, c_out, 3, padding=1), _act()]
        self.texture = nn.Sequential(*blocks, nn.Conv2d(channels[-1], 3, 3, padding=1))
        self.channels0 = channels[0]
        for last in (self.geometry[-1], self.texture[-1]):   # start at the enrollment mean
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def forward_geometry(self, z):
        return self.geometry(z)

    def forward_texture(self, z, v):
        x = self.texture_in(torch.cat([z, self.view(v)], 1))
        return self.texture(x.view(len(z), self.channels0, 4, 4))


class DAM(nn.Module):
    """The performer's Deep Appearance Model: `encode`, `decode`, `decode_geometry` (see module docstring)."""

    def __init__(self, config: dict, mean_shape=None, shape_std=None, mean_texture=None):
        super().__init__()
        self.config = dict(config)
        V, S = config["vertices"], config["texture_size"]
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.register_buffer("mean_shape", _tensor(mean_shape, torch.zeros(V, 3)))        # cm
        self.register_buffer("shape_std", _tensor(shape_std, torch.ones(V, 3)))            # cm
        self.register_buffer("mean_texture", _tensor(mean_texture, torch.full((3, S, S), 0.5)))  # [0,1]

    # ---------------------------------------------------------------- E_X
    def encode(self, G, T, W):
        """G [B,V,3] cm, T̃ [B,3,S,S] in [0,1], W [B,1,S,S] in [0,1] → (μ, log σ²), each [B,128]."""
        g = ((G - self.mean_shape) / self.shape_std).flatten(1)
        t = torch.cat([(T - self.mean_texture) * W, W], 1)
        return self.encoder(g, t)

    @staticmethod
    def reparameterise(mu, logvar):
        return mu + torch.randn_like(mu) * (0.5 * logvar).exp()

    # ---------------------------------------------------------------- D
    def decode_geometry(self, z):
        """z [B,128] → G [B,V,3] cm. The cheap path (no texture), for I2ZNet's L_H and L_FLRC."""
        return self.mean_shape + self.shape_std * self.decoder.forward_geometry(z).view(len(z), -1, 3)

    def decode_texture(self, z, v):
        """(z [B,128], v [B,3]) → T [B,3,S,S] in [0,1]; the residual is added to logit(T̄) so T stays in range."""
        logit_mean = torch.logit(self.mean_texture.clamp(0.01, 0.99))
        return torch.sigmoid(logit_mean + self.decoder.forward_texture(z, v))

    def decode(self, z, v):
        """D(z, v) → (G [B,V,3], T [B,3,S,S])."""
        return self.decode_geometry(z), self.decode_texture(z, v)

    def forward(self, G, T, W, v, sample: bool = True):
        """Autoencode: returns (G, T, μ, log σ²); z is sampled in training mode when `sample`."""
        mu, logvar = self.encode(G, T, W)
        z = self.reparameterise(mu, logvar) if sample and self.training else mu
        return (*self.decode(z, v), mu, logvar)

    # ---------------------------------------------------------------- parameter groups
    def encoder_parameters(self):
        return self.encoder.parameters()

    def decoder_parameters(self):
        return self.decoder.parameters()


def _tensor(value, default: torch.Tensor) -> torch.Tensor:
    return default if value is None else torch.as_tensor(value, dtype=torch.float32).clone()


def kl_divergence(mu, logvar):
    """KL(N(μ, σ²) ‖ N(0, I)) summed over the latent, averaged over the batch."""
    return (-0.5 * (1 + logvar - mu.square() - logvar.exp()).sum(1)).mean()


class ColourCorrection(nn.Module):
    """C (paper Eq. 8): one 1×1 conv, i.e. a 3×3 colour matrix and a bias, starting at the identity.

    It maps the DAM's texture to the new environment's white balance; learned during adaptation.
    """

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(3)[:, :, None, None])
            self.conv.bias.zero_()

    def forward(self, T):
        return self.conv(T)

    @property
    def matrix(self):
        return self.conv.weight[:, :, 0, 0]


@torch.no_grad()
def expression_basis(dam: DAM, z, k: int = EXPRESSION_DIRECTIONS) -> tuple:
    """The performer's expression subspace as the DAM spans it: the top-k principal directions B [k,V,3] (unit
    norm, float32) of the geometry D decodes from the enrollment latents z [N,128], and the enrollment's standard
    deviation σ [k] (cm, float32) along each. The tracking loop fits G + Σ c_k·B_k to the teacher's landmarks with
    a prior of σ on c (engine.tracking.refit)."""
    z = torch.as_tensor(np.asarray(z), dtype=torch.float32, device=dam.mean_shape.device)
    G = dam.decode_geometry(z).double().flatten(1).cpu().numpy()
    _, s, vt = np.linalg.svd(G - G.mean(0), full_matrices=False)
    k = min(k, len(s))
    std = np.maximum(s[:k] / math.sqrt(len(G)), 1e-6)
    return vt[:k].reshape(k, -1, 3).astype(np.float32), std.astype(np.float32)


# ---------------------------------------------------------------- files
def save(dam: DAM, folder: str | Path) -> None:
    """Write folder/model.safetensors (weights and statistics) and folder/config.json. No pickle."""
    save_model(dam, dam.config, folder)


def load(folder: str | Path, device: str | torch.device = "cpu") -> DAM:
    """Read a DAM written by `save`, in eval mode. Missing or corrupt files raise UserError naming the file."""
    return load_model(folder, lambda cfg: DAM(default_config(**cfg)), "DAM",
                      "train the DAM first: `facetrack train-dam RUN`", device=device)
