"""DAM (engine.dam) and its training (engine.train_dam) on a small synthetic enrollment set built from arrays:
three hidden expression factors drive G and T̃, the yaw of H drives W and a view-dependent shading."""
import argparse
import json

import numpy as np
import pytest
import torch

from engine import dam as dam_module
from engine import train_dam
from engine.errors import UserError

N, S0 = 40, 64
# A scaled-down profile so the whole file runs in seconds on a CPU; same code path as "tiny".
SMALL = {"name": "test", "texture_size": 32, "channels": [32, 32, 16], "hidden": 64, "view_embedding": 4,
         "steps": 150, "batch": 8, "lr": 2e-3}


def small_config():
    return dam_module.default_config(**{k: SMALL[k] for k in train_dam.MODEL_KEYS})


def write_enrollment(run, seed=0):
    rng = np.random.default_rng(seed)
    factors = rng.uniform(-1, 1, (N, 3))
    base = rng.normal(0, 5, (468, 3))
    bases = rng.normal(0, 0.3, (3, 468, 3))
    G = base + np.einsum("nk,kvc->nvc", factors, bases)
    yaw = rng.uniform(-0.5, 0.5, N)
    H = np.stack([np.full(N, 10.0), np.zeros(N), yaw, np.zeros(N), np.full(N, 128.0), np.full(N, 128.0)], 1)
    u = (np.arange(S0) + 0.5) / S0
    x, y = np.meshgrid(u, u)
    colour = np.stack([0.5 + 0.3 * np.sin(6 * x), 0.4 + 0.3 * y, 0.5 - 0.2 * x * y], -1)
    patterns = np.stack([np.sin(9 * (x + k) * (y + 1))[..., None] * np.array([1, -1, 0.5]) for k in range(3)])
    T = colour + 0.15 * np.einsum("nk,kijc->nijc", factors, patterns)
    T = T * (1 + 0.3 * yaw[:, None, None, None] * (x - 0.5)[None, ..., None])     # view-dependent shading
    W = np.clip(1 - 2 * np.abs(x[None] - 0.5 - 0.5 * yaw[:, None, None]), 0, 1)  # the far side is unseen
    folder = run / "enrollment"
    folder.mkdir(parents=True)
    np.save(folder / "G.npy", G.astype(np.float32))
    np.save(folder / "H.npy", H.astype(np.float32))
    np.save(folder / "textures.npy", (T * (W[..., None] > 0) * 255).clip(0, 255).astype(np.uint8))
    np.save(folder / "weights.npy", (W * 255).astype(np.uint8))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("dam_run")
    write_enrollment(run)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # on a shared, busy CPU, intra-op threads spin and slow small convs 10×
    try:
        report = train_dam.train_dam(run, profile=SMALL, seed=0)
    finally:
        torch.set_num_threads(threads)
    return run, report


def test_shapes_and_untrained_decoder_gives_the_mean():
    config = small_config()
    mean_texture = torch.rand(3, 32, 32) * 0.8 + 0.1
    dam = dam_module.DAM(config, torch.randn(468, 3), torch.ones(468, 3), mean_texture).eval()
    mu, logvar = dam.encode(torch.randn(2, 468, 3), torch.rand(2, 3, 32, 32), torch.rand(2, 1, 32, 32))
    assert mu.shape == logvar.shape == (2, 128)
    G, T = dam.decode(mu, torch.tensor([[0.0, 0, -1], [0.5, 0, -0.866]]))
    assert G.shape == (2, 468, 3) and T.shape == (2, 3, 32, 32)
    assert torch.equal(G, dam.decode_geometry(mu))
    torch.testing.assert_close(G, dam.mean_shape.expand(2, -1, -1))
    torch.testing.assert_close(T[0], mean_texture, atol=1e-6, rtol=0)
    assert {id(p) for p in dam.encoder_parameters()}.isdisjoint(id(p) for p in dam.decoder_parameters())


def test_training_reconstructs_better_than_the_mean(trained):
    run, report = trained
    held = report["held_out"]
    assert held["geometry_error_cm"] < 0.3 * held["mean_baseline"]["geometry_error_cm"]
    assert held["texture_psnr_db"] > held["mean_baseline"]["texture_psnr_db"] + 3.0
    latents = np.load(run / "dam" / "latents.npy")
    assert latents.shape == (N, 128) and latents.dtype == np.float32
    saved = json.loads((run / "dam" / "report.json").read_text())
    assert saved["frames"] == {"train": 36, "held_out": 4, "held_out_rule": "index % 10 == 5"}
    assert (run / "dam" / "report.png").stat().st_size > 10_000


