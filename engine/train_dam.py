"""Train the performer's DAM on an enrollment set (paper §3.1: E_X and D are learned first; their μ per frame
become z_gt for I2ZNet).

    facetrack train-dam RUN [--profile tiny|full] [--steps N] [--seed S]

Reads RUN/enrollment/{G,H,textures,weights}.npy, writes RUN/dam/: model.safetensors + config.json (the DAM),
latents.npy (μ of EVERY enrollment frame, [N,128] float32, in enrollment order), log.csv (per-step losses),
report.json and report.png.

Split: every 10th enrollment frame (indices 5, 15, 25, …) is held out and only used for evaluation; the
latents of those frames are still written, as the I2ZNet step decides its own split.

Loss per batch:  λ_G·L_G + λ_T·L_T + λ_KL·KL
    L_G   mean over vertices of ‖G − Ĝ‖²  (cm²)
    L_T   Σ W·|T − T̃| / (3·ΣW)           (W-weighted L1: unseen texels, W = 0, do not count)
    KL    KL(N(μ,σ²) ‖ N(0,I)), summed over z, averaged over the batch; λ_KL = 1e-3 keeps z close to a unit
          Gaussian (so interpolation and I2ZNet's regression target are well behaved) without blurring the
          reconstruction, as in Lombardi et al.'s small KL weight.
"""
from __future__ import annotations

import csv
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from engine import dam as dam_module
from engine import options, pose, progress
from engine import run as run_layout
from engine.errors import UserError

HELD_OUT_EVERY, HELD_OUT_OFFSET = 10, 5

# Same code path, different sizes. `tiny` trains in a few minutes on 2 CPU cores; `full` is for a GPU.
PROFILES = {
    "tiny": {"texture_size": 64, "channels": [64, 64, 32, 16], "hidden": 256, "view_embedding": 8,
             "steps": 600, "batch": 16, "lr": 1e-3},
    "full": {"texture_size": 256, "channels": [256, 256, 128, 64, 32, 32], "hidden": 512, "view_embedding": 16,
             "steps": 20000, "batch": 32, "lr": 1e-3},
}
LAMBDA_G = 10.0      # per cm²: G varies by ~0.1–0.3 cm between expressions, so L_G ≈ 0.01–0.1 at the mean
LAMBDA_T = 1.0
LAMBDA_KL = 1e-3
MODEL_KEYS = ("texture_size", "channels", "hidden", "view_embedding")


# ---------------------------------------------------------------- data
def load_enrollment(run_dir: Path) -> dict:
    data = run_layout.load_enrollment(run_dir, ("G", "H", "textures", "weights"))
    if len(data["H"]) < HELD_OUT_EVERY:
        raise UserError(f"{run_layout.Run(run_dir).enrollment}: {len(data['H'])} enrolled frames; a DAM needs at "
                        f"least {HELD_OUT_EVERY}")
    return data


def resample_textures(textures: np.ndarray, weights: np.ndarray, size: int, chunk: int = 64):
    """T̃ [N,S0,S0,3] u8, W [N,S0,S0] u8 → ([N,3,S,S] u8, [N,1,S,S] u8) by W-weighted area averaging, so the
    black of unseen texels does not bleed into the seen ones at the new resolution."""
    if textures.shape[1] < size:
        raise UserError(f"enrollment textures are {textures.shape[1]}² but the model needs {size}²; "
                        f"enroll with --texture-size {size} or pick a smaller profile")
    out_t, out_w = [], []
    for i in range(0, len(textures), chunk):
        T = torch.from_numpy(textures[i:i + chunk]).permute(0, 3, 1, 2).float() / 255
        W = torch.from_numpy(weights[i:i + chunk])[:, None].float() / 255
        if T.shape[-1] != size:
            Wa = F.interpolate(W, size=(size, size), mode="area")
            T = F.interpolate(T * W, size=(size, size), mode="area") / Wa.clamp_min(1e-6)
            W = Wa
        out_t.append((T * 255 + 0.5).clamp(0, 255).to(torch.uint8))
        out_w.append((W * 255 + 0.5).clamp(0, 255).to(torch.uint8))
    return torch.cat(out_t), torch.cat(out_w)


