"""Gaze and blinks (issue #12 item 2): the iris landmarker in torch and in the package, the eye-crop rule, what the
expressions make of it, and blink precision/recall on hand-labelled real frames (tests/fixtures/blinks.json)."""
import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from engine import eyes as E
from export.expressions import ARKIT_NAMES, ExpressionEstimator, look_values
from export.package import IRIS, MANIFEST, SAMPLE_PACKAGE, open_package

FIXTURE = Path(__file__).parent / "fixtures" / "blinks.json"


# ------------------------------------------------------------------------------------------- crop rule (no torch)
def _points(corners: dict[int, tuple[float, float]]) -> np.ndarray:
    p = np.zeros((468, 2))
    for i, xy in corners.items():
        p[i] = xy
    return p


def _to_crop(M, xy):
    return M[:, :2] @ np.asarray(xy, float) + M[:, 2]


def test_eye_crop_is_centred_square_rotated_and_the_left_eye_mirrored():
    half = E.EYE_SIZE / 2 / E.EYE_SCALE           # where the corners land from the crop centre
    # an upright face: 33 (right eye, outer) on the image left of 133; 362 (left eye, inner) left of 263 (outer)
    p = _points({33: (100, 200), 133: (140, 200), 362: (180, 200), 263: (220, 200)})
    right, left = (E.eye_matrix(p, eye) for eye in E.EYES)
    c = E.EYE_SIZE / 2
    np.testing.assert_allclose(_to_crop(right, p[33]), (c - half, c), atol=1e-9)    # outer corner on the left
    np.testing.assert_allclose(_to_crop(right, p[133]), (c + half, c), atol=1e-9)
    # mirrored: the left eye's outer corner (263) also lands on the crop's left, in pixel-index coordinates
    np.testing.assert_allclose(_to_crop(left, p[263]), (E.EYE_SIZE - 1 - (c + half), c), atol=1e-9)
    np.testing.assert_allclose(_to_crop(left, p[362]), (E.EYE_SIZE - 1 - (c - half), c), atol=1e-9)
    # a rolled head: the corner line still comes out horizontal
    a = np.radians(20)
    R = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    q = p @ R.T
    for eye in E.EYES:
        M = E.eye_matrix(q, eye)
        u, v = (_to_crop(M, q[i]) for i in E.CORNERS[eye])
        assert abs(u[1] - v[1]) < 1e-9 and abs(abs(u[0] - v[0]) - 2 * half) < 1e-9
    frame = np.zeros((400, 400, 3), np.uint8)
    batch, matrices = E.eye_inputs(frame, p)
    assert batch.shape == (2, 64, 64, 3) and batch.dtype == np.uint8 and matrices.shape == (2, 2, 3)


def _contour(aperture: float, iris_dx: float = 0.0, iris_dy: float = 0.0):
    """A model output in crop pixels: corners at x 12 and 52 (width 40), lids ±aperture·20·sin around y 32."""
    contour = np.zeros((71, 3))
    xs = np.linspace(12, 52, 9)
    contour[:9, 0], contour[:9, 1] = xs, 32 + 20 * aperture * np.sin(np.linspace(0, np.pi, 9))
    contour[9:16, 0], contour[9:16, 1] = xs[1:8], 32 - 20 * aperture * np.sin(np.linspace(0, np.pi, 9))[1:8]
    iris = np.zeros((5, 3))
    iris[:, 0], iris[:, 1] = 32 + 40 * iris_dx, 32 + 40 * iris_dy
    return contour, iris


def test_aperture_and_gaze_conventions():
    contour, iris = _contour(0.15)
    s = E.eye_state(contour, iris, "left")
    assert s["aperture"] == pytest.approx(0.15 * np.mean(np.sin(np.linspace(0, np.pi, 9))[[3, 4, 5]]))
    assert s["gaze"] == pytest.approx((0.0, 0.0))
    # iris towards the nose (+x in both crops): the left eye turns to the subject's right (yaw > 0), the right eye
    # to the subject's left (yaw < 0); iris lower in the crop looks down (pitch > 0)
    contour, iris = _contour(0.15, iris_dx=0.1, iris_dy=0.05)
    (yl, pl), (yr, pr) = E.eye_state(contour, iris, "left")["gaze"], E.eye_state(contour, iris, "right")["gaze"]
    assert yl > 0 > yr and yl == pytest.approx(-yr) and pl > 0 and pl == pytest.approx(pr)
    assert yl == pytest.approx(np.arcsin(E.WIDTH_OVER_RADIUS * 0.1))
    # back to frame pixels through the crop's affine
    p = _points({33: (100, 200), 133: (140, 200), 362: (180, 200), 263: (220, 200)})
    _, M = E.eye_inputs(np.zeros((400, 400, 3), np.uint8), p)
    out = E.eye_results(np.stack([contour] * 2), np.stack([iris] * 2), M)
    assert set(out) == {"left", "right"} and out["left"]["contour"].shape == (71, 2)
    np.testing.assert_allclose(_to_crop(M[0], out["right"]["iris"][0]), iris[0, :2], atol=1e-4)