def test_loaded_model_reproduces_latents_and_view_changes_only_texture(trained):
    run, _ = trained
    dam = dam_module.load(run / "dam")
    data = train_dam.load_enrollment(run)
    T, W = train_dam.resample_textures(data["textures"], data["weights"], 32)
    batches = train_dam.Batches(data, T, W, "cpu")
    mu = train_dam.encode_all(dam, batches, torch.arange(N))
    np.testing.assert_allclose(mu.numpy(), np.load(run / "dam" / "latents.npy"), atol=1e-5)
    with torch.no_grad():
        G1, T1 = dam.decode(mu[:1], torch.tensor([[-0.5, 0.0, -0.866]]))
        G2, T2 = dam.decode(mu[:1], torch.tensor([[0.5, 0.0, -0.866]]))
    assert torch.equal(G1, G2)
    assert (T1 - T2).abs().max() > 1e-3


def test_save_load_round_trip_is_exact(tmp_path):
    torch.manual_seed(1)
    dam = dam_module.DAM(small_config(), torch.randn(468, 3), torch.rand(468, 3) + 0.1, torch.rand(3, 32, 32))
    with torch.no_grad():                 # make the zero-initialised heads matter
        for p in dam.parameters():
            p.add_(0.01 * torch.randn_like(p))
    dam.eval()
    dam_module.save(dam, tmp_path / "dam")
    loaded = dam_module.load(tmp_path / "dam")
    G, T, W = torch.randn(3, 468, 3), torch.rand(3, 3, 32, 32), torch.rand(3, 1, 32, 32)
    v = torch.nn.functional.normalize(torch.randn(3, 3), dim=1)
    with torch.no_grad():
        for a, b in zip(dam.decode(dam.encode(G, T, W)[0], v), loaded.decode(loaded.encode(G, T, W)[0], v)):
            assert torch.equal(a, b)
    assert loaded.config == dam.config


def test_missing_or_corrupt_files_raise_user_error(tmp_path):
    dam_module.save(dam_module.DAM(small_config()), tmp_path)
    weights = tmp_path / "model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(UserError, match="model.safetensors"):
        dam_module.load(tmp_path)
    weights.write_bytes(good[: len(good) // 2])                 # truncated
    with pytest.raises(UserError, match="model.safetensors"):
        dam_module.load(tmp_path)
    weights.unlink()
    with pytest.raises(UserError, match="model.safetensors"):
        dam_module.load(tmp_path)
    weights.write_bytes(good)
    (tmp_path / "config.json").write_text("{")
    with pytest.raises(UserError, match="config.json"):
        dam_module.load(tmp_path)


def test_colour_correction_starts_at_identity():
    C = dam_module.ColourCorrection()
    T = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(C(T), T)
    torch.testing.assert_close(C.matrix, torch.eye(3))


def test_missing_enrollment_and_cli(tmp_path):
    with pytest.raises(UserError, match=r"no enrollment \(G.npy, H.npy, textures.npy, weights.npy missing\); run `facetrack enroll"):
        train_dam.train_dam(tmp_path)
    parser = argparse.ArgumentParser()
    train_dam.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train-dam", str(tmp_path), "--profile", "full", "--steps", "5"])
    assert args.run is train_dam._run and args.profile == "full" and args.steps == 5
    with pytest.raises(UserError, match="no enrollment"):
        args.run(args)


def test_expression_basis_spans_the_enrollments_expressions(trained):
    """engine.dam.expression_basis: orthonormal directions, std largest first, and the first three (the made-up
    enrollment has three expression factors) hold most of how the enrolled geometry varies."""
    run, _ = trained
    dam = dam_module.load(run / "dam")
    directions, std = dam_module.expression_basis(dam, np.load(run / "dam" / "latents.npy"), k=8)
    assert directions.shape == (8, 468, 3) and directions.dtype == std.dtype == np.float32
    flat = directions.reshape(8, -1).astype(np.float64)
    np.testing.assert_allclose(flat @ flat.T, np.eye(8), atol=1e-5)
    assert np.all(np.diff(std) <= 0) and std[-1] > 0
    G = np.load(run / "enrollment" / "G.npy").reshape(N, -1).astype(np.float64)
    G -= G.mean(0)
    kept = np.linalg.norm(G @ flat[:3].T @ flat[:3]) ** 2 / np.linalg.norm(G) ** 2
    assert kept > 0.8, kept
