"""engine.view_bias (the teacher's pose-dependent reading of a resting face), the refit that removes it, and the
guided clip's prompt timeline (engine.prompts) that says which frames rest."""
import json

import numpy as np
import pytest

from engine import canonical, pose, prompts, tracking, view_bias
from engine.errors import UserError

REST = canonical.load()[0]


def planted(n: int, spread: float, seed: int = 0):
    """Resting frames whose shape carries a known view bias: (G [n,468,3], H [n,6], D [5,468,3])."""
    rng = np.random.default_rng(seed)
    D = rng.normal(0, 0.5, (len(view_bias.FEATURES), 468, 3))
    H = np.zeros((n, 6))
    H[:, 0], H[:, 1:3] = 2.0, rng.uniform(-spread, spread, (n, 2))
    G = REST + np.einsum("nf,fvc->nvc", view_bias.features(H), D) + rng.normal(0, 0.01, (n, 468, 3))
    return G, H, D


def test_fit_recovers_a_planted_bias_and_holds_it_at_the_edge_of_the_poses_it_saw():
    G, H, D = planted(400, 0.5)
    fitted, limits = view_bias.fit(G, H)
    tilted = np.array([2.0, 0.3, -0.2, 0.0, 0.0, 0.0])
    want = np.tensordot(view_bias.features(tilted), D, 1)
    got = view_bias.bias(fitted, limits, tilted)
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max()         # the ridge shrinks a little, no more
    np.testing.assert_allclose(got, np.tensordot(view_bias.features(tilted), fitted, 1), atol=1e-9)
    assert np.allclose(view_bias.bias(fitted, limits, np.zeros(6)), 0)   # a frontal face keeps its shape
    beyond = tilted.copy()
    beyond[1] = 1.2                                                      # past what the enrollment showed
    np.testing.assert_allclose(view_bias.bias(fitted, limits, beyond),
                               view_bias.bias(fitted, limits, np.r_[2.0, limits[1], 0, 0, 0, 0]))


def test_a_clip_that_hardly_tilts_learns_almost_nothing():
    G, H, D = planted(400, 0.01)                                         # ±0.6°: a talking head held still
    fitted, limits = view_bias.fit(G, H)
    edge = np.r_[2.0, limits[1], 0, 0, 0, 0]
    assert np.abs(view_bias.bias(fitted, limits, edge)).max() < 0.01    # cm, at the widest pose it saw


def test_refit_removes_the_bias_and_keeps_the_points_where_the_teacher_sees_them():
    G, H, D = planted(300, 0.4)
    view = view_bias.fit(G, H)
    directions = np.zeros((2, 468, 3))
    directions[0, 152, 1] = directions[1, 61, 0] = 1.0                   # chin down, a mouth corner out
    h = np.array([2.0, 0.25, 0.3, 0.05, 128.0, 128.0])
    seen = REST + view_bias.bias(*view, h)                               # what the teacher reads of the rest
    out = tracking.CropOutput(points=pose.project(seen, h), presence=1.0, G=seen, H=h,
                              landmarks=pose.project(seen, h))
    plain = tracking.refit(out, tracking.ExpressionBasis(directions, np.ones(2)))
    fixed = tracking.refit(out, tracking.ExpressionBasis(directions, np.ones(2), view=view))
    np.testing.assert_allclose(plain.G, seen, atol=1e-6)
    np.testing.assert_allclose(fixed.G, REST, atol=1e-6)                 # the resting face, at any pose
    np.testing.assert_allclose(fixed.points, plain.points, atol=1e-6)
    np.testing.assert_allclose(fixed.H, plain.H, atol=1e-9)


def test_from_enrollment_needs_enough_resting_frames(tmp_path):
    G, H, _ = planted(120, 0.4)
    folder = tmp_path / "enrollment"
    folder.mkdir()
    np.save(folder / "G.npy", G.astype(np.float32))
    np.save(folder / "H.npy", H.astype(np.float32))
    assert view_bias.from_enrollment(tmp_path) is None                   # an older run: no prompt.npy
    codes = np.full(120, prompts.KEYS.index("smile"), np.int8)
    codes[:view_bias.MIN_FRAMES - 1] = prompts.KEYS.index("look")
    np.save(folder / "prompt.npy", codes)
    assert view_bias.from_enrollment(tmp_path) is None                   # too few resting frames
    codes[:100] = prompts.KEYS.index("neutral")
    np.save(folder / "prompt.npy", codes)
    D, limits = view_bias.from_enrollment(tmp_path)
    assert D.shape == (2, 468, 3) and np.allclose(limits, [H[:100, 1].min(), H[:100, 1].max()], atol=1e-6)


# ------------------------------------------------------------------------------------------------- the timeline
def test_the_scripted_timeline_marks_the_resting_steps(tmp_path):
    keys = prompts.frame_keys(750, 25.0)
    data = prompts.timeline(keys)
    assert [s["key"] for s in data["steps"]] == list(dict.fromkeys(keys))   # neighbouring smiles are one span
    (tmp_path / "clip.prompts.json").write_text(json.dumps(data))
    codes = prompts.recorded(tmp_path / "clip.mp4", 750)
    assert prompts.keys_of(codes).tolist() == keys
    assert prompts.keys_of(np.array([-1, 0])).tolist() == ["", prompts.KEYS[0]]
    assert prompts.recorded(tmp_path / "other.mp4", 750) is None           # no sidecar: not a guided clip


@pytest.mark.parametrize("edit, why", [
    (lambda d: d.update(frames=749), "written for 749 frames, the clip has 750"),
    (lambda d: d["steps"][1].update(key="dance"), "a step is not one of"),
    (lambda d: d["steps"][1].update(start=0), "not ordered frames"),
    (lambda d: d["steps"][-1].update(stop=10 ** 6), "not ordered frames"),
    (lambda d: d.update(format="other"), "not a facetrack-prompts version 1 file"),
    (lambda d: d.update(steps="all"), "a step is not one of"),
])
def test_a_timeline_that_is_not_this_clips_is_refused_in_one_line(tmp_path, edit, why):
    data = prompts.timeline(prompts.frame_keys(750, 25.0))
    edit(data)
    (tmp_path / "clip.prompts.json").write_text(json.dumps(data))
    with pytest.raises(UserError, match=why) as err:
        prompts.recorded(tmp_path / "clip.mp4", 750)
    assert "\n" not in str(err.value) and "clip.prompts.json" in str(err.value)


def test_a_corrupt_timeline_is_refused(tmp_path):
    (tmp_path / "clip.prompts.json").write_bytes(b"\x00{not json")
    with pytest.raises(UserError, match="unusable prompt timeline"):
        prompts.recorded(tmp_path / "clip.mp4", 10)
