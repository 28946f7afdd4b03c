import numpy as np
import pytest

from engine import canonical, expressions, prompts, synth
from engine.errors import UserError


def test_fields_move_the_right_places():
    B = dict(zip(expressions.NAMES, expressions.basis()))
    S, mirror = canonical.load()
    assert B["jaw_open"][152, 1] > 1.0 and not B["jaw_open"][13].any()  # chin drops, upper lip stays
    assert B["smile_left"][291, 0] > 0.3 and B["smile_left"][291, 1] < -0.3   # subject's left corner: out, up
    assert np.abs(B["smile_left"][61]).max() < 1e-3
    lid, low = expressions.UPPER_LID["left"][0], expressions.LOWER_LID["left"]
    closed = S[lid, 1] + B["blink_left"][lid, 1]
    assert abs(closed - S[low, 1]) < 0.15 and np.abs(B["blink_left"][low]).max() < 0.2
    assert (B["brow_raise"][list(expressions.BROWS), 1] < -0.5).all()
    assert B["pucker"][0, 2] < -0.5


def test_left_right_fields_mirror_each_other():
    B = dict(zip(expressions.NAMES, expressions.basis()))
    _, mirror = canonical.load()
    flip = np.array([-1, 1, 1])
    for a, b in (("smile_left", "smile_right"), ("blink_left", "blink_right")):
        np.testing.assert_allclose(B[a], (B[b] * flip)[mirror], atol=1e-4)


def test_tracks_are_smooth_bounded_and_seeded():
    rng = lambda: np.random.default_rng(7)
    H1 = synth.pose_path(rng(), 300, (640, 480), 17.0)
    H2 = synth.pose_path(rng(), 300, (640, 480), 17.0)
    np.testing.assert_array_equal(H1, H2)
    deg = np.degrees(np.abs(H1[:, 1:4])).max(0)
    assert (deg <= synth.POSE_LIMITS_DEG + 1e-6).all() and (deg > 0.5 * synth.POSE_LIMITS_DEG).all()
    assert np.degrees(np.abs(np.diff(H1[:, 1:4], axis=0))).max() < 3.0    # ≤ 3° per frame at 25 fps
    expr = synth.expression_track(rng(), 300)
    assert expr.shape == (300, len(expressions.NAMES)) and expr.min() >= 0 and expr.max() <= 1
    assert (expr.max(0) > 0.3).sum() >= 6                                   # most expressions show up


def test_the_guided_performer_shows_each_expression_on_its_own_then_turns_the_head():
    names = expressions.NAMES
    H, expr = synth.guided_tracks(np.random.default_rng(1), 750, (640, 480), 17.0)
    assert expr.shape == (750, len(names)) and expr.min() >= 0 and expr.max() <= 1
    steps = prompts.spans(750, synth.FPS)
    assert steps[-1][1].stop == 750
    for step, frames in steps:
        span = expr[frames]
        asked = [names.index(f) for f in step.fields]
        if asked:       # what the prompt asks for peaks here, and nothing else moves
            assert span[:, asked].max() > 0.7
            assert np.delete(span, asked, axis=1).max() == 0.0
        else:
            assert span.max() == 0.0
        if step.turn != (0.0, 0.0):     # a look step turns the head most of the way to that side
            k = int(np.argmax(np.abs(step.turn)))
            peak = np.degrees(H[frames, 1 + k]) * np.sign(step.turn[k])
            assert peak.max() > 0.7 * synth.POSE_LIMITS_DEG[k]
    one_sided = [f for step, _ in steps for f in step.fields if len(step.fields) == 1 and "smile" in f]
    assert sorted(one_sided) == ["smile_left", "smile_right"]      # each side on its own, not only a symmetric smile
    assert np.corrcoef(expr[:, names.index("smile_left")], expr[:, names.index("smile_right")])[0, 1] < 0.6
    assert np.degrees(np.abs(np.diff(H[:, 1:4], axis=0))).max() < 3.0


