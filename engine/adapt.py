"""`facetrack adapt RUN VIDEO --out RUN2`: self-supervised domain adaptation of E_I (paper §3.2, Eq. 5–9).

On consecutive frame pairs (t−1, t) of an unlabeled video of the new environment:

    L_DA^t = λ_CFTC·L_CFTC^t + λ_MOTC·L_MOTC^t + λ_FLRC·L_FLRC^t                               (Eq. 5)

E_I predicts (z, H) for both frames; D decodes G (and T at t); T̃ and W are unwrapped from each frame with its
own G and H (Eq. 7, differentiable in G and H); C is the learned 1×1 colour conv. Only E_I's heads and
compressors and C are trained by default (the teacher stream is frozen; `--train heads,pixel` adds the pixel
stream); D is frozen. The only thing read from the video besides its pixels is the teacher's 2D landmarks (for
L_FLRC): `prepare` is the one place that touches the video and it opens nothing else, so no label can leak in.

Test phase (Fig. 5): tracking is then one feed-forward pass of E_I, D and C (`facetrack export`).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from engine import dam as dam_module
from engine import i2znet, losses, options, pose, progress, unwrap, video
from engine.enroll import track_frames
from engine.errors import UserError
from engine.run import DAM, ENROLLMENT, WEIGHTS, Run

LOSSES = ("cftc", "motc", "flrc")
# C has 12 parameters and starts at the identity: it gets its own, larger step (`colour_lr`) so that it, not z and H,
# soaks up the new environment's colour cast early in L_MOTC (at E_I's lr it moves ≤ lr per step: 0.05 in 150 steps).
PROFILES = {"tiny": {"steps": 150, "batch": 4, "lr": 3e-4, "colour_lr": 1e-2},
            "full": {"steps": 3000, "batch": 16, "lr": 1e-4, "colour_lr": 3e-3}}
TRAINABLE = ("heads", "pixel")


def prepare(video_path: str | Path, start: float = 0.0, stop: float = 1.0, max_frames: int | None = None) -> dict:
    """Teacher tracking over the video: crops [N,256,256,3] uint8, teacher landmarks K [N,468,2] (crop px), frame
    index [N], and pairs [P,2] of consecutive tracked frames."""
    info = video.probe(video_path)
    crops, K, index = [], [], []
    for _, fi, found in track_frames([info], {}, max_frames, start, stop, label="adapt: teacher"):
        if found is not None:
            crops.append(found.image)
            K.append(found.landmarks[:, :2].astype(np.float32))
            index.append(fi)
    if len(index) < 2:
        raise UserError(f"{video_path}: a face was tracked in {len(index)} frames; adaptation needs consecutive frames")
    index = np.asarray(index)
    pairs = np.nonzero(np.diff(index) == 1)[0]
    if not len(pairs):
        raise UserError(f"{video_path}: no two consecutive frames with a face")
    return {"crops": np.stack(crops), "K": np.stack(K), "index": index, "pairs": np.stack([pairs, pairs + 1], 1)}


class Adapter(torch.nn.Module):
    """E_I (partly trainable), D (frozen) and C (trainable) with the three adaptation losses."""

    def __init__(self, e_i: i2znet.I2ZNet, dam: dam_module.DAM, colour: dam_module.ColourCorrection,
                 active: tuple[str, ...], threshold: float = losses.W_THRESHOLD):
        super().__init__()
        self.e_i, self.dam, self.colour, self.active, self.threshold = e_i, dam, colour, active, threshold
        for p in dam.parameters():
            p.requires_grad_(False)
        self.size = int(dam.config["texture_size"])

    def forward(self, prev: torch.Tensor, cur: torch.Tensor, K: torch.Tensor, teacher=None) -> dict:
        """prev, cur: uint8 crops [B,256,256,3]; K: teacher landmarks of `cur` [B,468,2] → losses and tensors."""
        x = torch.cat([prev, cur]).permute(0, 3, 1, 2).contiguous()
        z, H = self.e_i(x, teacher)
        G = self.dam.decode_geometry(z)
        T_obs, W = unwrap.unwrap(x.float() / 255, G, H, self.size)
        b = len(prev)
        out = {"z": z[b:], "H": H[b:], "T_obs": T_obs[b:], "W": W[b:]}
        terms = {}
        if "cftc" in self.active:
            terms["cftc"] = losses.L_CFTC(T_obs[b:], W[b:], T_obs[:b], W[:b], self.threshold)
        if "motc" in self.active:
            out["T_corrected"] = self.colour(self.dam.decode_texture(z[b:], pose.view_vector(H[b:])))
            terms["motc"] = losses.L_MOTC(T_obs[b:], W[b:], out["T_corrected"], self.threshold)
        if "flrc" in self.active:
            terms["flrc"] = losses.L_FLRC(H[b:], G[b:], K)
        weights = {"cftc": losses.LAMBDA_CFTC, "motc": losses.LAMBDA_MOTC, "flrc": losses.LAMBDA_FLRC}
        out["terms"] = terms
        out["total"] = sum(weights[k] * v for k, v in terms.items())
        return out


def adapt(run: str | Path, video_path: str | Path, out: str | Path, active=LOSSES, steps: int | None = None,
          profile: str = "tiny", train: tuple[str, ...] = ("heads",), start: float = 0.0, stop: float = 1.0,
          max_frames: int | None = None, seed: int = 0, lr: float | None = None,
          threshold: float = losses.W_THRESHOLD) -> dict:
    run, out = Path(run), Path(out)
    unknown = set(active) - set(LOSSES) or set(train) - set(TRAINABLE)
    if unknown or not active:
        raise UserError(f"unknown or empty choice {sorted(unknown) or '[]'}: losses from {LOSSES}, train from {TRAINABLE}")
    cfg = dict(PROFILES[profile], **({"steps": steps} if steps else {}), **({"lr": lr} if lr else {}))
    dam, e_i = dam_module.load(Run(run).dam), i2znet.load(Run(run).i2z)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    data = prepare(video_path, start, stop, max_frames)
    model = Adapter(e_i, dam, dam_module.ColourCorrection(), tuple(active), threshold)
    e_i.requires_grad_(False)
    params = []
    for group in train:
        group_params = e_i.heads_parameters() if group == "heads" else e_i.pixel_stream_parameters()
        for p in group_params:
            p.requires_grad_(True)
        params += group_params
    optimiser = torch.optim.Adam([{"params": params},
                                  {"params": list(model.colour.parameters()), "lr": cfg["colour_lr"]}], lr=cfg["lr"])
    crops, K, pairs = (torch.from_numpy(data[k]) for k in ("crops", "K", "pairs"))
    probe_pair = pairs[len(pairs) // 2: len(pairs) // 2 + 1]
    before = _snapshot(model, crops, K, probe_pair)
    history, t0 = {k: [] for k in (*active, "total")}, time.perf_counter()
    e_i.train()
    for step in tqdm(range(cfg["steps"]), desc="adapt", unit="step", disable=None):
        pick = pairs[rng.integers(0, len(pairs), cfg["batch"])]
        result = model(crops[pick[:, 0]], crops[pick[:, 1]], K[pick[:, 1]])
        optimiser.zero_grad()
        result["total"].backward()
        optimiser.step()
        for k, v in result["terms"].items():
            history[k].append(float(v.detach()))
        history["total"].append(float(result["total"].detach()))
        progress.report("adapt", step + 1, cfg["steps"])
    e_i.eval()
    seconds = time.perf_counter() - t0
    after = _snapshot(model, crops, K, probe_pair)
    _write_run(run, out, e_i, model.colour)
    report = {
        "video": str(video_path), "span": [start, stop], "frames_tracked": len(data["index"]),
        "pairs": len(data["pairs"]), "losses": list(active), "trained": list(train), "profile": profile,
        "steps": cfg["steps"], "batch": cfg["batch"], "lr": cfg["lr"], "colour_lr": cfg["colour_lr"],
        "threshold": threshold, "seconds": seconds,
        "first": {k: float(np.mean(v[:10])) for k, v in history.items()},
        "last": {k: float(np.mean(v[-10:])) for k, v in history.items()},
        "colour_matrix": model.colour.matrix.detach().tolist(), "colour_bias": model.colour.conv.bias.detach().tolist(),
    }
    (out / "adapt").mkdir(parents=True, exist_ok=True)
    options.write_json(out / "adapt" / "report.json", report)
    np.savez(out / "adapt" / "history.npz", **{k: np.asarray(v) for k, v in history.items()})
    plot(history, before, after, out / "adapt" / "report.png")
    return report


@torch.no_grad()
def _snapshot(model: Adapter, crops, K, pair) -> dict:
    e_i_mode = model.e_i.training
    model.e_i.eval()
    r = model(crops[pair[:, 0]], crops[pair[:, 1]], K[pair[:, 1]])
    model.e_i.train(e_i_mode)
    T = model.dam.decode_texture(r["z"], pose.view_vector(r["H"]))
    return {"T_obs": r["T_obs"][0], "W": r["W"][0], "CT": model.colour(T)[0]}


def _write_run(run: Path, out: Path, e_i: i2znet.I2ZNet, colour: dam_module.ColourCorrection) -> None:
    """RUN2 = RUN's enrollment and DAM (linked and copied) + the adapted E_I + C."""
    from safetensors.torch import save_file

    adapted = Run(out)
    adapted.share(Run(run), link=(ENROLLMENT,), copy=(DAM,))
    i2znet.save(e_i, adapted.i2z)
    adapted.colour.mkdir(exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in colour.state_dict().items()}, str(adapted.colour / WEIGHTS))


