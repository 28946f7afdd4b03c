"""Gaze ground truth on the synthetic performer (issue #12 item 2) and the gaze error `facetrack eval` reports:
the gaze track, where the rendered iris lands, the metric on known offsets, the MediaPipe iris reading, and the
eval JSON on a short clip through a package with iris.onnx."""
import json

import numpy as np
import pytest

from engine import evaluate, expressions, metrics, synth
from engine.baselines import IRIS_CENTRE, iris_eyes
from engine.errors import UserError
from engine.eyes import gaze_angles

LIMITS = np.radians(synth.GAZE_LIMITS_DEG)


# ------------------------------------------------------------------------------------------------ the track
def _track(seed: int, blink=None, n: int = 300) -> np.ndarray:
    return synth.gaze_track(np.random.default_rng(seed), n, np.zeros((n, 2)) if blink is None else blink)


def test_gaze_track_is_seeded_bounded_and_saccadic():
    g = _track(4)
    np.testing.assert_array_equal(g, _track(4))
    assert not np.array_equal(g, _track(5))
    assert g.shape == (300, 2, 2) and np.array_equal(g[:, 0], g[:, 1])          # both eyes look the same way
    yaw_pitch = g[:, 0]
    assert (np.abs(yaw_pitch) <= LIMITS + 1e-9).all() and np.ptp(yaw_pitch[:, 0]) > np.radians(10)
    step = np.degrees(np.abs(np.diff(yaw_pitch, axis=0))).max(1)
    assert (step < 0.5).mean() > 0.8                       # fixations: still but for a slow drift
    assert step.max() > 3.0                                # saccades: jumps over SACCADE_FRAMES frames
    assert step.max() < 2 * synth.GAZE_LIMITS_DEG[0] / synth.SACCADE_FRAMES + 0.5
    assert (np.abs(np.degrees(np.median(yaw_pitch, 0))) < 1.0).all()   # mostly at the camera: the median calibrates


def test_gaze_is_held_while_an_eye_is_closed():
    blink = np.zeros((300, 2))
    blink[100:112, 1] = np.sin(np.linspace(0, np.pi, 12))        # a wink of the right eye
    g, free = _track(4, blink), _track(4)
    closed = np.flatnonzero(blink[:, 1] > synth.BLINK_CLOSED)
    assert len(closed) > 3
    np.testing.assert_array_equal(g[closed], np.repeat(g[closed[0] - 1][None], len(closed), 0))
    open_ = np.setdiff1d(np.arange(300), closed)
    np.testing.assert_array_equal(g[open_], free[open_])          # nothing else changes


def test_iris_offset_inverts_the_trackers_angle_rule():
    for side in ("left", "right"):
        for yaw, pitch in ((0.3, -0.2), (-0.4, 0.25), (0.0, 0.0)):
            assert gaze_angles(*synth.iris_offset((yaw, pitch), side), side) == pytest.approx((yaw, pitch))
    # to the subject's right (yaw > 0): the left eye's iris goes towards the nose, the right eye's away from it
    assert synth.iris_offset((0.3, 0.0), "left")[0] > 0 > synth.iris_offset((0.3, 0.0), "right")[0]


# ------------------------------------------------------------------------------------------- the rendering
@pytest.fixture(scope="module")
def eye_renderer():
    from engine.render import OffscreenRenderer
    from engine.topology import topology

    topo = topology()
    base = synth.paint_openings(np.full((256, 256, 3), (200, 150, 130), np.uint8), irises=False)
    eyes = [synth.EyeTexels.build(side, 256) for side in synth.SIDES]
    with OffscreenRenderer(320, 320) as r:
        r.set_mesh(np.concatenate([topo.triangles, topo.holes]), topo.uv)
        yield r, base, eyes, topo


