"""Self-supervised adaptation (engine.adapt, paper §3.2): C recovers a colour cast through L_MOTC alone; `adapt`
writes a complete RUN2 in which only the heads (and C) moved; it never opens a label; bad --losses are refused."""
import builtins
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from engine import adapt as adapt_module
from engine import dam as dam_module
from engine import i2znet, losses
from engine.errors import UserError

SMALL_I2Z = {"width": 16, "pixel_channels": 4}
SMALL_DAM = {"texture_size": 16, "channels": [16, 8], "hidden": 32, "view_embedding": 4}
FRAMES = 6


# ------------------------------------------------------------------------------------------------ (a) C via L_MOTC
def _smooth_texture(rng, size=32):
    """Per channel, a sum of a few random low-frequency cosines, in [0.1, 0.9]: enough colour variety to pin M."""
    u = (np.arange(size) + 0.5) / size
    x, y = np.meshgrid(u, u)
    channels = []
    for _ in range(3):
        f = sum(rng.normal() * np.cos(np.pi * (rng.integers(0, 4) * x + rng.integers(0, 4) * y) + rng.uniform(0, 6))
                for _ in range(5))
        channels.append(0.1 + 0.8 * (f - f.min()) / (f.max() - f.min()))
    return torch.tensor(np.stack(channels)[None], dtype=torch.float32)


def test_colour_correction_alone_recovers_a_colour_cast_through_L_MOTC():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    T = _smooth_texture(rng)                                              # the model's texture  [1,3,S,S]
    M = torch.tensor([[1.15, 0.08, -0.05], [-0.06, 0.85, 0.10], [0.04, -0.07, 1.05]])
    b = torch.tensor([0.03, -0.04, 0.02])
    T_obs = torch.einsum("ij,bjhw->bihw", M, T) + b[:, None, None]        # T̃ = M·T + b
    W = torch.ones(1, 1, *T.shape[-2:])
    W[..., :4, :] = 0.0                                                   # some unseen texels …
    W[..., -4:, :] = 0.1                                                  # … and some below the threshold
    garbage = T_obs.clone()
    garbage[..., :4, :] = 5.0                                             # what lies under W = 0 must not matter
    C = dam_module.ColourCorrection()
    optimiser = torch.optim.Adam(C.parameters(), lr=1e-2)
    for step in range(400):
        loss = losses.LAMBDA_MOTC * losses.L_MOTC(garbage, W, C(T))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        M_fit, b_fit = C.matrix.clone(), C.conv.bias.clone()
    # Criterion: relative Frobenius error ‖M_fit − M‖_F / ‖M‖_F < 2 %, bias within 0.01 (textures in [0, 1]).
    assert float(torch.linalg.norm(M_fit - M) / torch.linalg.norm(M)) < 0.02, M_fit
    assert float((b_fit - b).abs().max()) < 0.01, b_fit
    with torch.no_grad():
        assert float(losses.L_MOTC(T_obs, W, C(T))) < 1e-5


