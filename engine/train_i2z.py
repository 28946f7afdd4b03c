"""`facetrack train-i2z RUN`: supervised training of I2ZNet (E_I) on the enrollment set, paper §3.1 Eq. 1–4.

    L_E_I = λ_z·L_z + λ_H·L_H + λ_view·L_view                                            (Eq. 1)
    L_z    = ‖z_I − z_gt‖², averaged over batch and the 128 dims (Eq. 2 / 128)            (Eq. 2)
    L_H    = (1/K) Σ_k ‖Π·H_I·K^k(G_I) − K_gt^k‖², G_I = D.decode_geometry(z_I), D frozen;
             in units of the crop size (pixels / 256)², so √L_H·256 is an RMS error in crop pixels   (Eq. 3)
    L_view = ‖z_{I_v} − z_{I_w}‖² (per dim) between two views of the same instant           (Eq. 4)
    L_G    = ‖D(z_I) − D(z_gt)‖², mean over vertices (cm²), eyelids, lips and brows weighted ×5 (not in the paper:
             a latent error costs what it does to the face, so a frozen mouth is not cheap)
λ_z = 1, λ_H = 1000 (a 2-px landmark error then weighs 0.06, comparable to a 0.25σ latent error), λ_view = 1,
λ_G = 100 (a 0.03 cm error on the weighted vertices weighs ~0.1).

z skip path (engine.i2znet): before training, a ridge regression from the teacher's pose-normalised landmarks to
z_gt is fitted in closed form on the clean training crops plus the pool (augmented crops and rendered views, whose
landmarks are cached anyway), λ chosen on the held-out frames (clean and augmented); the z head learns a residual.

Data. z_gt: the DAM's μ per enrollment frame (RUN/dam/latents.npy); K_gt: the teacher's 2D landmarks (crop px).
A monocular enrollment has one real view per instant, so the second view is *rendered*: the DAM decodes
(z_gt, v') to the mesh and texture, drawn (closed mesh: eyes and mouth filled) under a perturbed pose H' (pitch,
yaw, roll ±25°, scale ±10 %, shift ±10 px) and a random light over a random background. It is labelled (z_gt, H')
so L_z and L_H apply to it as well. Real crops are jittered (shift/scale/in-plane rotation, with K_gt and H moved
by the same similarity), recoloured, blurred, noised and JPEG-compressed.
Samples come from a pool (per training frame: a few real augmentations and rendered views) whose teacher-stream
outputs are computed once, so a CPU step costs only the trainable part; `full` rebuilds the pool periodically.
Every 10th enrollment frame (5, 15, 25, …: the DAM's held-out frames) is held out. Writes RUN/i2z/{model.safetensors, config.json, report.json, report.png}.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from engine import i2znet, metrics, pose
from engine import losses as paper
from engine import options, progress
from engine import run as run_layout
from engine.errors import UserError
from engine.i2znet import CROP_SIZE, I2ZNet, TeacherOut
from engine.train_dam import HELD_OUT_EVERY, HELD_OUT_OFFSET  # the same frames the DAM never saw

LAMBDA = {"z": 1.0, "H": 1000.0, "view": 1.0, "G": 100.0}
# L_G's vertex weights: the regions the expressions live in count this much more than the rest of the face.
EXPRESSIVE_WEIGHT = 5.0
PROFILES = {
    # a few minutes on 2 CPU cores (~0.1 s a step: the teacher stream is cached, only the heads and pixel stream run)
    "tiny": {"steps": 2000, "batch": 12, "width": 64, "pixel_channels": 8, "lr": 1e-3,
             "real_per_frame": 2, "views_per_frame": 1, "refresh_every": 0},
    # a GPU: paper-sized heads (p_l ∈ R^512), a fresh pool every 2000 steps
    "full": {"steps": 20000, "batch": 32, "width": 512, "pixel_channels": 32, "lr": 3e-4,
             "real_per_frame": 4, "views_per_frame": 4, "refresh_every": 2000},
}
VIEW_PERTURB_DEG = 25.0


# ------------------------------------------------------------------------------------------------- data
def load_dam(run_dir: Path, n_frames: int):
    """(D in eval mode with frozen weights, z_gt [N,128]) from RUN/dam."""
    folder = run_layout.Run(run_dir).dam
    hint = f"train the DAM first: `facetrack train-dam {run_dir}`"
    if not (folder / run_layout.LATENTS).is_file():
        raise UserError(f"{folder / run_layout.LATENTS}: missing; {hint}")
    try:
        from engine import dam
    except ImportError as err:
        raise UserError(f"engine.dam is not available ({err}); {hint}") from None
    D = dam.load(folder)
    z = np.load(folder / run_layout.LATENTS, allow_pickle=False).astype(np.float32)
    if len(z) != n_frames:
        raise UserError(f"{folder / run_layout.LATENTS}: {len(z)} latents for {n_frames} enrollment frames; {hint}")
    return D, z


def similarity(rng, max_shift=12.0, max_scale=0.1, max_rot_deg=10.0) -> np.ndarray:
    """2×3 crop→crop similarity x' = A·x + m about the crop centre."""
    s = math.exp(rng.uniform(-max_scale, max_scale))
    th = math.radians(rng.uniform(-max_rot_deg, max_rot_deg))
    A = s * np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
    c = np.full(2, (CROP_SIZE - 1) / 2)
    return np.concatenate([A, (c + rng.uniform(-max_shift, max_shift, 2) - A @ c)[:, None]], 1)


