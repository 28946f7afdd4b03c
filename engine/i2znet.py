"""I2ZNet, the paper's E_I: a 256² face crop → the DAM latent z ∈ R^128 and head pose H ∈ R^6 (§3.1, supp. A).

Two streams, both fed the crop resized to 192² (bilinear, no antialias, so it exports to ONNX; a crop already 192²,
as the exported package's loop warps it, is read as it is):
  teacher  the frozen MediaPipe landmarker (engine.teacher.FaceLandmarker) — its NCHW features at 48², 24², 12², 6²
           plus landmark heatmaps: the 468 predicted points splatted as Gaussians (σ = 1 cell of 48²) and summed into a
           few region channels (eyes, brows, nose, lips, contour), max-pooled down to each level. This plays the
           paper's HourglassNet ("where to look"); it stays in eval mode with no gradients, always.
  pixel    a trainable shallow CNN on raw pixels (stride-2 stem, then stride-2 + 3×3 conv per level): maps at the same
           four sizes: the paper's VGG ("perceptual") stream, which no ImageNet download can supply here.
Per level l the streams are normalised separately — GroupNorm with one group (each sample's map scaled to zero
mean, unit variance over C×H×W, then a learned per-channel affine) — and concatenated into u_l. A Compressor (1×1
conv to C/4, 3×3 conv to C/16) shrinks u_l, which is flattened and mapped to p_l^z and p_l^h. The levels' p's
are concatenated and regressed to z and H by two FC layers each.

z skip path (config "z_skip", on whenever the teacher stream is): z = W·φ(K) + b + σ_z ⊙ ẑ, where K are the frozen
teacher's own 468 landmarks, φ removes their translation, scale and rotation (centre, divide by the RMS radius,
orthogonal Procrustes onto the canonical shape by Newton–Schulz polar iterations: matmuls only, so it exports to
ONNX), and (W, b) is a ridge regression to z_gt fitted in closed form on the enrollment (train_i2z.fit_skip), stored
as buffers. The z head's last layer starts at zero, so an untrained network already outputs "the teacher projected
onto the person's DAM" and training only learns a residual. Without it: z = z̄ + σ_z ⊙ ẑ.
Outputs start sane: f = f̄·exp(a), (rx, ry, rz) = r̄ + r, t = t̄ + 128·b, with the enrollment statistics
(z̄, σ_z, f̄, r̄, t̄) stored as buffers and the last FC layers initialised small. H is in 256-crop
pixels (engine.pose conventions: x = f·Π·R·X + t, pixel-index coordinates).

Ablations (paper Table 2 shape): streams "pixel" | "teacher" | "both", multi_level (48..6) or the deepest level only.
`save`/`load` use safetensors + config.json (the teacher's weights are not stored: they come from mediapipe).
`RunModel` plugs a run folder into the one tracking loop (engine.tracking).
"""
from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import UserError
from engine.weights import load_model, save_model

CROP_SIZE = 256
TEACHER_SIZE = 192
LEVELS = (48, 24, 12, 6)
TEACHER_FEATURE_INDEX = {48: 1, 24: 2, 12: 3, 6: 4}      # into FaceLandmarker.forward_with_features' list
TEACHER_CHANNELS = {48: 32, 24: 64, 12: 128, 6: 128}
REGIONS = ("eye_left", "eye_right", "brow_left", "brow_right", "nose", "lips", "contour")
HEATMAP_SIGMA = 1.0       # in cells of the 48² grid (4 teacher pixels)
STREAMS = ("pixel", "teacher", "both")


class TeacherOut(NamedTuple):
    """The frozen stream's output for a batch: features at LEVELS (NCHW), landmarks [B,468,3] (192 px), presence [B]."""
    features: list
    landmarks: torch.Tensor
    presence: torch.Tensor


class Output(NamedTuple):
    z: torch.Tensor           # [B,128]
    H: torch.Tensor           # [B,6] in 256-crop pixels
    presence: torch.Tensor    # [B] teacher face flag in 0..1
    landmarks: torch.Tensor   # [B,468,3] teacher landmarks in 256-crop pixels