def _frontal(eye_renderer, gaze_deg, blink: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """A frontal face rendered with both eyes looking `gaze_deg` (yaw, pitch) and closed by `blink`: (frame RGB
    float, the vertices' image points)."""
    from engine import pose

    r, base, eyes, _ = eye_renderer
    act = np.zeros(len(expressions.NAMES), np.float32)
    act[[expressions.NAMES.index("blink_left"), expressions.NAMES.index("blink_right")]] = blink
    G = expressions.apply(act).astype(np.float64)
    H = np.array([14.0, 0.0, 0.0, 0.0, 160.0, 160.0])
    r.set_texture(synth.eye_texture(base, eyes, G, np.radians([gaze_deg] * 2)))
    return r.render(pose.transform(G, H).astype(np.float32)).astype(float), pose.project(G, H)


def _dark_centroids(eye_renderer, gaze_deg, blink: float = 0.0, dark: float = 110) -> dict:
    """Per eye the centroid of the dark (iris) pixels of the frontal face from the corners' midpoint, in eye
    widths (x right, y down in the image), and their count."""
    topo = eye_renderer[3]
    frame, P = _frontal(eye_renderer, gaze_deg, blink)
    out = {}
    for side in synth.SIDES:
        loop = topo.loops[f"eye_{side}"]
        (x0, y0), (x1, y1) = np.floor(P[loop].min(0)).astype(int), np.ceil(P[loop].max(0)).astype(int)
        ys, xs = np.nonzero(frame[y0:y1 + 1, x0:x1 + 1].mean(-1) < dark)
        inner, outer = P[list(expressions.EYE_CORNERS[side])]
        width, mid = np.linalg.norm(inner - outer), (inner + outer) / 2
        centre = (np.array([xs.mean() + x0, ys.mean() + y0]) - mid) / width if len(xs) else np.full(2, np.nan)
        out[side] = (centre, len(xs))
    return out


def test_rendered_iris_moves_with_the_gaze(eye_renderer):
    right, left = _dark_centroids(eye_renderer, (20, 0)), _dark_centroids(eye_renderer, (-20, 0))
    expected = 2 * np.sin(np.radians(20)) / 2.4                  # eye widths between the two, WIDTH_OVER_RADIUS 2.4
    for side in synth.SIDES:
        shift = right[side][0][0] - left[side][0][0]            # to the subject's right = the image's left
        assert shift == pytest.approx(-expected, abs=0.03), (side, shift)
    down, up = _dark_centroids(eye_renderer, (0, 12)), _dark_centroids(eye_renderer, (0, -12))
    for side in synth.SIDES:                                     # the lids clip a lowered or raised iris
        assert 0.3 * 2 * np.sin(np.radians(12)) / 2.4 < down[side][0][1] - up[side][0][1]


def test_closed_lids_hide_the_iris(eye_renderer):
    # darker than the shut lid's lashes (synth.LASH_SHADE of this skin: ~88): the iris and pupil
    open_, shut = _dark_centroids(eye_renderer, (0, 0), dark=75), _dark_centroids(eye_renderer, (0, 0), 1.0, dark=75)
    for side in synth.SIDES:
        assert open_[side][1] > 100 and shut[side][1] < 0.2 * open_[side][1]


def _sclera_pixels(eye_renderer, blink: float) -> dict:
    """Per eye, the rendered pixels inside its opening as bright as the painted eyeball (the skin is darker)."""
    import cv2

    topo = eye_renderer[3]
    frame, P = _frontal(eye_renderer, (0, 0), blink)
    frame, out = frame.mean(-1), {}
    for side in synth.SIDES:
        mask = np.zeros(frame.shape, np.uint8)
        cv2.fillPoly(mask, [np.round(P[topo.loops[f"eye_{side}"]]).astype(np.int32)], 1)
        out[side] = int(((frame > 190) & (mask > 0)).sum())
    return out


def test_shut_lids_show_no_eyeball(eye_renderer):
    """The meshes' lids stop short of each other at a full blink; the opening then shows the lid, not a white line
    (what the iris model read as a half-open eye, synth.LID_SHUT). Half closed, the eyeball still shows."""
    open_, half = _sclera_pixels(eye_renderer, 0.0), _sclera_pixels(eye_renderer, 0.5)
    for blink in (0.8, 1.0):
        shut = _sclera_pixels(eye_renderer, blink)
        for side in synth.SIDES:
            assert open_[side] > 50 and half[side] > 0.3 * open_[side] and shut[side] <= 0.01 * open_[side], (blink, shut)


# ---------------------------------------------------------------------------------------------- the metric
def test_gaze_error_and_r_on_known_offsets():
    T = 50
    truth = np.zeros((T, 2, 2))
    truth[:, :, 0] = np.radians(np.linspace(-20, 20, T))[:, None]
    pred = truth.copy()
    pred[:, 0, 0] += np.radians(10.0)                            # left eye: 10° too far to the subject's right
    pred[:, 1, 1] -= np.radians(4.0)                             # right eye: 4° too high
    pred[3] = np.nan                                             # a lost frame
    mask = np.ones((T, 2), bool)
    mask[:5, 1] = False                                          # a closed right eye
    e = metrics.gaze_error_deg(pred, truth, mask)
    assert e["left"]["frames"] == T - 1 and e["right"]["frames"] == T - 5
    # yaw alone: the angle is the yaw difference only where both pitches are 0 and at yaw 0, so check one frame
    mid = metrics.gaze_error_deg(pred[T // 2:T // 2 + 1], truth[T // 2:T // 2 + 1])
    assert mid["left"]["mean"] == pytest.approx(10.0, abs=0.3) and mid["right"]["mean"] == pytest.approx(4.0, abs=0.1)
    a, b = metrics.gaze_direction(pred[T // 2]), metrics.gaze_direction(truth[T // 2])
    assert np.degrees(np.arccos((a * b).sum(-1))) == pytest.approx([mid["left"]["mean"], mid["right"]["mean"]])
    assert 9.0 < e["left"]["median"] < 11.0 and 3.5 < e["right"]["mean"] < 4.5
    assert metrics.gaze_error_deg(truth, truth)["left"]["mean"] == 0.0
    r = metrics.gaze_r(pred, truth, mask)
    assert r["left"]["yaw"] == pytest.approx(1.0) and r["right"]["pitch"] is None    # a flat truth has no r
    none = metrics.gaze_error_deg(pred, truth, np.zeros((T, 2), bool))
    assert none["left"] == {"mean": None, "median": None, "frames": 0}
    with pytest.raises(ValueError):
        metrics.gaze_error_deg(pred[:, :1], truth[:, :1])


def test_mediapipe_iris_points_read_like_the_iris_model():
    """Refined FaceMesh points → the same (dx, dy) in eye widths and angles engine.eyes gives our iris model."""
    Y = np.zeros((478, 2))
    Y[[33, 133, 362, 263]] = (100, 200), (140, 200), (180, 200), (220, 200)   # an upright face, eyes 40 px wide
    for up, lo in ((159, 145), (158, 153), (160, 144), (386, 374), (385, 380), (387, 373)):
        Y[up, 1], Y[lo, 1] = 194, 206
    Y[IRIS_CENTRE["right"]] = (116, 202)         # 4 px (0.1 width) towards the image left: away from the nose
    Y[IRIS_CENTRE["left"]] = (196, 202)          # 4 px towards the image left: towards the nose
    eyes = iris_eyes(Y)
    assert eyes["right"]["offset"] == pytest.approx((-0.1, 0.05))
    assert eyes["left"]["offset"] == pytest.approx((0.1, 0.05))
    assert eyes["left"]["aperture"] == pytest.approx(0.3) and eyes["right"]["aperture"] == pytest.approx(0.3)
    (yl, pl), (yr, pr) = eyes["left"]["gaze"], eyes["right"]["gaze"]
    assert yl == pytest.approx(yr) and yl > 0 and pl == pytest.approx(pr) and pl > 0   # to the subject's right, down


def test_ground_truth_gaze_shape_is_checked(tmp_path):
    bad = tmp_path / "gt.npz"
    np.savez(bad, G=np.zeros((3, 468, 3)), H=np.zeros((3, 6)), gaze=np.zeros((3, 2)))
    with pytest.raises(UserError, match="gaze"):
        evaluate._load_gt(bad)


# ------------------------------------------------------------------------------------------------- the eval
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_eval_reports_gaze_error_for_a_package_with_irises(tmp_path):
    import argparse

    from export.package import IRIS, SAMPLE_PACKAGE

    if not (SAMPLE_PACKAGE / IRIS).is_file():
        pytest.skip("the sample package has no iris.onnx")
    clip = synth.write_clip(tmp_path / "clip", frames=30, domain="lab", seed=29, size=(480, 360))
    truth = np.load(clip / "gt.npz")["gaze"]
    assert np.ptp(np.degrees(truth[:, 0, 0])) > 5                 # the truth moves in these frames
    baseline = []
    try:
        import mediapipe  # noqa: F401
        baseline = ["--baseline", "mediapipe"]
    except ImportError:
        pass
    out = tmp_path / "eval.json"
    p = argparse.ArgumentParser()
    evaluate.add_parser(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(["eval", str(SAMPLE_PACKAGE), str(clip / "video.mp4"), "--gt", str(clip / "gt.npz"),
                         "--json", str(out), "--backend", "cpu", "--threads", "1", *baseline])
    args.run(args)
    r = json.loads(out.read_text())
    for scored in [r] + ([r["baseline"]] if baseline else []):
        for side in ("left", "right"):
            e = scored["gaze_error_deg"][side]
            assert e["frames"] >= 20 and 0.0 < e["median"] <= e["mean"] + 10 and e["mean"] < 30, (scored["model"], e)
            assert set(scored["gaze_r"][side]) == {"yaw", "pitch"}
    assert min(r["gaze_r"][side]["yaw"] for side in ("left", "right")) > 0.7, r["gaze_r"]   # ours follows the yaw
    assert out.with_suffix(".gaze.png").stat().st_size > 5000