def statistics(G: np.ndarray, T: torch.Tensor, W: torch.Tensor):
    """Mean shape, per-coordinate shape std (floored at 10% of its median: a coordinate that barely moves
    should not be amplified into noise) and the W-weighted mean texture [3,S,S]."""
    mean_shape = G.mean(0)
    std = G.std(0)
    std = np.maximum(std, 0.1 * np.median(std) + 1e-6)
    w = W.float() / 255
    mean_texture = (T.float() / 255 * w).sum(0) / w.sum(0).clamp_min(1e-6)
    return mean_shape, std, mean_texture


class Batches:
    """The enrollment set on the training device, converted to floats one batch at a time."""

    def __init__(self, data: dict, T: torch.Tensor, W: torch.Tensor, device):
        self.G = torch.from_numpy(data["G"]).float().to(device)
        self.v = pose.view_vector(torch.from_numpy(data["H"]).float()).to(device)
        self.T, self.W = T.to(device), W.to(device)

    def __call__(self, idx):
        return self.G[idx], self.T[idx].float() / 255, self.W[idx].float() / 255, self.v[idx]


# ---------------------------------------------------------------- losses and metrics
def losses(dam, G, T, W, v) -> dict:
    G_hat, T_hat, mu, logvar = dam(G, T, W, v)
    out = {
        "geometry": (G_hat - G).square().sum(-1).mean(),
        "texture": (W * (T_hat - T).abs()).sum() / (3 * W.sum()).clamp_min(1e-6),
        "kl": dam_module.kl_divergence(mu, logvar),
    }
    out["total"] = LAMBDA_G * out["geometry"] + LAMBDA_T * out["texture"] + LAMBDA_KL * out["kl"]
    return out