# ------------------------------------------------------------------------------------------- expressions
def _eyes(aperture=0.3, offset=(-0.07, -0.09), left=None, right=None):
    one = lambda a, o: {"aperture": a, "offset": o}
    return {"left": left or one(aperture, offset), "right": right or one(aperture, offset)}


def test_expressions_read_blinks_and_gaze_from_the_iris_model():
    from engine import canonical

    G = canonical.load()[0]
    est = ExpressionEstimator()
    est.calibrate(G, _eyes(0.32, (-0.07, -0.09)))
    v = est(G, eyes=_eyes(0.32, (-0.07, -0.09)))
    assert set(v) == set(ARKIT_NAMES) and max(v.values()) == 0.0        # the neutral face reads all zeros
    assert est.last_gaze == {"left": pytest.approx((0.0, 0.0)), "right": pytest.approx((0.0, 0.0))}
    closed = est(G, eyes=_eyes(left={"aperture": 0.03, "offset": (-0.07, -0.09)},
                               right={"aperture": 0.31, "offset": (-0.07, -0.09)}))
    assert closed["eyeBlinkLeft"] == 1.0 and closed["eyeBlinkRight"] == 0.0      # a wink reaches 1, one-sided
    # both irises towards the subject's left: the left eye looks out, the right eye looks in (ARKit)
    look = est(G, eyes=_eyes(left={"aperture": 0.32, "offset": (-0.07 - 0.12, -0.09)},
                             right={"aperture": 0.32, "offset": (-0.07 + 0.12, -0.09)}))
    assert look["eyeLookOutLeft"] > 0.5 and look["eyeLookInRight"] > 0.5
    assert look["eyeLookInLeft"] == look["eyeLookOutRight"] == 0.0
    assert est.last_gaze["left"][0] < 0 and est.last_gaze["right"][0] < 0        # yaw < 0: towards the left
    # an eye that closes keeps the gaze it had: its hidden iris does not throw the eye bone around
    before = est.last_gaze["left"]
    est(G, eyes=_eyes(left={"aperture": 0.02, "offset": (0.2, 0.2)}, right={"aperture": 0.32, "offset": (0, 0)}))
    assert est.last_gaze["left"] == before
    down = look_values({"left": (0.0, 0.4), "right": (0.0, -0.4)})
    assert down["eyeLookDownLeft"] > 0.5 and down["eyeLookUpRight"] > 0.5
    # without eyes: G's blink path, eyeLook* 0, no gaze
    plain = ExpressionEstimator()(G)
    assert all(plain[k] == 0.0 for k in ARKIT_NAMES if k.startswith("eyeLook"))


# ------------------------------------------------------------------------------------------- the models
def _sample_eye_batches(n=3):
    from engine import video
    from export.runtime import Tracker

    tracker = Tracker(SAMPLE_PACKAGE, backend="cpu")
    out = []
    for frame in itertools.islice(video.frames(SAMPLE_PACKAGE / "synthetic.mp4"), 20):
        r = tracker(frame)
        if r is not None:
            out.append(E.eye_inputs(frame, r.points)[0])
        if len(out) == n:
            break
    assert out
    return out