def test_synth_acts_out_the_script_it_is_given(tmp_path):
    out = synth.write_clip(tmp_path / "clip", frames=6, domain="lab", seed=1, size=(160, 120), script="enroll")
    assert '"script": "enroll"' in (out / "meta.json").read_text()
    with pytest.raises(UserError, match="--script must be one of enroll"):
        synth.write_clip(tmp_path / "other", frames=6, domain="lab", seed=1, script="talk")
    assert not (tmp_path / "other").exists()


@pytest.fixture
def ict_file(shared_data):
    return shared_data / "mesh" / "ict_facekit" / "ict_expression_deltas.npz"


def test_ict_fields_carry_the_scanned_shapes_onto_our_mesh(ict_file):
    """The ICT-FaceKit blendshapes moved onto the 468 vertices: each field moves what its name says, by about what
    the scanned face moves it, and the left and right shapes mirror each other."""
    B = dict(zip(expressions.NAMES, expressions.ict_basis(str(ict_file))))
    S, mirror = canonical.load()
    assert B["jaw_open"][152, 1] > 2.0 and abs(B["jaw_open"][168, 1]) < 0.1    # chin drops, the nose bridge stays
    assert B["smile_left"][291, 0] > 0.3 and B["smile_left"][291, 1] < -0.3    # subject's left corner: out, up
    assert np.linalg.norm(B["smile_left"][61]) < 0.25 * np.linalg.norm(B["smile_left"][291])
    for side in ("left", "right"):
        lid, low = expressions.UPPER_LID[side][0], expressions.LOWER_LID[side]
        gap, closed = S[low, 1] - S[lid, 1], (S[low] + B[f"blink_{side}"][low] - S[lid] - B[f"blink_{side}"][lid])[1]
        assert closed < 0.3 * gap                                                 # the lids close
    assert (B["brow_raise"][list(expressions.BROWS), 1] < -0.3).all()
    assert (B["brow_frown"][list(expressions.INNER_BROWS), 1] > 0.1).all()        # inner brows pulled down
    assert B["pucker"][0, 2] < -0.3                                               # lips forward
    flip = np.array([-1, 1, 1])
    for a, b in (("smile_left", "smile_right"), ("blink_left", "blink_right")):
        np.testing.assert_allclose(B[a], (B[b] * flip)[mirror], atol=0.05)


def test_a_file_that_is_not_ict_deltas_is_refused_in_one_line(tmp_path):
    from engine.errors import UserError

    bad = tmp_path / "bad.npz"
    np.savez(bad, names=np.array(["jawOpen"]), deltas=np.zeros((1, 9409, 3), np.float32),
             neutral=np.zeros((9409, 3), np.float32))
    with pytest.raises(UserError, match="mouthSmile_L"):                       # shapes missing
        expressions.ict_basis(str(bad))
    (tmp_path / "pickled.npz").write_bytes(b"\x80\x04K\x01.")                  # a pickle, never loaded
    with pytest.raises(UserError, match="not an ICT-FaceKit delta file"):
        expressions.ict_basis(str(tmp_path / "pickled.npz"))


def test_synth_with_ict_expressions_writes_its_truth(tmp_path, ict_file):
    out = synth.write_clip(tmp_path / "clip", frames=4, domain="lab", seed=1, size=(160, 120), ict=ict_file)
    with np.load(out / "gt.npz") as gt:
        G, expr = gt["G"], gt["expr"]
    fields = expressions.ict_basis(str(ict_file))
    np.testing.assert_allclose(G, expressions.apply(expr, fields), atol=1e-5)
    assert "ICT-FaceKit" in (out / "meta.json").read_text()


# ---------------------------------------------------------------------------------- the performer's own range
def _performer(jaw_peak: float, frames: int = 200, jitter: float = 0.003, seed: int = 0) -> np.ndarray:
    """Meshes [T,468,3] of a face at rest that opens its jaw to `jaw_peak` of the field (a bump in the middle of
    the clip), with independent per-vertex jitter (cm)."""
    rng = np.random.default_rng(seed)
    S = canonical.load()[0].astype(np.float64)
    jaw = dict(zip(expressions.NAMES, expressions.basis()))["jaw_open"].astype(np.float64)
    a = jaw_peak * np.clip(1 - ((np.arange(frames) - frames / 2) / (frames / 8)) ** 2, 0, 1)
    return S + a[:, None, None] * jaw + rng.normal(0, jitter, (frames, *S.shape))