@torch.no_grad()
def encode_all(dam, batches: Batches, idx: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    dam.eval()
    mus = [dam.encode(*batches(idx[i:i + chunk])[:3])[0] for i in range(0, len(idx), chunk)]
    return torch.cat(mus)


@torch.no_grad()
def evaluate(dam, batches: Batches, idx: torch.Tensor, chunk: int = 64) -> dict:
    """Held-out metrics with z = μ: mean per-vertex Euclidean error (cm) and texture PSNR (dB) on texels with
    W > 0.5; the same for the enrollment means (what a DAM that ignores its input would score)."""
    dam.eval()
    geo = geo_mean = 0.0
    sq = sq_mean = count = 0.0
    for i in range(0, len(idx), chunk):
        G, T, W, v = batches(idx[i:i + chunk])
        G_hat, T_hat = dam.decode(dam.encode(G, T, W)[0], v)
        visible = (W > 0.5).float()
        geo += (G_hat - G).norm(dim=-1).mean(-1).sum().item()
        geo_mean += (dam.mean_shape - G).norm(dim=-1).mean(-1).sum().item()
        sq += (visible * (T_hat - T).square()).sum().item()
        sq_mean += (visible * (dam.mean_texture - T).square()).sum().item()
        count += 3 * visible.sum().item()
    psnr = lambda s: 10 * math.log10(count / max(s, 1e-12))
    n = len(idx)
    return {"geometry_error_cm": geo / n, "texture_psnr_db": psnr(sq),
            "mean_baseline": {"geometry_error_cm": geo_mean / n, "texture_psnr_db": psnr(sq_mean)}}


# ---------------------------------------------------------------- training
def train_dam(run_dir: str | Path, profile: str | dict = "tiny", steps: int | None = None, seed: int = 0) -> dict:
    """Train a DAM on RUN/enrollment and write RUN/dam/. `profile` is a name in PROFILES or a dict like them
    (tests use a smaller one). Returns the report dict (also written to RUN/dam/report.json)."""
    run_dir = Path(run_dir)
    if isinstance(profile, str):
        if profile not in PROFILES:
            raise UserError(f"unknown profile {profile!r}; choose from {', '.join(PROFILES)}")
        name, spec = profile, PROFILES[profile]
    else:
        name, spec = profile.get("name", "custom"), profile
    steps = spec["steps"] if steps is None else steps
    if steps < 1:
        raise UserError(f"--steps must be ≥ 1 (got {steps})")
    torch.manual_seed(seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    data = load_enrollment(run_dir)
    config = dam_module.default_config(**{k: spec[k] for k in MODEL_KEYS})
    T8, W8 = resample_textures(data["textures"], data["weights"], config["texture_size"])
    n = len(T8)
    held = torch.arange(n)[torch.arange(n) % HELD_OUT_EVERY == HELD_OUT_OFFSET]
    train = torch.arange(n)[torch.arange(n) % HELD_OUT_EVERY != HELD_OUT_OFFSET]
    # Statistics from the training frames only, so the held-out baseline is honest.
    dam = dam_module.DAM(config, *statistics(data["G"][train.numpy()], T8[train], W8[train])).to(device)
    batches = Batches(data, T8, W8, device)

    optimiser = torch.optim.Adam(dam.parameters(), lr=spec["lr"])
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps, eta_min=spec["lr"] * 0.01)
    generator = torch.Generator().manual_seed(seed)
    eval_every = max(steps // 20, 1)
    log, held_log = [], []
    start = time.perf_counter()
    bar = tqdm(range(steps), desc="train DAM", unit="step", disable=None)
    for step in bar:
        dam.train()
        idx = train[torch.randint(len(train), (spec["batch"],), generator=generator)]
        loss = losses(dam, *batches(idx.to(device)))
        optimiser.zero_grad(set_to_none=True)
        loss["total"].backward()
        optimiser.step()
        schedule.step()
        progress.report("train-dam", step + 1, steps)
        log.append({"step": step + 1, "lr": schedule.get_last_lr()[0], **{k: v.item() for k, v in loss.items()}})
        if (step + 1) % eval_every == 0 or step + 1 == steps:
            metrics = evaluate(dam, batches, held.to(device))
            held_log.append({"step": step + 1, **{k: metrics[k] for k in ("geometry_error_cm", "texture_psnr_db")}})
            bar.set_postfix(loss=f"{loss['total'].item():.4f}", held_cm=f"{metrics['geometry_error_cm']:.3f}",
                            psnr=f"{metrics['texture_psnr_db']:.1f}")
    seconds = time.perf_counter() - start

    out = run_layout.Run(run_dir).dam
    dam_module.save(dam, out)
    latents = encode_all(dam, batches, torch.arange(n, device=device)).cpu().numpy().astype(np.float32)
    options.save_npy(out / run_layout.LATENTS, latents)
    with open(out / "log.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(log[0]))
        writer.writeheader()
        writer.writerows(log)

    metrics = evaluate(dam, batches, held.to(device))
    tail = log[-max(steps // 20, 1):]
    report = {
        "profile": name,
        "device": str(device),
        "steps": steps,
        "batch": spec["batch"],
        "seconds": seconds,
        "frames": {"train": len(train), "held_out": len(held),
                   "held_out_rule": f"index % {HELD_OUT_EVERY} == {HELD_OUT_OFFSET}"},
        "loss_weights": {"geometry": LAMBDA_G, "texture": LAMBDA_T, "kl": LAMBDA_KL},
        "final_losses": {k: float(np.mean([r[k] for r in tail])) for k in ("total", "geometry", "texture", "kl")},
        "held_out": metrics,
        "latent_std": float(latents.std(0).mean()),
        "config": config,
    }
    options.write_json(out / "report.json", report)
    figure(dam, batches, held, log, held_log, out / "report.png")
    return report


# ---------------------------------------------------------------- report figure
def _yaw_view(yaw_deg: float, device) -> torch.Tensor:
    H = torch.zeros(1, 6)
    H[0, 2] = math.radians(yaw_deg)
    return pose.view_vector(H).to(device)


@torch.no_grad()
def figure(dam, batches: Batches, held: torch.Tensor, log: list, held_log: list, path: Path) -> None:
    """z walk between two held-out frames (frontal view), one z across yaw −40°/0/+40°, loss curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dam.eval()
    device = dam.mean_shape.device
    a, b = held[0].item(), held[-1].item()
    G, T, W, _ = batches(torch.tensor([a, b], device=device))
    mu = dam.encode(G, T, W)[0]
    frontal = _yaw_view(0, device)
    alphas = np.linspace(0, 1, 5)
    z = torch.stack([(1 - t) * mu[0] + t * mu[1] for t in alphas])
    G_walk, T_walk = dam.decode(z, frontal.expand(len(z), 3))
    views = (-40, 0, 40)
    T_views = dam.decode_texture(mu[:1].expand(len(views), -1), torch.cat([_yaw_view(y, device) for y in views]))
    img = lambda t: t.permute(1, 2, 0).clamp(0, 1).cpu().numpy()
    shift = (G_walk - G_walk[:1]).norm(dim=-1).mean(-1).cpu().numpy()   # how far the walk moves the mesh

    fig = plt.figure(figsize=(14, 7.5))
    grid = fig.add_gridspec(3, 7, height_ratios=[1, 1, 1.3])
    seen = (W > 0).float()                    # T̃ where the frame saw the texel
    row = [(img(T[0] * seen[0]), f"T̃ frame {a} (held out)")]
    row += [(img(T_walk[i]), f"D(z), α={t:.2f}\nΔG {shift[i]:.3f} cm") for i, t in enumerate(alphas)]
    row += [(img(T[1] * seen[1]), f"T̃ frame {b} (held out)")]
    row2 = [(img(dam.mean_texture), "T̄ (mean)")]
    row2 += [(img(T_views[i]), f"D(μ_{a}, yaw {y:+d}°)") for i, y in enumerate(views)]
    diff = (T_views[2] - T_views[0]).abs().mean(0).cpu().numpy()
    row2 += [(diff / max(diff.max(), 1e-6), f"|T(+40°) − T(−40°)|\nmax {diff.max():.3f}")]
    for r, panels in enumerate((row, row2)):
        for c, (image, title) in enumerate(panels):
            ax = fig.add_subplot(grid[r, c])
            ax.imshow(image, cmap="magma" if image.ndim == 2 else None, interpolation="nearest")
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    steps = [r["step"] for r in log]
    ax = fig.add_subplot(grid[2, :4])
    for key, scale, label in (("total", 1, "total"), ("geometry", LAMBDA_G, f"{LAMBDA_G:g}·L_G"),
                              ("texture", LAMBDA_T, "L_T"), ("kl", LAMBDA_KL, f"{LAMBDA_KL:g}·KL")):
        ax.plot(steps, [scale * r[key] for r in log], label=label, lw=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_title("training losses", fontsize=9)
    ax.legend(fontsize=8)
    ax = fig.add_subplot(grid[2, 4:])
    hs = [r["step"] for r in held_log]
    ax.plot(hs, [r["geometry_error_cm"] for r in held_log], "o-", color="C0", ms=3)
    ax.set_ylabel("held-out geometry error (cm)", color="C0")
    ax.set_xlabel("step")
    twin = ax.twinx()
    twin.plot(hs, [r["texture_psnr_db"] for r in held_log], "s-", color="C3", ms=3)
    twin.set_ylabel("held-out texture PSNR (dB, W>0.5)", color="C3")
    ax.set_title("held-out (z = μ)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ---------------------------------------------------------------- command line
def _run(args) -> None:
    report = train_dam(args.run_dir, profile=args.profile, steps=args.steps, seed=args.seed)
    h = report["held_out"]
    print(f"DAM ({report['profile']}, {report['steps']} steps, {report['seconds']:.0f} s on {report['device']}): "
          f"held-out geometry {h['geometry_error_cm']:.3f} cm (mean shape {h['mean_baseline']['geometry_error_cm']:.3f}), "
          f"texture PSNR {h['texture_psnr_db']:.1f} dB (mean texture {h['mean_baseline']['texture_psnr_db']:.1f}) "
          f"→ {run_layout.Run(args.run_dir).dam}")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("train-dam", help="train the performer's Deep Appearance Model on RUN/enrollment")
    p.add_argument("run_dir", metavar="RUN", type=Path, help="run folder holding enrollment/ (from `facetrack enroll`)")
    p.add_argument("--profile", choices=tuple(PROFILES), default="tiny",
                   help="tiny: 64² texture, minutes on a CPU; full: 256² texture, for a GPU")
    p.add_argument("--steps", type=options.count(1, 1_000_000), default=None, help="override the profile's number of steps")
    p.add_argument("--seed", type=options.count(0, 2**31 - 1), default=0)
    p.set_defaults(run=_run)