def _mediapipe_iris():
    """MediaPipe's own TFLite runtime (InferenceCalculator, XNNPACK) on iris_landmark.tflite, in a small graph."""
    pytest.importorskip("mediapipe")
    try:
        from google.protobuf import text_format
        from mediapipe.calculators.core import split_vector_calculator_pb2  # noqa: F401 (registers the options)
        from mediapipe.calculators.tensor import (image_to_tensor_calculator_pb2, inference_calculator_pb2,  # noqa
                                                  tensors_to_landmarks_calculator_pb2)
        from mediapipe.framework import calculator_pb2
        from mediapipe.python.solution_base import SolutionBase
    except ImportError as err:
        pytest.skip(f"mediapipe graph API unavailable ({err})")
    landmarks = lambda stream, out, n: f"""node {{ calculator: "TensorsToLandmarksCalculator"
        input_stream: "TENSORS:{stream}" output_stream: "NORM_LANDMARKS:{out}"
        options {{ [mediapipe.TensorsToLandmarksCalculatorOptions.ext] {{
          num_landmarks: {n} input_image_width: 64 input_image_height: 64 }} }} }}"""
    config = f"""
      input_stream: "image" output_stream: "contour" output_stream: "iris"
      node {{ calculator: "ImageToTensorCalculator" input_stream: "IMAGE:image" output_stream: "TENSORS:input"
        options {{ [mediapipe.ImageToTensorCalculatorOptions.ext] {{ output_tensor_width: 64
          output_tensor_height: 64 keep_aspect_ratio: false output_tensor_float_range {{ min: 0 max: 1 }} }} }} }}
      node {{ calculator: "InferenceCalculator" input_stream: "TENSORS:input" output_stream: "TENSORS:output"
        options {{ [mediapipe.InferenceCalculatorOptions.ext] {{
          model_path: "mediapipe/modules/iris_landmark/iris_landmark.tflite" delegate {{ xnnpack {{}} }} }} }} }}
      node {{ calculator: "SplitTensorVectorCalculator" input_stream: "output"
        output_stream: "contour_tensor" output_stream: "iris_tensor"
        options {{ [mediapipe.SplitVectorCalculatorOptions.ext] {{
          ranges {{ begin: 0 end: 1 }} ranges {{ begin: 1 end: 2 }} }} }} }}
      {landmarks("contour_tensor", "contour", 71)}
      {landmarks("iris_tensor", "iris", 5)}"""
    graph = SolutionBase(graph_config=text_format.Parse(config, calculator_pb2.CalculatorGraphConfig()))

    def run(crop):
        r = graph.process({"image": crop})
        xyz = lambda lms: np.array([(p.x * 64, p.y * 64, p.z * 64) for p in lms.landmark])
        return xyz(r.contour), xyz(r.iris)
    return run


def test_torch_iris_matches_mediapipe_runtime_and_the_package_graph():
    torch = pytest.importorskip("torch")
    import onnxruntime as ort

    from engine.iris import IrisGraph

    mediapipe = _mediapipe_iris()
    graph = IrisGraph().eval()
    session = ort.InferenceSession(str(SAMPLE_PACKAGE / IRIS), providers=["CPUExecutionProvider"])
    worst_mp = worst_ort = 0.0
    for batch in _sample_eye_batches():
        with torch.no_grad():
            contours, iris = (t.numpy() for t in graph(torch.from_numpy(batch)))
        for k in range(2):
            mp_contour, mp_iris = mediapipe(np.ascontiguousarray(batch[k]))
            worst_mp = max(worst_mp, np.abs(mp_contour - contours[k]).max(), np.abs(mp_iris - iris[k]).max())
        o_contours, o_iris = session.run(None, {"eyes": batch})
        worst_ort = max(worst_ort, np.abs(o_contours - contours).max(), np.abs(o_iris - iris).max())
    assert worst_mp < 1e-3, f"torch vs MediaPipe's TFLite runtime: {worst_mp} px"
    assert worst_ort < 1e-3, f"iris.onnx vs torch: {worst_ort} px"
    assert open_package(SAMPLE_PACKAGE).manifest["parity"]["iris"] < 1e-3