def move_pose(H: np.ndarray, M: np.ndarray) -> np.ndarray:
    """H after the image similarity M: f' = s·f, R' = Rz(θ)·R, t' = A·t + m (x = f·Π·R·X + t stays exact)."""
    A = M[:, :2]
    s = math.sqrt(abs(np.linalg.det(A)))
    Rz = np.eye(3)
    Rz[:2, :2] = A / s
    R = Rz @ pose.rotation_matrix(H[1:4])
    return np.concatenate([[H[0] * s], pose.euler_angles(R), A @ H[4:6] + M[:, 2]])


def photometric(rng, image: np.ndarray) -> np.ndarray:
    """Colour (per-channel gain, contrast, gamma), then engine.synth's camera: blur, noise, JPEG."""
    from engine import synth

    img = image.astype(np.float32) / 255
    img = img ** math.exp(rng.uniform(-0.3, 0.3))
    img = (img - 0.5) * rng.uniform(0.7, 1.3) + 0.5 + rng.uniform(-0.1, 0.1)
    img = np.clip(img * 255, 0, 255)
    dom = synth.Domain(synth.DOMAINS["lab"].light, False, 0.0, rng.uniform(0, 6) * (rng.random() < 0.5),
                       rng.uniform(0.3, 1.5) * (rng.random() < 0.4), int(rng.integers(40, 90)) * (rng.random() < 0.4))
    return synth.camera_effects(rng, img, dom, rng.uniform(0.75, 1.25, 3).astype(np.float32))