def test_a_performer_range_makes_their_widest_read_one():
    """The range is read off the clip (its 99th percentile from the median face): the widest jaw then reads 1,
    where an average face's FULL reads it far lower; what the clip did not show keeps the average face's FULL."""
    from export.expressions import GAINS, JAW_PULL, ExpressionEstimator, expression_ranges, measures

    G = _performer(0.6)
    ranges = expression_ranges(G)
    assert set(ranges) == {"jawOpen", JAW_PULL}                  # the jitter alone shows nothing else
    assert ranges[JAW_PULL] == pytest.approx(0.0, abs=0.02)      # the procedural jaw leaves the corners where they are
    S = canonical.load()[0]
    widest = G[len(G) // 2]
    reach = measures(widest)["chin"] - measures(np.median(G, 0))["chin"]
    assert GAINS["jawOpen"][1] / 4 < ranges["jawOpen"] == pytest.approx(reach, rel=0.02)
    plain, own = ExpressionEstimator(S), ExpressionEstimator(S, ranges=ranges)
    assert own(widest)["jawOpen"] > 0.95 > 2 * plain(widest)["jawOpen"]
    assert own(S)["jawOpen"] == plain(S)["jawOpen"] == 0.0        # the dead zone keeps its share: rest reads 0
    assert own(widest)["mouthSmileLeft"] == plain(widest)["mouthSmileLeft"]
    own.set_ranges(None)
    assert own(widest)["jawOpen"] == plain(widest)["jawOpen"]


def test_the_jaws_pull_on_the_corners_is_taken_off_the_smile(ict_file):
    """On the ICT scans an open jaw drags the mouth corners down and in: a laugh (jaw and smile at once) reads the
    smile far weaker than the smile alone. The range measures that pull where the enrollment opens the jaw alone,
    and the smile then reads the same with the jaw open or shut; the jaw alone still reads no smile."""
    from export.expressions import JAW_PULL, ExpressionEstimator, expression_ranges

    F = dict(zip(expressions.NAMES, expressions.ict_basis(str(ict_file)).astype(np.float64)))
    S = canonical.load()[0].astype(np.float64)
    bump = np.clip(1 - ((np.arange(40) - 20) / 12.0) ** 2, 0, 1)[:, None, None]
    rest, jaw, smile = np.repeat(S[None], 40, 0), S + bump * F["jaw_open"], S + bump * 0.8 * F["smile_left"]
    rng = np.random.default_rng(0)
    enrollment = np.concatenate([rest, jaw, rest, smile, rest]) + rng.normal(0, 0.003, (200, *S.shape))
    ranges = expression_ranges(enrollment)
    assert -0.45 < ranges[JAW_PULL] < -0.15                        # the scans: down 0.26 of the chin, and inwards
    laugh = S + F["jaw_open"] + 0.8 * F["smile_left"]
    plain, own = ExpressionEstimator(S), ExpressionEstimator(S, ranges=ranges)
    alone, opened = own(S + 0.8 * F["smile_left"])["mouthSmileLeft"], own(laugh)["mouthSmileLeft"]
    assert alone > 0.9 and opened > 0.85 * alone                   # the smile reads through the open jaw
    assert plain(laugh)["mouthSmileLeft"] < 0.6 * plain(S + 0.8 * F["smile_left"])["mouthSmileLeft"]
    assert own(S + F["jaw_open"])["mouthSmileLeft"] == 0.0         # the jaw alone is no smile


def test_a_guided_enrollment_measures_each_range_where_it_was_asked_for():
    """With the prompt of each frame, a measure's widest is taken under its own prompt: a short prompted jaw reaches
    its peak (the whole clip's percentile falls short of it), and a frown-like change read while the performer
    turned their head is no frown range when the frown prompt itself showed none."""
    from export.expressions import expression_ranges, measures

    F = dict(zip(expressions.NAMES, expressions.basis()))
    S = canonical.load()[0].astype(np.float64)
    bump = lambda n: np.clip(1 - ((np.arange(n) - n / 2) / (n / 3)) ** 2, 0, 1)[:, None, None]
    asked = np.array(["neutral"] * 40 + ["jaw"] * 20 + ["frown"] * 40 + ["look"] * 60 + ["neutral"] * 140)
    G = np.repeat(S[None], len(asked), 0)
    G[40:60] += 0.7 * bump(20) * F["jaw_open"]
    G[100:160] += 0.9 * bump(60) * F["brow_frown"]                 # not asked for: the head was turning
    G += np.random.default_rng(0).normal(0, 0.003, G.shape)
    whole, guided = expression_ranges(G), expression_ranges(G, prompted=asked)
    assert set(whole) == {"jawOpen", "browDown"} and set(guided) == {"jawOpen"}
    widest = measures(S + 0.7 * F["jaw_open"])["chin"] - measures(S)["chin"]
    assert whole["jawOpen"] < 0.93 * widest and guided["jawOpen"] == pytest.approx(widest, rel=0.03)
    unasked = np.where(asked == "jaw", "", asked)                  # a prompt the clip lacks: its whole clip
    assert expression_ranges(G, prompted=unasked)["jawOpen"] == whole["jawOpen"]


def test_a_clip_that_never_shows_an_expression_keeps_the_average_face():
    """Jitter, or a movement too small to be the performer's widest (under FULL / RANGE_MAX_GAIN), is no range."""
    from export.expressions import JAW_PULL, expression_ranges

    assert expression_ranges(_performer(0.0, jitter=0.01)) == {}
    assert expression_ranges(_performer(0.0, jitter=0.0)) == {}     # a face that never moves: no ratio of nothing
    # 0.07 IOD: under FULL / 4, so no FULL; the jaw's pull (a ratio) needs no wide jaw, and this one pulls nothing
    assert expression_ranges(_performer(0.3)) == {JAW_PULL: pytest.approx(0.0, abs=0.02)}
    assert expression_ranges(np.full((5, 468, 3), np.nan)) == {}


def test_iris_blinks_take_the_performer_range_too():
    from export.expressions import RANGE_MAX_GAIN, GAINS, ExpressionEstimator, expression_ranges

    G = _performer(0.0, frames=120)
    aperture = np.full(120, 0.40) + np.random.default_rng(1).normal(0, 0.002, 120)
    aperture[58:62] = 0.28                                        # a blink closes 30 % of the lid aperture
    eyes = [{s: {"aperture": float(a), "offset": (0.0, 0.0)} for s in ("left", "right")} for a in aperture]
    ranges = expression_ranges(G, eyes)
    assert GAINS["eyeBlinkIris"][1] / RANGE_MAX_GAIN < ranges["eyeBlinkIris"] < 0.31
    own, plain = ExpressionEstimator(ranges=ranges), ExpressionEstimator()
    for e in (own, plain):
        e.calibrate_eyes({"left": 0.40, "right": 0.40}, {"left": (0.0, 0.0), "right": (0.0, 0.0)})
    shut = eyes[60]
    assert own.blinks(shut)["eyeBlinkLeft"] > 0.9 and plain.blinks(shut)["eyeBlinkLeft"] < 0.15


@pytest.mark.parametrize("ranges,match", [
    ({"jawOpen": 5.0}, "jawOpen must be a number in"), ({"jawOpen": True}, "jawOpen must be a number"),
    ({"cheekPuff": 0.1}, "unknown measure"), ([1], "not an object"),
    ({"mouthSmile/jawOpen": 0.3}, r"mouthSmile/jawOpen must be a number in -1\.\.0"),
    ({"mouthSmile/jawOpen": "down"}, "mouthSmile/jawOpen must be a number")])
def test_stored_ranges_are_checked(ranges, match):
    from export.expressions import ExpressionEstimator

    with pytest.raises(ValueError, match=match):
        ExpressionEstimator(ranges=ranges)