# ------------------------------------------------------------------------------------------------ a tiny run
def _tiny_run(folder: Path) -> Path:
    """RUN with enrollment/, dam/ and i2z/: small untrained models (weights nudged off their zero init so every
    head gets a gradient), enrollment statistics of a face filling a 256 crop."""
    torch.manual_seed(0)
    (folder / "enrollment").mkdir(parents=True)
    config = dam_module.default_config(**SMALL_DAM)
    from engine import canonical

    mean_shape = torch.as_tensor(canonical.load()[0], dtype=torch.float32)
    dam = dam_module.DAM(config, mean_shape, torch.full((468, 3), 0.1), torch.rand(3, 16, 16) * 0.6 + 0.2)
    with torch.no_grad():
        for p in dam.decoder_parameters():
            p.add_(0.01 * torch.randn_like(p))
    dam_module.save(dam.eval(), folder / "dam")
    e_i = i2znet.I2ZNet({**SMALL_I2Z, "streams": "both"})
    rng = np.random.default_rng(0)
    e_i.set_statistics(rng.normal(size=(20, 128)), np.tile([9.0, 0.0, 0.0, 0.0, 128.0, 128.0], (20, 1)))
    i2znet.save(e_i.eval(), folder / "i2z")
    return folder


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A short wild synthetic clip; its gt.npz lies next to the video, where a careless adapt could find it."""
    from engine import synth

    out = synth.write_clip(tmp_path_factory.mktemp("clip") / "wild", frames=FRAMES, domain="wild", seed=2,
                           size=(320, 240))
    assert (out / "gt.npz").is_file()
    return out / "video.mp4"


def _state(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


@pytest.fixture(scope="module")
def adapted(tmp_path_factory, clip):
    """adapt() on the tiny run with every way of opening a file guarded: touching gt.npz fails the call."""
    root = tmp_path_factory.mktemp("adapt")
    run = _tiny_run(root / "run")
    opened = []

    def guard(real):
        def wrapper(file, *args, **kwargs):
            if isinstance(file, (str, bytes, os.PathLike)):
                name = os.fsdecode(file)
                opened.append(name)
                if Path(name).name == "gt.npz":
                    raise AssertionError(f"adaptation opened a label file: {name}")
            return real(file, *args, **kwargs)
        return wrapper

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as mp:
            for module, name in ((builtins, "open"), (io, "open"), (os, "open"), (np, "load")):
                mp.setattr(module, name, guard(getattr(module, name)))
            report = adapt_module.adapt(run, clip, root / "run2", steps=3, seed=0)
    finally:
        torch.set_num_threads(threads)
    return run, root / "run2", report, opened


def test_adapt_writes_a_complete_run(adapted):
    run, run2, report, _ = adapted
    for sub in ("i2z", "colour", "dam", "enrollment"):
        assert (run2 / sub).is_dir(), sub
    assert (run2 / "adapt" / "report.png").stat().st_size > 10_000
    saved = json.loads((run2 / "adapt" / "report.json").read_text())
    assert saved["steps"] == 3 and saved["losses"] == list(adapt_module.LOSSES) and saved["trained"] == ["heads"]
    assert saved["frames_tracked"] >= 2 and saved["pairs"] >= 1
    assert saved["lr"] == adapt_module.PROFILES["tiny"]["lr"] and saved["threshold"] == losses.W_THRESHOLD
    assert all(np.isfinite(saved["last"][k]) for k in (*adapt_module.LOSSES, "total"))
    # RUN2 loads as a tracker's model: the adapted E_I, the original D, and C.
    assert i2znet.load(run2 / "i2z").config == i2znet.load(run / "i2z").config
    assert _state(run2 / "dam").keys() == _state(run / "dam").keys()
    assert all(torch.equal(a, b) for a, b in zip(_state(run2 / "dam").values(), _state(run / "dam").values()))
    colour = _state(run2 / "colour")
    assert set(colour) == {"conv.weight", "conv.bias"} and not torch.equal(colour["conv.weight"][:, :, 0, 0],
                                                                           torch.eye(3))


def test_adapt_moves_only_the_heads(adapted):
    run, run2, _, _ = adapted
    before, after = _state(run / "i2z"), _state(run2 / "i2z")
    assert before.keys() == after.keys()
    assert not any(k.startswith("teacher.") for k in after)      # frozen teacher: from mediapipe, never saved…
    e_i = i2znet.load(run2 / "i2z")                              # …and on load it is the shipped one
    ref = i2znet.I2ZNet(SMALL_I2Z)
    assert all(torch.equal(a, b) for a, b in zip(e_i.teacher.state_dict().values(), ref.teacher.state_dict().values()))
    pixel = [k for k in before if k.startswith("pixel.")]
    heads = [k for k in before if k.startswith(("level_heads.", "z_head.", "h_head."))]
    assert pixel and heads
    assert all(torch.equal(before[k], after[k]) for k in pixel), "the pixel stream moved under --train heads"
    assert all(torch.equal(before[k], after[k]) for k in before if k not in heads), "a buffer moved"
    changed = [k for k in heads if not torch.equal(before[k], after[k])]
    assert {k.split(".")[0] for k in changed} == {"level_heads", "z_head", "h_head"}, changed


def test_adapt_reads_no_labels(adapted, clip):
    _, _, report, opened = adapted
    assert (clip.parent / "gt.npz").is_file()
    assert any(Path(p).name == "config.json" for p in opened)     # the guard saw the run's files being read
    assert not any(Path(p).name == "gt.npz" for p in opened)
    assert report["frames_tracked"] == FRAMES                    # it ran on the clip itself


def test_losses_and_train_choices_are_validated(tmp_path, clip):
    for kwargs in ({"active": ("cftc", "vgg")}, {"active": ()}, {"active": ("motc",), "train": ("teacher",)}):
        with pytest.raises(UserError, match="unknown or empty"):
            adapt_module.adapt(tmp_path / "no_run", clip, tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()                      # refused before any work
    from engine import cli

    code = cli.main(["adapt", str(tmp_path / "no_run"), str(clip), "--out", str(tmp_path / "out"),
                     "--losses", "cftc,flrc,nope"])
    assert code == 2 and not (tmp_path / "out").exists()
    args = cli.parser().parse_args(["adapt", "RUN", "V", "--out", "O", "--losses", "cftc", "--lr", "1e-3",
                                    "--threshold", "0.1", "--train", "heads,pixel"])
    assert (args.losses, args.lr, args.threshold, args.train) == ("cftc", 1e-3, 0.1, "heads,pixel")