def default_config(**overrides) -> dict:
    cfg = {"streams": "both", "multi_level": True, "width": 512, "pixel_channels": 32, "z_dim": 128, "z_skip": True}
    cfg.update(overrides)
    if cfg["streams"] not in STREAMS:
        raise UserError(f"streams must be one of {', '.join(STREAMS)} (got {cfg['streams']!r})")
    return cfg


@functools.cache
def region_points() -> tuple[list[int], list[list[int]]]:
    """The heatmaps' points: the union of REGIONS' mesh vertices (152 of 468) and each region's positions in it."""
    from engine.topology import subsets

    s = subsets()
    used = sorted({int(i) for name in REGIONS for i in s[name]})
    where = {v: k for k, v in enumerate(used)}
    return used, [[where[int(i)] for i in s[name]] for name in REGIONS]


def heatmaps(landmarks: torch.Tensor, size: int = LEVELS[0]) -> torch.Tensor:
    """Landmarks [B,468,≥2] in 192-px → region heatmaps [B,R,size,size]: the sum of each region's Gaussian splats.
    A splat is separable (gy ⊗ gx), so a region's sum is one matmul of its points' 1D factors, and only the regions'
    152 points are splatted: in ONNX Runtime 0.45 ms where the former max over [468,48,48] splats took 1.08 (it
    was ~20 % of the tracker graph). Indices are Python lists, so they export as constants."""
    used, regions = region_points()
    k = TEACHER_SIZE / size
    xy = (landmarks[:, used, :2] + 0.5) / k - 0.5                  # pixel-index coordinates of the size² grid
    grid = torch.arange(size, dtype=xy.dtype, device=xy.device)
    gx = torch.exp(-(xy[..., 0, None] - grid) ** 2 / (2 * HEATMAP_SIGMA ** 2))                  # [B,P,size]
    gy = torch.exp(-(grid[:, None] - xy[:, None, :, 1]) ** 2 / (2 * HEATMAP_SIGMA ** 2))        # [B,size,P]
    return torch.stack([gy[..., r] @ gx[:, r] for r in regions], 1)


class PixelStream(nn.Module):
    """Shallow trainable CNN: 192² → maps at 48², 24², 12², 6² with c, 2c, 4c, 4c channels."""

    def __init__(self, c: int):
        super().__init__()
        def block(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, 2, 1), nn.ReLU(inplace=True),
                                 nn.Conv2d(cout, cout, 3, 1, 1), nn.ReLU(inplace=True))
        self.stem = nn.Sequential(nn.Conv2d(3, c, 3, 2, 1), nn.ReLU(inplace=True))    # 96²
        self.blocks = nn.ModuleList([block(c, c), block(c, 2 * c), block(2 * c, 4 * c), block(4 * c, 4 * c)])
        self.channels = (c, 2 * c, 4 * c, 4 * c)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h, out = self.stem(x - 0.5), []
        for b in self.blocks:
            h = b(h)
            out.append(h)
        return out