def augment_real(rng, crop, K, H):
    M = similarity(rng)
    img = cv2.warpAffine(crop, M, (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    return photometric(rng, img), K @ M[:, :2].T + M[:, 2], move_pose(H, M)


def random_lighting(rng):
    from engine.render import Lighting

    tint = lambda: rng.uniform(0.85, 1.15, 3)
    d = np.array([rng.uniform(-1, 1), rng.uniform(-1, 0.5), -rng.uniform(0.3, 1.0)])
    return Lighting(tuple(rng.uniform(0.25, 0.65) * tint()), tuple(rng.uniform(0.2, 0.7) * tint()),
                    tuple(d / np.linalg.norm(d)), shadow=bool(rng.random() < 0.3))


def random_background(rng, crops: np.ndarray) -> np.ndarray:
    """A cluttered collage (engine.synth), a plain gradient, or an enlarged corner of another enrollment crop."""
    from engine import synth

    u = rng.random()
    if u < 0.5:
        return synth.background(rng, (CROP_SIZE, CROP_SIZE), clutter=True)
    if u < 0.7:
        return (synth.background(rng, (CROP_SIZE, CROP_SIZE), clutter=False) * rng.uniform(0.4, 1.3, 3)).clip(0, 255) \
            .astype(np.uint8)
    c = crops[int(rng.integers(len(crops)))]
    y, x = (0 if rng.random() < 0.5 else CROP_SIZE - 48), (0 if rng.random() < 0.5 else CROP_SIZE - 48)
    return cv2.resize(c[y:y + 48, x:x + 48], (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_CUBIC)


def perturb_pose(rng, H: np.ndarray) -> np.ndarray:
    d = np.radians(rng.uniform(-VIEW_PERTURB_DEG, VIEW_PERTURB_DEG, 3))
    angles = np.clip(H[1:4] + d, np.radians([-40, -60, -35]), np.radians([40, 60, 35]))
    return np.concatenate([[H[0] * math.exp(rng.uniform(-0.1, 0.1))], angles, H[4:6] + rng.uniform(-10, 10, 2)])


class ViewRenderer:
    """The second view of an instant: D(z_gt, v') → (G, T) drawn under H' over a background (Eq. 4's I_w)."""

    def __init__(self, D):
        from engine.render import OffscreenRenderer
        from engine.topology import topology

        topo = topology()
        self.D = D
        self.r = OffscreenRenderer(CROP_SIZE, CROP_SIZE)
        self.r.set_mesh(np.concatenate([topo.triangles, topo.holes]), topo.uv)

    @torch.no_grad()
    def __call__(self, rng, z: np.ndarray, H: np.ndarray, crops: np.ndarray):
        Hv = perturb_pose(rng, H)
        v = pose.view_vector(torch.from_numpy(Hv).float()[None])
        G, T = self.D.decode(torch.from_numpy(z).float()[None].to(_device(self.D)), v.to(_device(self.D)))
        G = G[0].cpu().double().numpy()
        self.r.set_texture((T[0].permute(1, 2, 0).cpu().numpy().clip(0, 1) * 255).astype(np.uint8))
        verts = pose.transform(G, Hv)
        verts[:, :2] += 0.5             # renderer: pixel centres at j + ½; crops/landmarks: at j (OpenCV)
        img = self.r.render(verts.astype(np.float32), random_lighting(rng), random_background(rng, crops))
        return photometric(rng, img), pose.project(G, Hv), Hv

    def close(self):
        self.r.release()


def _device(module) -> torch.device:
    try:
        return next(iter(module.parameters())).device
    except (StopIteration, AttributeError):
        buf = next(iter(module.buffers()), None) if hasattr(module, "buffers") else None
        return buf.device if buf is not None else torch.device("cpu")


def build_pool(rng, data, z_gt, frames, renderer, model, cfg, device) -> dict:
    """Per training frame: `real_per_frame` augmented crops + `views_per_frame` rendered views, with labels and
    the teacher stream precomputed (fp16 features) when the model uses it."""
    images, K, H, Z, frame, kind = [], [], [], [], [], []
    for j, i in enumerate(tqdm(frames, desc="i2z pool", unit="frame", disable=None, leave=False)):
        progress.report("train-i2z: pool", j + 1, len(frames))
        for _ in range(cfg["real_per_frame"]):
            img, k, h = augment_real(rng, data["crops"][i], data["landmarks"][i, :, :2].astype(np.float64),
                                     data["H"][i].astype(np.float64))
            images.append(img), K.append(k), H.append(h), Z.append(z_gt[i]), frame.append(i), kind.append(0)
        for _ in range(cfg["views_per_frame"]):
            img, k, h = renderer(rng, z_gt[i], data["H"][i].astype(np.float64), data["crops"])
            images.append(img), K.append(k), H.append(h), Z.append(z_gt[i]), frame.append(i), kind.append(1)
    pool = {"images": torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(),
            "K": torch.from_numpy(np.stack(K)).float(), "H": torch.from_numpy(np.stack(H)).float(),
            "z": torch.from_numpy(np.stack(Z)).float(), "frame": np.array(frame), "kind": np.array(kind)}
    if model.use_teacher:
        feats, lms, pres = [], [], []
        for s in range(0, len(images), 16):
            t = model.teacher_stream(model.prepare(pool["images"][s:s + 16].to(device)))
            feats.append([f.half().cpu() for f in t.features])
            lms.append(t.landmarks.cpu()), pres.append(t.presence.cpu())
        pool["teacher"] = TeacherOut([torch.cat(f) for f in zip(*feats)], torch.cat(lms), torch.cat(pres))
    return pool


def sample_batch(rng, pool, batch: int):
    """batch/2 instants, each as a (real, rendered) view pair: indices [real..., rendered...]."""
    frames = rng.choice(np.unique(pool["frame"]), batch // 2, replace=False)
    pick = lambda f, k: rng.choice(np.flatnonzero((pool["frame"] == f) & (pool["kind"] == k)))
    return np.array([pick(f, 0) for f in frames] + [pick(f, 1) for f in frames])


# ------------------------------------------------------------------------------------------------ z skip path
SKIP_LAMBDAS = tuple(10.0 ** k for k in range(-4, 4))      # ridge λ grid (features standardised, per sample)


def skip_reference() -> np.ndarray:
    """The Procrustes target of the skip features: the canonical shape, centred, unit RMS radius."""
    from engine import canonical

    ref = canonical.load()[0].astype(np.float64)
    ref = ref - ref.mean(0)
    return ref / np.sqrt((ref ** 2).sum(-1).mean())


def fit_skip(F_train: np.ndarray, z_train: np.ndarray, F_val: np.ndarray, z_val: np.ndarray,
             lambdas=SKIP_LAMBDAS) -> dict:
    """Ridge regression z ≈ W·f + b from skip features (landmark_features) in closed form, λ chosen on the
    held-out pairs. Features are standardised for the fit; the scaling is folded into W, b. Returns W [Z,P],
    b [Z], the chosen λ and the held-out fraction of z variance explained (R², vs predicting the train mean)."""
    F_train, F_val = np.asarray(F_train, np.float64), np.asarray(F_val, np.float64)
    mu, sd = F_train.mean(0), F_train.std(0) + 1e-6
    A, Av = (F_train - mu) / sd, (F_val - mu) / sd
    zm = z_train.mean(0)
    gram, rhs = A.T @ A, A.T @ (z_train - zm)
    total = ((z_val - zm) ** 2).sum()
    best = None
    r2 = {}
    for lam in lambdas:
        W = np.linalg.solve(gram + lam * len(A) * np.eye(len(gram)), rhs)      # λ per sample: size-independent
        r2[lam] = float(1 - ((Av @ W + zm - z_val) ** 2).sum() / max(total, 1e-12))
        if best is None or r2[lam] > r2[best[0]]:
            best = (lam, W)
    lam, W = best
    Wf = (W / sd[:, None]).T                                                   # [Z,P] on raw features
    return {"weight": Wf.astype(np.float32), "bias": (zm - Wf @ mu).astype(np.float32), "lambda": lam,
            "r2_held_out": r2[lam], "r2_by_lambda": {f"{k:g}": round(v, 4) for k, v in r2.items()}}


def fit_model_skip(rng, model, data, z_gt, train, held, pool, device, held_augmentations: int = 2) -> dict:
    """Fit the model's z skip path: ridge from the teacher's pose-normalised landmarks to z_gt on the clean
    training crops plus the pool's samples (augmented crops and rendered views, whose cached landmarks make the map
    robust to what augmentation does to the teacher); λ chosen on the held-out frames, clean and augmented."""
    model.set_skip(skip_reference(), np.zeros(tuple(model.skip_weight.shape)), np.zeros(len(model.skip_bias)))
    feats = lambda lm: model.skip_features(lm.to(device)).double().cpu().numpy()
    clean = feats(teacher_landmarks(model, data["crops"], device))
    aug = [augment_real(rng, data["crops"][i], data["landmarks"][i, :, :2].astype(np.float64),
                        data["H"][i].astype(np.float64))[0] for i in held for _ in range(held_augmentations)]
    F_train, z_train = [clean[train]], [z_gt[train]]
    if "teacher" in pool:
        F_train.append(feats(pool["teacher"].landmarks)), z_train.append(pool["z"].numpy())
    F_val, z_val = [clean[held]], [z_gt[held]]
    if aug:
        F_val.append(feats(teacher_landmarks(model, np.stack(aug), device)))
        z_val.append(np.repeat(z_gt[held], held_augmentations, 0))
    fit = fit_skip(np.concatenate(F_train), np.concatenate(z_train), np.concatenate(F_val), np.concatenate(z_val))
    model.set_skip(skip_reference(), fit["weight"], fit["bias"])
    zm = z_gt[train].mean(0)
    r2 = lambda p, z: float(1 - ((p - z) ** 2).sum() / ((z - zm) ** 2).sum())
    pred = clean @ fit["weight"].T.astype(np.float64) + fit["bias"]
    return {"lambda": fit["lambda"], "r2_held_out_clean_and_augmented": fit["r2_held_out"],
            "r2_held_out_clean": r2(pred[held], z_gt[held]), "r2_train_clean": r2(pred[train], z_gt[train]),
            "r2_by_lambda": fit["r2_by_lambda"]}


@torch.no_grad()
def teacher_landmarks(model, images: np.ndarray, device, batch: int = 16) -> torch.Tensor:
    """The frozen teacher's landmarks [N,468,3] (192 px) on uint8 crops [N,256,256,3]."""
    out = []
    for s in range(0, len(images), batch):
        x = torch.from_numpy(images[s:s + batch]).permute(0, 3, 1, 2).to(device)
        out.append(model.teacher_stream(model.prepare(x)).landmarks.cpu())
    return torch.cat(out)


# ------------------------------------------------------------------------------------------------ losses
def expressive_weights(vertices: int = 468) -> torch.Tensor:
    """[V] weights for L_G: EXPRESSIVE_WEIGHT on the eyes' and lips' loops, the brows and the vertices the ARKit
    values are measured on (export.expressions), 1 elsewhere."""
    from engine.topology import subsets
    from export import expressions as ex

    w = torch.ones(vertices)
    s = subsets()
    idx = [s[k] for k in ("eye_left", "eye_right", "brow_left", "brow_right", "lips")]
    named = [v for pairs in ex.LID_PAIRS.values() for pair in pairs for v in pair]
    for d in (ex.EYE_OUTER, ex.EYE_INNER, ex.BROW_INNER, ex.BROW_OUTER, ex.MOUTH_CORNER):
        named += list(d.values())
    named += [ex.LIP_INNER_UPPER, ex.LIP_INNER_LOWER, ex.LIP_OUTER_UPPER, ex.LIP_OUTER_LOWER, ex.CHIN]
    w[torch.from_numpy(np.unique(np.concatenate([np.asarray(i).ravel() for i in idx] + [np.array(named)])))
      .long()] = EXPRESSIVE_WEIGHT
    return w


def losses(z, H, z_gt, K_gt, D, G_weights: torch.Tensor | None = None) -> dict:
    """Eq. 2–4 for a batch laid out as [view v..., view w...] of the same instants, plus L_G: the decoded
    geometry of z against that of z_gt, weighted up on eyelids, lips and brows (a frozen mouth costs what it
    should; a latent error the decoder ignores costs nothing)."""
    # engine.losses has the paper's definitions; scaled here to per-dimension and (px / 256)² units.
    G = D.decode_geometry(z)
    with torch.no_grad():
        G_gt = D.decode_geometry(z_gt)
    L_z = paper.L_z(z, z_gt) / z.shape[-1]
    L_H = paper.L_H(H, G, K_gt) / CROP_SIZE ** 2
    L_view = paper.L_view(*z.chunk(2)) / z.shape[-1]
    L_G = paper.L_G(G, G_gt, G_weights)
    total = LAMBDA["z"] * L_z + LAMBDA["H"] * L_H + LAMBDA["view"] * L_view + LAMBDA["G"] * L_G
    return {"total": total, "L_z": L_z, "L_H": L_H, "L_view": L_view, "L_G": L_G}


@torch.no_grad()
def evaluate(model, D, data, z_gt, frames, device, batch: int = 16) -> dict:
    """On un-augmented enrollment crops: z error, landmark reprojection (crop px) and rotation error (deg)."""
    model.eval()
    zs, Hs, Ks = [], [], []
    for s in range(0, len(frames), batch):
        idx = frames[s:s + batch]
        x = torch.from_numpy(data["crops"][idx]).permute(0, 3, 1, 2).to(device)
        z, H = model(x)
        zs.append(z), Hs.append(H), Ks.append(pose.project(D.decode_geometry(z), H).cpu())
    z, H, K = torch.cat(zs).cpu().numpy(), torch.cat(Hs).cpu().numpy(), torch.cat(Ks).numpy()
    K_gt = data["landmarks"][frames, :, :2]
    zg = z_gt[frames]
    return {
        "frames": len(frames),
        "z_rmse": float(np.sqrt(((z - zg) ** 2).mean())),
        "z_rmse_predict_mean": float(np.sqrt(((z_gt.mean(0) - zg) ** 2).mean())),   # the trivial baseline
        "z_r2": float(1 - ((z - zg) ** 2).sum() / max(((zg - z_gt.mean(0)) ** 2).sum(), 1e-12)),  # variance explained
        "landmark_px": float(np.linalg.norm(K - K_gt, axis=-1).mean()),
        "rotation_deg": metrics.pose_error_deg(H, data["H"][frames])["mean"],
        "H": H, "K": K,
    }


# ------------------------------------------------------------------------------------------------- train
def train_i2z(run_dir: str | Path, profile: str | dict = "tiny", steps: int | None = None, streams: str = "both",
              multi_level: bool = True, seed: int = 0, dam=None, out: str | Path | None = None) -> dict:
    """Train E_I on RUN's enrollment + DAM; returns the report (also RUN/i2z/report.json).

    `profile`: a name in PROFILES or a dict overriding "tiny"'s entries.
    `dam`: a decoder object to use instead of loading RUN/dam (tests); `out`: output folder (default RUN/i2z).
    """
    if isinstance(profile, dict):                 # a custom profile (tests): PROFILES["tiny"] with overrides
        cfg, profile = {**PROFILES["tiny"], **profile}, profile.get("name", "custom")
    elif profile in PROFILES:
        cfg = dict(PROFILES[profile])
    else:
        raise UserError(f"unknown profile {profile!r} (choose from {', '.join(PROFILES)})")
    run_dir = Path(run_dir)
    if steps is not None:
        if steps < 1:
            raise UserError(f"--steps must be ≥ 1 (got {steps})")
        cfg["steps"] = steps
    out = Path(out) if out is not None else run_layout.Run(run_dir).i2z
    data = run_layout.load_enrollment(run_dir, ("crops", "landmarks", "H"))
    n = len(data["H"])
    if dam is None:
        D, z_gt = load_dam(run_dir, n)
    else:
        D, z_gt = dam, np.load(run_layout.Run(run_dir).dam / run_layout.LATENTS, allow_pickle=False).astype(np.float32)
    held = np.arange(HELD_OUT_OFFSET, n, HELD_OUT_EVERY)
    train = np.setdiff1d(np.arange(n), held)
    if len(train) < 2:
        raise UserError(f"{run_dir}: only {n} enrollment frames; I2ZNet needs at least 3")
    device = torch.device("cuda" if profile != "tiny" and torch.cuda.is_available() else "cpu")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)

    model = I2ZNet({"streams": streams, "multi_level": multi_level, "width": cfg["width"],
                    "pixel_channels": cfg["pixel_channels"], "z_dim": int(z_gt.shape[1])})
    model.set_statistics(z_gt[train], data["H"][train])
    model.to(device)
    if hasattr(D, "to"):
        D = D.to(device)
    D.eval()
    for p in getattr(D, "parameters", lambda: [])():
        p.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg["lr"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg["steps"], eta_min=cfg["lr"] * 0.05)
    batch = min(cfg["batch"], 2 * len(train)) // 2 * 2

    start = time.perf_counter()
    renderer = ViewRenderer(D)
    try:
        pool = build_pool(rng, data, z_gt, train, renderer, model, cfg, device)
        skip = None
        if model.z_skip:
            skip = fit_model_skip(rng, model, data, z_gt, train, held, pool, device)
        pool_seconds = time.perf_counter() - start
        history = {k: [] for k in ("total", "L_z", "L_H", "L_view", "L_G")}
        G_weights = expressive_weights(int(getattr(D, "config", {}).get("vertices", 468))).to(device)
        model.train()
        for step in tqdm(range(cfg["steps"]), desc="train-i2z", unit="step", disable=None):
            if cfg["refresh_every"] and step and step % cfg["refresh_every"] == 0:
                pool = build_pool(rng, data, z_gt, train, renderer, model, cfg, device)
            idx = torch.from_numpy(sample_batch(rng, pool, batch))
            teacher = None
            if "teacher" in pool:
                t = pool["teacher"]
                teacher = TeacherOut([f[idx].to(device) for f in t.features], t.landmarks[idx].to(device),
                                     t.presence[idx].to(device))
            z, H = model(pool["images"][idx].to(device), teacher)
            L = losses(z, H, pool["z"][idx].to(device), pool["K"][idx].to(device), D, G_weights)
            opt.zero_grad(set_to_none=True)
            L["total"].backward()
            opt.step()
            sched.step()
            progress.report("train-i2z", step + 1, cfg["steps"])
            for k, v in L.items():
                history[k].append(float(v.detach()))
    finally:
        renderer.close()
    seconds = time.perf_counter() - start

    i2znet.save(model, out)
    held_eval = evaluate(model, D, data, z_gt, held, device)
    train_eval = evaluate(model, D, data, z_gt, train[:: max(1, len(train) // 30)], device)
    # What the DAM itself allows: the enrollment pose with the decoded z_gt (a floor for landmark_px).
    with torch.no_grad():
        Gd = D.decode_geometry(torch.from_numpy(z_gt[held]).to(device)).cpu().double().numpy()
    floor = float(np.linalg.norm(pose.project(Gd, data["H"][held].astype(np.float64))
                                 - data["landmarks"][held, :, :2], axis=-1).mean())
    tail = lambda k: float(np.mean(history[k][-max(1, cfg["steps"] // 20):]))
    report = {
        "profile": profile, "streams": streams, "multi_level": multi_level, "seed": seed, "device": str(device),
        "steps": cfg["steps"], "batch": batch, "seconds": round(seconds, 1), "pool_seconds": round(pool_seconds, 1),
        "pool_size": int(len(pool["frame"])), "frames_train": int(len(train)), "frames_held_out": int(len(held)),
        "lambda": LAMBDA, "units": {"L_z": "latent² per dim", "L_H": "(crop px / 256)²", "L_view": "latent² per dim",
                                    "L_G": "cm² (vertex-weighted mean)",
                                    "landmark_px": "256-crop pixels", "rotation_deg": "degrees vs enrollment H"},
        "losses_first": {k: v[0] for k, v in history.items()},
        "losses_final": {k: tail(k) for k in history},
        "held_out": {k: v for k, v in held_eval.items() if k not in ("H", "K")},
        "train_subset": {k: v for k, v in train_eval.items() if k not in ("H", "K")},
        "dam_floor_landmark_px": floor,
        "z_skip": skip,
        "parameters_trainable": int(sum(p.numel() for p in params)),
        "history_stride": max(1, cfg["steps"] // 1000),
        "history": {k: v[:: max(1, cfg["steps"] // 1000)] for k, v in history.items()},
    }
    options.write_json(out / "report.json", report)
    plot(history, data, held, held_eval, out / "report.png", report)
    return report


def plot(history: dict, data: dict, held: np.ndarray, ev: dict, path: Path, report: dict) -> None:
    """Loss curves (log) and held-out crops with the predicted mesh (green) and teacher landmarks (red dots)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from engine.topology import topology

    tris = topology().triangles
    picks = np.linspace(0, len(held) - 1, min(4, len(held))).round().astype(int)
    fig = plt.figure(figsize=(12, 6.5))
    ax = fig.add_subplot(2, 1, 1)
    smooth = lambda v: np.convolve(v, np.ones(min(10, len(v))) / min(10, len(v)), mode="valid")
    for k, lam in (("total", 1.0), ("L_z", LAMBDA["z"]), ("L_H", LAMBDA["H"]), ("L_view", LAMBDA["view"]),
                   ("L_G", LAMBDA["G"])):
        ax.plot(smooth(np.asarray(history[k]) * lam), label=k if k == "total" else f"λ·{k}")
    ax.set_yscale("log"), ax.set_xlabel("step"), ax.legend(fontsize=8)
    h = report["held_out"]
    ax.set_title(f"I2ZNet {report['profile']} ({report['streams']}, {'multi' if report['multi_level'] else 'single'}"
                 f"-level): held-out {h['landmark_px']:.2f} px, {h['rotation_deg']:.2f}°, z RMSE {h['z_rmse']:.3f} "
                 f"(mean-predictor {h['z_rmse_predict_mean']:.3f})", fontsize=9)
    for j, p in enumerate(picks):
        i = held[p]
        img, mesh = data["crops"][i].copy(), data["crops"][i].copy()
        cv2.polylines(mesh, list(np.round(ev["K"][p][tris] * 16).astype(np.int32)), True, (60, 255, 90), 1,
                      cv2.LINE_AA, shift=4)
        img = cv2.addWeighted(img, 0.55, mesh, 0.45, 0)   # translucent, so the face stays readable
        for x, y in data["landmarks"][i, ::6, :2]:
            cv2.circle(img, (int(round(x)), int(round(y))), 1, (255, 40, 40), -1)
        a = fig.add_subplot(2, len(picks), len(picks) + j + 1)
        a.imshow(img), a.set_axis_off()
        err = np.linalg.norm(ev["K"][p] - data["landmarks"][i, :, :2], axis=-1).mean()
        a.set_title(f"frame {i}: {err:.2f} px", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# --------------------------------------------------------------------------------------------------- CLI
def _run(args) -> None:
    run = args.run_dir
    if args.out is not None:          # a new run folder sharing RUN's enrollment and DAM (ablations, seeds)
        run_layout.Run(args.out).share(run_layout.Run(run))
        run = args.out
    report = train_i2z(run, profile=args.profile, steps=args.steps, streams=args.streams,
                       multi_level=not args.single_level, seed=args.seed)
    h = report["held_out"]
    print(f"I2ZNet ({report['streams']}, {report['steps']} steps, {report['seconds']:.0f} s): held-out landmarks "
          f"{h['landmark_px']:.2f} px, rotation {h['rotation_deg']:.2f}°, z RMSE {h['z_rmse']:.3f}"
          f" → {run / 'i2z'}")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("train-i2z", help="train I2ZNet (image → z, H) on the enrollment set and the DAM")
    p.add_argument("run_dir", metavar="RUN", type=Path, help="run folder with enrollment/ and dam/")
    p.add_argument("--profile", choices=tuple(PROFILES), default="tiny")
    p.add_argument("--steps", type=options.count(1, 1_000_000), default=None)
    p.add_argument("--streams", choices=i2znet.STREAMS, default="both")
    p.add_argument("--single-level", action="store_true", help="deepest level (6²) only")
    p.add_argument("--seed", type=options.count(0, 2**31 - 1), default=0)
    p.add_argument("--out", type=Path, default=None, help="write a new run folder RUN2 (enrollment/ and dam/ "
                                                           "linked to RUN's) instead of RUN/i2z")
    p.set_defaults(run=_run)