def test_package_eyes_are_optional(tmp_path):
    from engine import video
    from export.runtime import Tracker

    frame = next(video.frames(SAMPLE_PACKAGE / "synthetic.mp4"))
    r = Tracker(SAMPLE_PACKAGE, backend="cpu")(frame)
    assert r is not None and set(r.eyes) == {"left", "right"} and "eyes" in r.stages_ms
    for eye in r.eyes.values():
        assert eye["contour"].shape == (71, 2) and eye["iris"].shape == (5, 2) and 0.1 < eye["aperture"] < 0.6
        assert np.linalg.norm(eye["iris"][0] - eye["contour"][[0, 8]].mean(0)) < 20     # the iris is in the eye
    # a package without the iris graph still opens and tracks, with no eyes
    old = tmp_path / "old"
    shutil.copytree(SAMPLE_PACKAGE, old, ignore=shutil.ignore_patterns(IRIS, "trt"))
    manifest = json.loads((old / MANIFEST).read_text())
    del manifest["files"][IRIS]
    (old / MANIFEST).write_text(json.dumps(manifest))
    r = Tracker(old, backend="cpu")(frame)
    assert r is not None and r.eyes is None and "eyes" not in r.stages_ms


def test_the_studio_worker_sends_gaze_and_iris_blinks():
    from app.mailbox import LatestSlot
    from app.sources import Frame
    from app.tracking import TrackWorker
    from engine import canonical
    from engine.tracking import FaceResult

    G = canonical.load()[0]
    eyes = _eyes(left={"aperture": 0.02, "offset": (-0.07, -0.09)}, right={"aperture": 0.30, "offset": (0.05, -0.09)})

    class Sent:
        calls = []

        def send(self, H, expressions, gaze=None, timestamp=None):
            self.calls.append((expressions, gaze))

    worker = TrackWorker(LatestSlot(), tracker=lambda image: FaceResult(G=G, points=G[:, :2], H=np.ones(6), eyes=eyes))
    worker.sender = Sent()
    worker.process(Frame(np.zeros((8, 8, 3), np.uint8), t=0.0, index=0))
    expressions, gaze = Sent.calls[-1]
    assert expressions["eyeBlinkLeft"] == 1.0 and expressions["eyeBlinkRight"] == 0.0
    assert set(gaze) == {"left", "right"} and gaze["right"][0] < 0 and expressions["eyeLookInRight"] > 0


# ------------------------------------------------------------------------------------------- real blinks
def test_blinks_on_hand_labelled_real_frames(shared_data):
    """The first 130 frames of lp_driving_d14 (5 blinks, labelled by hand) through the sample package: eyeBlink > 0.5
    on a closed eye, through the iris graph; G's old blink misses them."""
    from engine import video
    from engine.evaluate import arkit_series
    from export.runtime import Tracker

    clip = "liveportrait/lp_driving_d14.mp4"
    labels = json.loads(FIXTURE.read_text())
    n = 130
    tracker = Tracker(SAMPLE_PACKAGE, backend="cpu")
    G, found_eyes = [], []
    for frame in itertools.islice(video.frames(shared_data / "videos" / clip), n):
        r = tracker(frame)
        G.append(np.full((468, 3), np.nan) if r is None else r.G)
        found_eyes.append(None if r is None else r.eyes)
    closed = np.zeros(n, bool)
    closed[[f for f in labels[clip] if f < n]] = True
    scored = np.ones(n, bool)
    scored[[f for f in labels["unsure"][clip] if f < n]] = False
    assert closed.sum() >= 10
    new = arkit_series(np.asarray(G), [None] * n, found_eyes)
    detected = np.nan_to_num(np.fmax(new["eyeBlinkLeft"], new["eyeBlinkRight"])) > 0.5
    tp, fp = (detected & closed & scored).sum(), (detected & ~closed & scored).sum()
    assert tp / closed[scored].sum() >= 0.85 and tp / max(tp + fp, 1) >= 0.9     # 15/17, 0 false (2026-12-01)
    old = arkit_series(np.asarray(G), [None] * n)
    assert (np.nan_to_num(np.fmax(old["eyeBlinkLeft"], old["eyeBlinkRight"])) > 0.5)[closed].sum() < tp


def test_eyes_can_be_turned_off():
    """TrackOptions(eyes=False) (track --no-eyes) skips the iris graph: no eyes, no eyes stage."""
    from engine import video
    from engine.tracking import TrackOptions
    from export.runtime import Tracker

    frame = next(video.frames(SAMPLE_PACKAGE / "synthetic.mp4"))
    on = Tracker(SAMPLE_PACKAGE, "cpu")(frame)
    off = Tracker(SAMPLE_PACKAGE, "cpu", options=TrackOptions(eyes=False))(frame)
    assert on.eyes is not None and "eyes" in on.stages_ms
    assert off.eyes is None and "eyes" not in off.stages_ms
    assert np.array_equal(on.points, off.points)