class LevelHead(nn.Module):
    """Per level: normalise each stream, concatenate into u_l, Compressor (to C/16), flatten → p_l^z, p_l^h."""

    def __init__(self, stream_channels: list[int], size: int, width: int):
        super().__init__()
        self.norms = nn.ModuleList([nn.GroupNorm(1, c) for c in stream_channels])
        c = sum(stream_channels)
        mid, out = max(math.ceil(c / 4), 4), max(math.ceil(c / 16), 2)
        self.compressor = nn.Sequential(nn.Conv2d(c, mid, 1), nn.ReLU(inplace=True),
                                        nn.Conv2d(mid, out, 3, 1, 1), nn.ReLU(inplace=True))
        self.p_z = nn.Linear(out * size * size, width)
        self.p_h = nn.Linear(out * size * size, width)

    def forward(self, maps: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        u = torch.cat([n(m) for n, m in zip(self.norms, maps)], 1)
        flat = self.compressor(u).flatten(1)
        return F.relu(self.p_z(flat)), F.relu(self.p_h(flat))


def _regressor(n_in: int, width: int, n_out: int, gain: float = 0.1) -> nn.Sequential:
    last = nn.Linear(width, n_out)
    with torch.no_grad():
        last.weight.mul_(gain)
        last.bias.zero_()
    return nn.Sequential(nn.Linear(n_in, width), nn.ReLU(inplace=True), last)


SKIP_POLAR_ITERS = 10     # Newton–Schulz steps for the 3×3 polar factor: float32-exact from 8 on (σ_min/σ_max ≥ 0.24 on faces)


def landmark_features(landmarks: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """The z skip path's input: teacher landmarks [B,468,3] (any px units) → [B,468·3], with translation, scale
    and rotation removed: centred, divided by their RMS radius, then rotated onto `reference` [468,3] (centred,
    unit RMS) by the orthogonal Procrustes rotation. The rotation is the polar factor of the 3×3 cross-covariance,
    computed by Newton–Schulz iterations (matmuls only, so it exports to ONNX; no SVD)."""
    y = landmarks - landmarks.mean(1, keepdim=True)
    y = y / y.square().sum(-1).mean(-1).sqrt().clamp_min(1e-6)[:, None, None]
    m = y.transpose(1, 2) @ reference                                    # [B,3,3]: svd = U S Vᵀ, R = U Vᵀ
    x = m / m.square().sum((1, 2)).sqrt().clamp_min(1e-12)[:, None, None]
    for _ in range(SKIP_POLAR_ITERS):
        x = 1.5 * x - 0.5 * x @ x.transpose(1, 2) @ x
    return (y @ x).flatten(1)


class I2ZNet(nn.Module):
    """E_I. forward(x [B,3,256,256] uint8 or float in [0,1], teacher=None) → (z [B,128], H [B,6] crop px)."""

    def __init__(self, config: dict | None = None):
        super().__init__()
        from engine.teacher import FaceLandmarker

        self.config = cfg = default_config(**(config or {}))
        self.teacher = FaceLandmarker()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.use_teacher = cfg["streams"] in ("teacher", "both")
        self.use_pixel = cfg["streams"] in ("pixel", "both")
        self.levels = LEVELS if cfg["multi_level"] else LEVELS[-1:]
        self.pixel = PixelStream(cfg["pixel_channels"]) if self.use_pixel else None
        heads = []
        for size in self.levels:
            chans = []
            if self.use_teacher:
                chans += [TEACHER_CHANNELS[size], len(REGIONS)]
            if self.use_pixel:
                chans.append(self.pixel.channels[LEVELS.index(size)])
            heads.append(LevelHead(chans, size, cfg["width"]))
        self.level_heads = nn.ModuleList(heads)
        n = cfg["width"] * len(self.levels)
        self.z_skip = bool(cfg["z_skip"]) and self.use_teacher
        # With the skip path the z head learns a residual over it, starting at exactly zero.
        self.z_head = _regressor(n, cfg["width"], cfg["z_dim"], gain=0.0 if self.z_skip else 0.1)
        self.h_head = _regressor(n, cfg["width"], 6)
        if self.z_skip:
            # z skip path (set_skip fills it): a fixed linear map from the pose-normalised teacher landmarks to z,
            # fitted in closed form (ridge) on the enrollment: "the teacher projected onto the person's DAM".
            self.register_buffer("skip_reference", torch.zeros(468, 3))
            self.register_buffer("skip_weight", torch.zeros(cfg["z_dim"], 468 * 3))
            self.register_buffer("skip_bias", torch.zeros(cfg["z_dim"]))
        # Enrollment statistics the outputs are parameterised around (set_statistics fills them).
        self.register_buffer("z_mean", torch.zeros(cfg["z_dim"]))
        self.register_buffer("z_std", torch.ones(cfg["z_dim"]))
        self.register_buffer("f_mean", torch.tensor(1.0))
        self.register_buffer("angle_mean", torch.zeros(3))
        self.register_buffer("t_mean", torch.full((2,), CROP_SIZE / 2))
        self.teacher.eval()

    # ------------------------------------------------------------------ setup
    def set_statistics(self, z: np.ndarray, H: np.ndarray) -> None:
        """z̄, σ_z from the enrollment latents [N,128]; f̄, r̄, t̄ from the enrollment poses [N,6] (crop px)."""
        z, H = np.asarray(z, np.float64), np.asarray(H, np.float64)
        with torch.no_grad():
            self.z_mean.copy_(torch.from_numpy(z.mean(0)))
            self.z_std.copy_(torch.from_numpy(np.maximum(z.std(0), 1e-4)))
            self.f_mean.fill_(float(np.exp(np.log(H[:, 0]).mean())))
            self.angle_mean.copy_(torch.from_numpy(H[:, 1:4].mean(0)))
            self.t_mean.copy_(torch.from_numpy(H[:, 4:6].mean(0)))

    def set_skip(self, reference: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> None:
        """The z skip path: z_skip = weight · landmark_features(landmarks, reference) + bias (see fit_skip)."""
        with torch.no_grad():
            self.skip_reference.copy_(torch.as_tensor(np.asarray(reference), dtype=torch.float32))
            self.skip_weight.copy_(torch.as_tensor(np.asarray(weight), dtype=torch.float32))
            self.skip_bias.copy_(torch.as_tensor(np.asarray(bias), dtype=torch.float32))

    def skip_features(self, landmarks: torch.Tensor) -> torch.Tensor:
        return landmark_features(landmarks.float(), self.skip_reference)

    def z_base(self, teacher: TeacherOut | None) -> torch.Tensor:
        """What the z head's residual is added to: the skip path's z, or z̄ without one."""
        if self.z_skip:
            return F.linear(self.skip_features(teacher.landmarks), self.skip_weight, self.skip_bias)
        return self.z_mean

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()          # frozen stream: never in training mode
        return self

    # ------------------------------------------------------------------ parameter groups (adaptation tunes heads)
    def heads_parameters(self) -> list[nn.Parameter]:
        """Normalisation affines, Compressors, p_l FCs and the z/H regressors."""
        return [p for m in (self.level_heads, self.z_head, self.h_head) for p in m.parameters()]

    def pixel_stream_parameters(self) -> list[nn.Parameter]:
        return list(self.pixel.parameters()) if self.pixel is not None else []

    # ------------------------------------------------------------------ streams
    @staticmethod
    def prepare(x: torch.Tensor) -> torch.Tensor:
        """[B,3,S,S] uint8 or float in [0,1] → float [B,3,192,192] in [0,1] (a 192² crop as it is: the exported
        graph takes one, so ONNX has no resize to run)."""
        if x.dtype == torch.uint8:
            x = x.float() / 255
        if x.shape[-1] == TEACHER_SIZE and x.shape[-2] == TEACHER_SIZE:
            return x
        return F.interpolate(x, size=(TEACHER_SIZE, TEACHER_SIZE), mode="bilinear", align_corners=False)

    @torch.no_grad()
    def teacher_stream(self, x192: torch.Tensor) -> TeacherOut:
        landmarks, presence, feats = self.teacher.forward_with_features(x192)
        return TeacherOut([feats[TEACHER_FEATURE_INDEX[s]] for s in LEVELS], landmarks, presence)

    def forward(self, x: torch.Tensor, teacher: TeacherOut | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """`teacher`: this batch's precomputed teacher stream (training caches it); computed when None."""
        x = self.prepare(x)
        maps = [[] for _ in self.levels]
        if self.use_teacher:
            teacher = teacher if teacher is not None else self.teacher_stream(x)
            hm = heatmaps(teacher.landmarks.float())
            for i, size in enumerate(self.levels):
                k = LEVELS[0] // size
                maps[i] += [teacher.features[LEVELS.index(size)].float(), F.max_pool2d(hm, k) if k > 1 else hm]
        if self.use_pixel:
            pix = self.pixel(x)
            for i, size in enumerate(self.levels):
                maps[i].append(pix[LEVELS.index(size)])
        pz, ph = zip(*(head(m) for head, m in zip(self.level_heads, maps)))
        z = self.z_base(teacher) + self.z_std * self.z_head(torch.cat(pz, 1))
        h = self.h_head(torch.cat(ph, 1))
        H = torch.cat([self.f_mean * torch.exp(h[:, :1]), self.angle_mean + h[:, 1:4],
                       self.t_mean + (CROP_SIZE / 2) * h[:, 4:6]], 1)
        return z, H

    @torch.no_grad()
    def track(self, x: torch.Tensor) -> Output:
        """Inference with the teacher's face flag and landmarks (in 256-crop px) alongside (z, H)."""
        teacher = self.teacher_stream(self.prepare(x))
        z, H = self(x, teacher)
        lm = teacher.landmarks.clone()
        k = CROP_SIZE / TEACHER_SIZE
        lm[..., :2] = (lm[..., :2] + 0.5) * k - 0.5
        lm[..., 2] *= k
        return Output(z, H, teacher.presence, lm)


# ---------------------------------------------------------------------- persistence
def save(model: I2ZNet, folder: str | Path) -> Path:
    """Weights less the frozen teacher (it comes from the mediapipe wheel) + config.json."""
    return save_model(model, model.config, folder, skip="teacher.")


def load(folder: str | Path, device: str | torch.device = "cpu") -> I2ZNet:
    """The I2ZNet saved in `folder` (eval mode). Missing or corrupt files → UserError naming the file."""
    # Configs written before the z skip path existed have no "z_skip": they are models without it.
    return load_model(folder, lambda cfg: I2ZNet({"z_skip": False, **cfg}), "I2ZNet",
                      "train it with `facetrack train-i2z RUN`", skip="teacher.", device=device)


# ---------------------------------------------------------------------- tracking
class RunModel:
    """A run folder (RUN/i2z + RUN/dam) as a crop model of the one tracking loop (engine.tracking), for
    development: I2ZNet → (z, H); G = D.decode_geometry(z); points = Π·H·G in crop pixels. The exported package
    runs the same function through ONNX (export.runtime.PackageModel); `eval RUN` and `eval PACKAGE` compare them."""

    name = "run"
    crop_size = CROP_SIZE
    refit_pose = True     # as the package: the loop refits H and the expression to the teacher's landmarks

    def __init__(self, run_dir: str | Path, device: str | torch.device = "cpu"):
        from engine import dam, view_bias
        from engine.run import LATENTS, Run
        from engine.teacher import FaceDetector
        from engine.tracking import ExpressionBasis

        run = Run(run_dir)
        self.device = torch.device(device)
        self.model = load(run.i2z, self.device)
        self.dam = dam.load(run.dam).to(self.device)
        latents = np.load(run.dam / LATENTS, allow_pickle=False)
        self.expression_basis = ExpressionBasis(*dam.expression_basis(self.dam, latents),
                                                view=view_bias.from_enrollment(run))
        self.detector = FaceDetector().to(self.device)
        self.backend = f"torch {torch.__version__} ({self.device.type})"
        self._iris = None

    def detect(self, frame_rgb: np.ndarray):
        return self.detector.detect(frame_rgb)

    def eyes(self, frame_rgb: np.ndarray, points: np.ndarray) -> dict:
        """Eyelids and gaze as a package with iris.onnx gives them (engine.iris, the same graph in torch)."""
        if self._iris is None:
            from engine.iris import IrisTracker

            self._iris = IrisTracker(self.device)
        return self._iris.eyes(frame_rgb, points)

    @torch.no_grad()
    def __call__(self, crop_rgb: np.ndarray):
        from engine import pose
        from engine.tracking import CropOutput

        image = torch.from_numpy(crop_rgb).permute(2, 0, 1)[None].to(self.device)
        out = self.model.track(image)
        G = self.dam.decode_geometry(out.z)
        points = pose.project(G, out.H)[0].cpu().numpy().astype(np.float64)
        return CropOutput(points=points, presence=float(out.presence[0]), G=G[0].cpu().numpy().astype(np.float64),
                          H=out.H[0].cpu().numpy().astype(np.float64), z=out.z[0].cpu().numpy(),
                          landmarks=out.landmarks[0, :, :2].cpu().numpy().astype(np.float64))
