"""I2ZNet (E_I): ablation shapes, the frozen teacher stream, persistence, and a short training run."""
import json

import numpy as np
import pytest
import torch

from engine import i2znet
from engine.errors import UserError
from engine.i2znet import I2ZNet

SMALL = {"width": 16, "pixel_channels": 4}


@pytest.fixture(scope="module")
def crops():
    return torch.randint(0, 256, (2, 3, 256, 256), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def teacher_out(crops):
    return I2ZNet(SMALL).teacher_stream(I2ZNet.prepare(crops))


@pytest.mark.parametrize("streams", i2znet.STREAMS)
@pytest.mark.parametrize("multi_level", [True, False])
def test_forward_shapes_for_every_ablation(streams, multi_level, crops, teacher_out):
    model = I2ZNet({**SMALL, "streams": streams, "multi_level": multi_level})
    z, H = model(crops, teacher_out)
    assert z.shape == (2, 128) and H.shape == (2, 6) and torch.isfinite(z).all() and torch.isfinite(H).all()
    assert len(model.level_heads) == (4 if multi_level else 1)
    # Outputs start near the enrollment statistics: f̄, r̄ and the crop centre.
    assert torch.allclose(H[:, 0], torch.ones(2), rtol=0.5) and (H[:, 4:] - 128).abs().max() < 64
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    groups = {id(p) for p in model.heads_parameters() + model.pixel_stream_parameters()}
    assert trainable == groups and (len(model.pixel_stream_parameters()) > 0) == (streams != "teacher")


def test_teacher_stream_stays_frozen(crops):
    model = I2ZNet(SMALL).train()
    assert model.training and not model.teacher.training
    assert not any(p.requires_grad for p in model.teacher.parameters())
    z, H = model(crops.float() / 255)            # float input, teacher computed inside
    (z.square().sum() + H.square().sum()).backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    assert all(p.grad is not None for p in model.heads_parameters())
    out = model.eval().track(crops)
    assert out.presence.shape == (2,) and out.landmarks.shape == (2, 468, 3)


def test_save_load_round_trip_and_bad_files(tmp_path, crops, teacher_out):
    model = I2ZNet({**SMALL, "streams": "both", "multi_level": False})
    model.set_statistics(np.random.default_rng(0).normal(size=(20, 128)),
                         np.tile([9.0, 0.1, 0.0, 0.0, 120.0, 130.0], (20, 1)))
    i2znet.save(model.eval(), tmp_path / "i2z")
    assert not any(k.startswith("teacher.") for k in _safetensors_keys(tmp_path / "i2z" / "model.safetensors"))
    back = i2znet.load(tmp_path / "i2z")
    assert back.config == model.config and not back.training
    for a, b in zip(model(crops, teacher_out), back(crops, teacher_out)):
        torch.testing.assert_close(a, b)

    w = tmp_path / "i2z" / "model.safetensors"
    w.write_bytes(w.read_bytes()[:100])                     # truncated
    with pytest.raises(UserError, match="model.safetensors"):
        i2znet.load(tmp_path / "i2z")
    w.write_bytes(b"not a safetensors file at all")
    with pytest.raises(UserError, match="model.safetensors"):
        i2znet.load(tmp_path / "i2z")
    (tmp_path / "i2z" / "config.json").write_text("{broken")
    with pytest.raises(UserError, match="config.json"):
        i2znet.load(tmp_path / "i2z")
    w.unlink()
    with pytest.raises(UserError, match="model.safetensors"):
        i2znet.load(tmp_path / "i2z")


def _safetensors_keys(path):
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return list(f.keys())


def synthetic_enrollment(folder, n=12, seed=0):
    """A tiny enrollment with exact labels: the canonical head with random expressions and poses, rendered."""
    from engine import expressions, pose, synth
    from engine.render import OffscreenRenderer
    from engine.topology import topology

    rng = np.random.default_rng(seed)
    G = expressions.apply((rng.uniform(0, 1, (n, len(expressions.NAMES))) * 0.7).astype(np.float32))
    H = np.column_stack([rng.uniform(8.5, 9.5, n), np.radians(rng.uniform(-15, 15, (n, 3))),
                         rng.uniform(120, 136, (n, 2))])
    yy, xx = np.mgrid[0:64, 0:64] / 63.0
    texture = np.stack([190 + 30 * xx, 140 + 30 * yy, 120 + 20 * xx * yy], -1).astype(np.uint8)
    texture = synth.paint_openings(texture)
    topo = topology()
    crops = []
    with OffscreenRenderer(256, 256) as r:
        r.set_mesh(np.concatenate([topo.triangles, topo.holes]), topo.uv)
        r.set_texture(texture)
        backdrop = synth.background(rng, (256, 256), clutter=False)
        for g, h in zip(G, H):
            v = pose.transform(g.astype(np.float64), h)
            v[:, :2] += 0.5
            crops.append(r.render(v.astype(np.float32), synth.DOMAINS["lab"].light, backdrop))
    e = folder / "enrollment"
    e.mkdir(parents=True)
    arrays = {"crops": np.stack(crops), "landmarks": pose.transform(G.astype(np.float64), H).astype(np.float32),
              "H": H.astype(np.float32), "G": G.astype(np.float32), "textures": np.repeat(texture[None], n, 0),
              "weights": np.full((n, 64, 64), 255, np.uint8), "source": np.zeros((n, 2), np.int32),
              "crop_boxes": np.tile([128.0, 128.0, 256.0, 0.0], (n, 1)).astype(np.float32)}
    for k, a in arrays.items():
        np.save(e / f"{k}.npy", a)
    return folder


def test_short_training_run_decreases_the_loss(tmp_path):
    try:
        from engine import train_dam
    except ImportError as err:
        pytest.skip(f"engine.train_dam is not available yet ({err}): no DAM to train I2ZNet against")
    from engine import train_i2z

    run = synthetic_enrollment(tmp_path / "run")
    with pytest.raises(UserError, match="train-dam"):
        train_i2z.train_i2z(run, steps=2)
    train_dam.train_dam(run, {"texture_size": 16, "channels": [16, 8], "hidden": 64, "view_embedding": 4,
                              "steps": 20, "batch": 8, "lr": 1e-3})
    profile = {**SMALL, "steps": 30, "batch": 8, "real_per_frame": 1, "views_per_frame": 1, "lr": 2e-3}
    report = train_i2z.train_i2z(run, profile, streams="both")
    curve = np.asarray(report["history"]["total"])
    assert curve[:5].mean() > 1.5 * curve[-5:].mean(), curve
    saved = json.loads((run / "i2z" / "report.json").read_text())
    n = len(np.load(run / "enrollment" / "H.npy"))
    held = len(range(train_dam.HELD_OUT_OFFSET, n, train_dam.HELD_OUT_EVERY))
    assert saved["held_out"]["frames"] == held > 0 and saved["steps"] == 30 and np.isfinite(saved["held_out"]["landmark_px"])
    assert (run / "i2z" / "report.png").stat().st_size > 1000
    assert i2znet.load(run / "i2z").config["streams"] == "both"


def test_missing_enrollment_is_a_user_error(tmp_path):
    from engine import train_i2z

    with pytest.raises(UserError, match="enroll"):
        train_i2z.train_i2z(tmp_path, steps=1)


# ---------------------------------------------------------------------- the z skip path (ridge from teacher landmarks)
def _random_similarity(rng, points):
    from engine import pose

    R = pose.rotation_matrix(np.radians(rng.uniform(-30, 30, 3)))
    return rng.uniform(0.5, 3.0) * points @ R.T + rng.uniform(-50, 50, 3)


def test_skip_features_remove_pose_and_match_svd_procrustes():
    from engine import canonical, expressions, train_i2z

    rng = np.random.default_rng(0)
    ref = train_i2z.skip_reference()
    G = expressions.apply((rng.uniform(0, 1, (4, len(expressions.NAMES))) * 0.7).astype(np.float32)).astype(np.float64)
    moved = np.stack([_random_similarity(rng, g) for g in G])
    f = i2znet.landmark_features(torch.from_numpy(moved).float(), torch.from_numpy(ref).float()).double().numpy()
    f0 = i2znet.landmark_features(torch.from_numpy(G).float(), torch.from_numpy(ref).float()).double().numpy()
    np.testing.assert_allclose(f, f0, atol=2e-5)          # translation, scale and rotation do not matter
    # the Newton–Schulz rotation is the orthogonal Procrustes (SVD) solution
    y = G - G.mean(1, keepdims=True)
    y /= np.sqrt((y ** 2).sum(-1).mean(-1))[:, None, None]
    U, _, Vt = np.linalg.svd(y.transpose(0, 2, 1) @ ref)
    np.testing.assert_allclose(f0, (y @ (U @ Vt)).reshape(len(G), -1), atol=2e-5)
    assert canonical.load()[0].shape == (468, 3)


def test_fit_skip_recovers_a_linear_map_and_beats_the_mean():
    from engine import train_i2z

    rng = np.random.default_rng(1)
    W = rng.normal(size=(128, 30))
    F = rng.normal(size=(80, 30)) + 5.0
    z = (F - 5.0) @ W.T * 0.1 + rng.normal(scale=0.01, size=(80, 128))
    fit = train_i2z.fit_skip(F[:60], z[:60], F[60:], z[60:])
    pred = F[60:] @ fit["weight"].T + fit["bias"]
    assert fit["r2_held_out"] > 0.95 and set(fit["r2_by_lambda"]) == {f"{k:g}" for k in train_i2z.SKIP_LAMBDAS}
    assert np.abs(pred - z[60:]).mean() < 0.2 * np.abs(z[:60].mean(0) - z[60:]).mean()


def test_z_head_starts_exactly_at_the_skip_path(crops, teacher_out):
    model = I2ZNet(SMALL)
    assert model.z_skip
    rng = np.random.default_rng(2)
    from engine import train_i2z

    model.set_skip(train_i2z.skip_reference(), rng.normal(size=(128, 468 * 3)) * 0.01, rng.normal(size=128))
    z, _ = model(crops, teacher_out)
    expected = torch.nn.functional.linear(model.skip_features(teacher_out.landmarks), model.skip_weight,
                                          model.skip_bias)
    torch.testing.assert_close(z, expected)
    assert not any(b.requires_grad for b in (model.skip_weight, model.skip_bias, model.skip_reference))
    # no teacher stream, no skip path: z starts at z̄ as before
    assert not I2ZNet({**SMALL, "streams": "pixel"}).z_skip


def test_models_saved_before_the_skip_path_still_load(tmp_path, crops, teacher_out):
    old = I2ZNet({**SMALL, "z_skip": False})
    i2znet.save(old.eval(), tmp_path / "i2z")
    config = json.loads((tmp_path / "i2z" / "config.json").read_text())
    del config["z_skip"]                                   # as written before the key existed
    (tmp_path / "i2z" / "config.json").write_text(json.dumps(config))
    back = i2znet.load(tmp_path / "i2z")
    assert not back.z_skip
    torch.testing.assert_close(old(crops, teacher_out)[0], back(crops, teacher_out)[0])


def test_ridge_skip_on_a_tiny_enrollment_beats_the_mean_latent(tmp_path):
    from engine import train_dam, train_i2z

    run = synthetic_enrollment(tmp_path / "run", n=40, seed=3)
    train_dam.train_dam(run, {"texture_size": 16, "channels": [16, 8], "hidden": 64, "view_embedding": 4,
                              "steps": 30, "batch": 8, "lr": 1e-3})
    report = train_i2z.train_i2z(run, {**SMALL, "steps": 1, "batch": 8, "real_per_frame": 1, "views_per_frame": 1})
    skip, held = report["z_skip"], report["held_out"]
    assert skip["r2_held_out_clean"] > 0.5, skip
    # one step of a zero-initialised residual: the held-out z is the ridge's, far better than predicting the mean
    assert held["z_rmse"] < 0.7 * held["z_rmse_predict_mean"], held
    back = i2znet.load(run / "i2z")
    assert back.z_skip and back.skip_weight.abs().sum() > 0


def test_decoded_geometry_loss_weights_expressive_regions():
    from engine import losses, train_i2z
    from export import expressions as ex

    w = train_i2z.expressive_weights()
    assert w.shape == (468,) and w[ex.LID_PAIRS["left"][0][0]] == w[ex.MOUTH_CORNER["right"]] == train_i2z.EXPRESSIVE_WEIGHT
    assert w[ex.NOSE_TIP] == 1.0
    G = torch.zeros(2, 468, 3)
    lid, cheek = G.clone(), G.clone()
    lid[:, ex.LID_PAIRS["left"][0][0], 1] = 0.1              # an eyelid moved by 1 mm …
    cheek[:, ex.NOSE_TIP, 1] = 0.1                           # … costs more than the nose tip moved as far
    assert losses.L_G(lid, G, w) > 4 * losses.L_G(cheek, G, w) > 0
    torch.testing.assert_close(losses.L_G(lid, G), torch.tensor(0.01 / 468))