def plot(history: dict, before: dict, after: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img = lambda t: t.detach().permute(1, 2, 0).clamp(0, 1).numpy()
    fig = plt.figure(figsize=(14, 7))
    ax = fig.add_subplot(2, 1, 1)
    for k, v in history.items():
        ax.semilogy(np.maximum(v, 1e-9), label=k)
    ax.set_xlabel("step")
    ax.legend()
    ax.set_title("adaptation losses (λ-weighted total; terms unweighted)")
    panels = [("T̃ before", img(before["T_obs"])), ("C(T) before", img(before["CT"])), ("W before", before["W"][0]),
              ("T̃ after", img(after["T_obs"])), ("C(T) after", img(after["CT"])), ("W after", after["W"][0])]
    for i, (title, im) in enumerate(panels):
        a = fig.add_subplot(2, 6, 7 + i)
        a.imshow(im, cmap="gray" if im.ndim == 2 else None, vmin=0, vmax=1)
        a.set_title(title)
        a.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def add_parser(sub) -> None:
    p = sub.add_parser("adapt", help="self-supervised adaptation of I2ZNet to a new environment's video")
    p.add_argument("run_dir", metavar="RUN", type=Path)
    p.add_argument("video", metavar="VIDEO", type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--losses", default=",".join(LOSSES), help="comma list of cftc,motc,flrc")
    p.add_argument("--train", default="heads", help="comma list of heads,pixel (teacher stream stays frozen)")
    p.add_argument("--steps", type=options.count(1, 1_000_000))
    p.add_argument("--lr", type=options.positive(1.0), help="Adam learning rate (default: the profile's)")
    p.add_argument("--threshold", type=options.fraction, default=losses.W_THRESHOLD,
                   help="W below this counts as unseen in L_CFTC / L_MOTC (default %(default).2f)")
    p.add_argument("--profile", choices=tuple(PROFILES), default="tiny")
    p.add_argument("--start", type=options.fraction, default=0.0)
    p.add_argument("--stop", type=options.fraction, default=1.0)
    p.add_argument("--max-frames", type=options.count(2))
    p.set_defaults(run=_run)


def _run(args) -> None:
    report = adapt(args.run_dir, args.video, args.out, tuple(filter(None, args.losses.split(","))), args.steps,
                   args.profile, tuple(filter(None, args.train.split(","))), args.start, args.stop, args.max_frames,
                   lr=args.lr, threshold=args.threshold)
    print(json.dumps({"first": report["first"], "last": report["last"], "seconds": round(report["seconds"], 1)}))
