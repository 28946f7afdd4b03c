"""Per-package settings (app.settings), the per-shape tuning and neutral export (export.expressions), the
performer's smoothing pair (app.smoothing), the track step's use of them (app.tracking) and `facetrack track`
applying them. No Qt here: the studio's side is in tests/test_studio.py."""
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

from app import settings as saved
from app.mailbox import LatestSlot
from app.smoothing import PoseSmoother
from app.sources import Frame
from app.tracking import TrackWorker
from export.expressions import ARKIT_NAMES, ExpressionEstimator, check_neutral, tune
from export.package import SAMPLE_PACKAGE

KEY = "0123456789abcdef"


def _face(seed=0, scale=0.05):
    from engine import canonical

    G = canonical.load()[0].astype(np.float64)
    return G + np.random.default_rng(seed).normal(scale=scale, size=G.shape)


def _eyes(aperture=0.3, offset=(0.01, -0.05)):
    return {s: {"aperture": aperture, "offset": offset} for s in ("left", "right")}


def _full_settings() -> saved.PackageSettings:
    est = ExpressionEstimator()
    est.calibrate(_face(), _eyes())
    neutral = est.neutral_state()
    neutral["head"] = [12.0, 0.1, -0.2, 0.05, 320.0, 240.0]
    return saved.PackageSettings(neutral=neutral, gains={"jawOpen": 1.5, "eyeBlinkLeft": 0.5},
                                 dead_zones={"jawOpen": 0.1, "browInnerUp": 0.2}, smoothing=False,
                                 min_cutoff=0.4, beta=2.5, overlay=False, camera_width=1280, camera_height=720,
                                 camera_fps=60, mirror=True, backend="cuda",
                                 ranges={"jawOpen": 0.2, "mouthSmile": 0.05})


# --------------------------------------------------------------------------------------------- file format
def test_round_trip_keeps_every_field():
    s = _full_settings()
    assert saved.save_package_settings(KEY, s, package_path=SAMPLE_PACKAGE) is None
    path = saved.package_settings_file(KEY)
    assert path == saved.config_dir() / "packages" / f"{KEY}.json"
    data = json.loads(path.read_text())
    assert data["package"] == str(SAMPLE_PACKAGE.absolute()) and data["version"] == 1
    assert set(data["shapes"]) == {"jawOpen", "eyeBlinkLeft", "browInnerUp"}   # only the non-default shapes
    loaded, problems = saved.load_package_settings(KEY)
    assert problems == [] and loaded == s


def test_missing_file_is_the_defaults_without_a_message():
    assert saved.load_package_settings(KEY) == (saved.PackageSettings(), [])
    assert saved.load_package_settings(None) == (saved.PackageSettings(), [])
    assert saved.save_package_settings(None, saved.PackageSettings()) is None    # no key: nothing written
    assert not (saved.config_dir() / "packages").exists()


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", "null", ""])
def test_malformed_file_reads_as_defaults_with_a_line(text):
    path = saved.package_settings_file(KEY)
    path.parent.mkdir(parents=True)
    path.write_text(text)
    s, problems = saved.load_package_settings(KEY)
    assert s == saved.PackageSettings() and problems
    line = saved.problems_line(KEY, problems)
    assert "\n" not in line and str(path) in line and "defaults" in line


NAN, INF = float("nan"), float("inf")
BAD_FIELDS = [      # (where in the file, the bad value, the field reported)
    (("smoothing", "min_cutoff"), NAN, "min_cutoff"),
    (("smoothing", "min_cutoff"), -1, "min_cutoff"),
    (("smoothing", "min_cutoff"), 1e300, "min_cutoff"),
    (("smoothing", "beta"), "fast", "beta"),
    (("smoothing", "beta"), INF, "beta"),
    (("smoothing", "on"), 1, "smoothing"),
    (("smoothing",), [1, 2], "smoothing"),
    (("overlay",), "yes", "overlay"),
    (("camera", "width"), 100000, "camera_width"),
    (("camera", "width"), 640.0, "camera_width"),
    (("camera", "fps"), 1000, "camera_fps"),
    (("camera", "fps"), True, "camera_fps"),
    (("camera", "mirror"), "on", "mirror"),
    (("camera",), "1080p", "camera"),
    (("backend",), "quantum", "backend"),
    (("backend",), 3, "backend"),
    (("shapes", "jawClench"), {"gain": 2.0}, "shapes.jawClench"),
    (("shapes", "jawOpen"), {"gain": -1}, "shapes.jawOpen"),
    (("shapes", "jawOpen"), {"gain": 1e9}, "shapes.jawOpen"),
    (("shapes", "jawOpen"), {"dead_zone": 0.99}, "shapes.jawOpen"),
    (("shapes", "jawOpen"), 2, "shapes.jawOpen"),
    (("shapes",), ["jawOpen"], "shapes"),
    (("neutral",), "calibrated", "neutral"),
    (("neutral",), {"measures": {"chin": 1.0}, "eyes": {}}, "neutral"),
    (("ranges",), {"jawOpen": 9.0}, "ranges"),
    (("ranges",), {"tongueOut": 0.1}, "ranges"),
    (("ranges",), [0.2], "ranges"),
]


@pytest.mark.parametrize("where, value, field", BAD_FIELDS, ids=[f"{f}-{i}" for i, (_, _, f) in enumerate(BAD_FIELDS)])
def test_a_bad_field_reads_as_its_default_and_the_rest_is_kept(where, value, field):
    good, default = _full_settings(), saved.PackageSettings()
    data = good.to_json()
    parent = data
    for k in where[:-1]:
        parent = parent[k]
    parent[where[-1]] = value
    path = saved.package_settings_file(KEY)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(data))                      # Python writes NaN / Infinity as JSON allows it to read
    s, problems = saved.load_package_settings(KEY)
    assert problems == [field]
    line = saved.problems_line(KEY, problems)
    assert field in line and "\n" not in line
    if field == "shapes":
        assert s.gains == {} and s.dead_zones == {}
    elif field.startswith("shapes."):
        assert "jawClench" not in s.gains and s.gains["eyeBlinkLeft"] == 0.5      # the other shapes are kept
    elif field == "camera":
        assert (s.camera_width, s.camera_fps, s.mirror) == (0, 0, False)
    elif field != "neutral":
        assert getattr(s, field) == getattr(default, field) != getattr(good, field)
    assert s.backend == (good.backend if field != "backend" else "auto")   # an untouched field survives
    assert (s.neutral is None) == (field == "neutral")


@pytest.mark.parametrize("mutate", [
    lambda n: n["measures"].pop("chin"),
    lambda n: n["measures"].update(chin=float("nan")),
    lambda n: n["measures"].update(aperture_left=0.0),
    lambda n: n["measures"].update(extra=1.0),
    lambda n: n["eyes"]["left"].update(aperture=-0.3),
    lambda n: n["eyes"]["right"].update(offset=[0.1]),
    lambda n: n.update(head=[1, 2, 3]),
    lambda n: n.update(head=[0, 0, 0, 0, 0, 0]),
    lambda n: n.update(head=[10, 0, 0, 0, "x", 0]),
])
def test_a_damaged_calibration_is_dropped_whole(mutate):
    data = _full_settings().to_json()
    mutate(data["neutral"])
    s, problems = saved.PackageSettings.from_json(json.loads(json.dumps(data)))
    assert s.neutral is None and problems == ["neutral"] and s.gains == _full_settings().gains


def test_half_a_camera_size_is_no_size():
    s, problems = saved.PackageSettings.from_json({"camera": {"width": 1280, "height": 0}})
    assert (s.camera_width, s.camera_height) == (0, 0) and problems == ["camera size"]


def test_an_unwritable_config_is_a_line_not_an_exception(tmp_path, monkeypatch):
    blocker = tmp_path / "config"
    blocker.write_text("a file where the folder should be")    # root ignores chmod; a file stops anyone
    monkeypatch.setenv("FACETRACK_CONFIG", str(blocker))
    error = saved.save_package_settings(KEY, _full_settings())
    assert error and error.startswith("cannot save settings to") and "\n" not in error
    assert saved.load_package_settings(KEY) == (saved.PackageSettings(), [])


def test_keys():
    from app.demo_tracker import DemoTracker
    from export.package import open_package, sha256

    package = open_package(SAMPLE_PACKAGE)
    key = saved.package_key(SimpleNamespace(package=package))
    assert key == sha256(SAMPLE_PACKAGE / "manifest.json")[:16] == saved.folder_key(SAMPLE_PACKAGE)
    assert saved.package_key(DemoTracker()) == "demo"
    assert saved.package_key(SimpleNamespace(package=SimpleNamespace(manifest_sha256="../../etc"))) is None
    assert saved.package_key(None) is None and saved.folder_key("/nowhere") is None


# ------------------------------------------------------------------------------------- expressions: tuning
def test_gain_and_dead_zone_math():
    values = dict.fromkeys(ARKIT_NAMES, 0.5)
    values.update(jawOpen=0.05, mouthClose=1.0, browInnerUp=0.7)
    out = tune(values, gains={"browInnerUp": 2.0, "mouthSmileLeft": 0.5, "notAShape": 3.0},
               dead_zones={"jawOpen": 0.1, "mouthClose": 0.2, "browInnerUp": 0.2})
    assert out["jawOpen"] == 0.0                          # under its dead zone
    assert out["mouthClose"] == pytest.approx(1.0)        # 1 stays reachable through a dead zone
    assert out["browInnerUp"] == 1.0                      # (0.7 − 0.2) / 0.8 · 2 = 1.25, clipped at 1
    assert out["mouthSmileLeft"] == pytest.approx(0.25)
    assert out["eyeBlinkLeft"] == 0.5 and "notAShape" not in out
    assert values["jawOpen"] == 0.05                      # the input is not changed
    assert tune({"jawOpen": 0.5}, dead_zones={"jawOpen": 0.3})["jawOpen"] == pytest.approx(0.2 / 0.7)
    assert tune(values) == values


def test_neutral_state_is_json_and_restores_the_same_readings():
    G0, G1 = _face(1), _face(2, scale=0.3)
    eyes = _eyes(0.28, (0.02, -0.04))
    a = ExpressionEstimator()
    a.calibrate(G0, eyes)
    state = json.loads(json.dumps(a.neutral_state()))
    b = ExpressionEstimator()
    assert b(G1, eyes=_eyes(0.2)) != a(G1, eyes=_eyes(0.2))
    b.set_neutral_state(state)
    assert b(G1, eyes=_eyes(0.2)) == pytest.approx(a(G1, eyes=_eyes(0.2)))
    assert max(b(G0, eyes=eyes).values()) < 1e-6            # the calibrated face reads zero
    b.reset_neutral()
    assert b.neutral == ExpressionEstimator().neutral
    with pytest.raises(ValueError):
        check_neutral({"measures": state["measures"], "eyes": {"left": state["eyes"]["left"]}})


# ------------------------------------------------------------------------------------------------ smoothing
def _settle_frames(smoother: PoseSmoother) -> int:
    """Frames at 30 fps for G to cover 90 % of a 1 cm step."""
    G, H = np.zeros((468, 3), np.float32), np.array([10.0, 0, 0, 0, 100, 100])
    smoother(G, H, 0.0)
    for k in range(1, 300):
        out, _ = smoother(G + 1.0, H, k / 30)
        if out[0, 0] >= 0.9:
            return k
    return 300


def test_lower_min_cutoff_settles_slower():
    slow, fast = _settle_frames(PoseSmoother(0.3, 0.0)), _settle_frames(PoseSmoother(3.0, 0.0))
    assert fast < slow and slow > 2 * fast
    assert _settle_frames(PoseSmoother(0.3, 5.0)) < slow           # beta speeds up a fast move
    default = PoseSmoother()
    assert (default._angles.min_cutoff, default._angles.beta) == (1.0, 1.0)
    assert (default._G.min_cutoff, default._G.beta) == (1.5, 0.5)  # PARAMS exactly, at the default pair


class StepTracker:
    """The same face, 1 cm further along x from frame 5 on."""

    def __init__(self):
        self.calls = 0
        self.G = np.zeros((468, 3), np.float32)

    def __call__(self, image):
        self.calls += 1
        G = self.G + (1.0 if self.calls > 5 else 0.0)
        return SimpleNamespace(G=G, H=np.array([10.0, 0, 0, 0, 100, 100]), points=np.zeros((468, 2)),
                               z=np.zeros(4), presence=1.0)


def _worker_settle(min_cutoff: float) -> int:
    step = TrackWorker(LatestSlot(), StepTracker())
    step.estimator = _NullEstimator()
    step.set_smoothing_params(min_cutoff, 0.0)
    image = np.zeros((8, 8, 3), np.uint8)
    for k in range(200):
        item = step.process(Frame(image, k / 30, k))
        if k > 5 and item.G[0, 0] >= 0.9:
            return k - 5
    return 200


class _NullEstimator:
    last_gaze = None

    def set_ranges(self, ranges):
        pass

    def __call__(self, G, eyes=None):
        return dict.fromkeys(ARKIT_NAMES, 0.0)


def test_smoothing_params_reach_the_track_step():
    assert _worker_settle(0.3) > 2 * _worker_settle(3.0)


def test_a_new_source_makes_the_tracker_forget_the_face():
    """Pipeline.set_source → TrackWorker.restart: the track thread resets the tracker (its crop and flow) before the
    next frame, once."""
    tracker = StepTracker()
    tracker.resets = 0
    tracker.reset = lambda: setattr(tracker, "resets", tracker.resets + 1)
    step = TrackWorker(LatestSlot(), tracker)
    step.estimator = _NullEstimator()
    image = np.zeros((8, 8, 3), np.uint8)
    step.process(Frame(image, 0.0, 0))
    assert tracker.resets == 0
    step.restart()
    step.process(Frame(image, 1 / 30, 1))
    step.process(Frame(image, 2 / 30, 2))
    assert tracker.resets == 1 and tracker.calls == 3


class JawTracker:
    """The canonical face whose jaw opens to `peak` of the procedural field over frames 30..60 (of a clip at 30 fps),
    with a little jitter."""

    def __init__(self, peak: float = 0.6):
        from engine import canonical, expressions

        self.S = canonical.load()[0].astype(np.float64)
        self.jaw = dict(zip(expressions.NAMES, expressions.basis()))["jaw_open"].astype(np.float64)
        self.peak, self.calls, self.rng = peak, 0, np.random.default_rng(0)

    def __call__(self, image):
        k = self.calls
        self.calls += 1
        a = self.peak * max(0.0, 1.0 - ((k - 45) / 15) ** 2)
        G = self.S + a * self.jaw + self.rng.normal(0, 0.003, self.S.shape)
        return SimpleNamespace(G=G, H=np.array([10.0, 0, 0, 0, 100, 100]), points=np.zeros((468, 2)), z=None,
                               presence=1.0)


def test_the_track_step_ramps_to_the_package_range():
    """A performer package's expression range (export.ranges) reaches the studio's estimator with the tracker, at
    construction and on a swap; a tracker without one (generic, replay) puts back the average face's."""
    from export.expressions import GAINS
    from export.package import SAMPLE_PACKAGE, open_package

    ranges = open_package(SAMPLE_PACKAGE).expression_ranges
    own = JawTracker()
    own.package = SimpleNamespace(expression_ranges=ranges)
    step = TrackWorker(LatestSlot(), own)
    assert step.estimator.gains["jawOpen"][1] == ranges["jawOpen"] < GAINS["jawOpen"][1]
    image = np.zeros((8, 8, 3), np.uint8)
    step.set_tracker(JawTracker())
    step.process(Frame(image, 0.0, 0))
    assert step.estimator.gains == GAINS
    step.set_tracker(own)
    step.process(Frame(image, 1 / 30, 1))
    assert step.estimator.gains["mouthSmile"][1] == ranges["mouthSmile"]


def test_the_studio_measures_the_performers_range():
    """"Measure my range": the next seconds of faces give, from the calibrated neutral, where each shown measure
    reaches 1; it holds over the package's own and through a tracker swap; None gives the package's back."""
    from export.expressions import GAINS, JAW_PULL

    tracker = JawTracker()
    step = TrackWorker(LatestSlot(), tracker)
    step.smoothing = False
    image = np.zeros((8, 8, 3), np.uint8)
    step.calibrate_neutral()
    step.process(Frame(image, 0.0, 0))                        # rest: the neutral
    step.measure_range(2.0)
    values = [step.process(Frame(image, k / 30, k)).expressions["jawOpen"] for k in range(1, 75)]
    assert step.range_measures == 1 and set(step.own_ranges) == {"jawOpen", JAW_PULL}
    # this jaw leaves the mouth corners where they are: its pull is ~0, and has no word in the message
    assert step.own_ranges[JAW_PULL] == step.estimator.jaw_pull == pytest.approx(0.0, abs=0.05)
    assert list(step.messages)[-1] == "range measured (jaw): 1 is now your widest"
    assert step.estimator.gains["jawOpen"][1] == step.own_ranges["jawOpen"] < GAINS["jawOpen"][1]
    assert max(values[:60]) < 0.7                             # measured with the average face's range: short of 1
    tracker.calls = 45                                        # the jaw again, at its widest
    assert step.process(Frame(image, 3.0, 75)).expressions["jawOpen"] > 0.95
    own = JawTracker()
    own.package = SimpleNamespace(expression_ranges={"mouthSmile": 0.05})
    step.set_tracker(own)
    step.process(Frame(image, 3.2, 77))
    assert step.estimator.gains["mouthSmile"][1] == 0.05 and step.estimator.gains["jawOpen"][1] < GAINS["jawOpen"][1]
    step.set_own_ranges(None)
    assert step.estimator.gains["jawOpen"] == GAINS["jawOpen"] and step.estimator.gains["mouthSmile"][1] == 0.05


def test_every_ranged_measure_has_words():
    from app.tracking import RANGE_WORDS
    from export.expressions import RANGED

    assert set(RANGE_WORDS) == set(RANGED)


def test_a_range_of_nothing_changes_nothing():
    step = TrackWorker(LatestSlot(), JawTracker(peak=0.0))
    step.smoothing = False
    image = np.zeros((8, 8, 3), np.uint8)
    step.measure_range(1.0)
    for k in range(40):
        step.process(Frame(image, k / 30, k))
    assert step.range_measures == 0 and step.own_ranges is None and step._range is None


def test_a_new_sender_starts_from_the_calibrated_head():
    calls = []
    sender = SimpleNamespace(calibrate=lambda H: calls.append(list(H)))
    step = TrackWorker(LatestSlot())
    step.sender = sender
    assert calls == []                                     # nothing calibrated yet: the sender picks its own
    state = _full_settings().neutral
    step.sender = None
    step.set_neutral(state)
    step.sender = sender
    assert calls == [state["head"]]
    assert step.neutral_state()["head"] == state["head"]
    assert step.neutral_state()["measures"] == pytest.approx(state["measures"])
    step.set_neutral(None)
    assert step.neutral_H is None and step.estimator.neutral == ExpressionEstimator().neutral


# ------------------------------------------------------------------------------------ facetrack track
def test_track_applies_the_saved_settings(tmp_path):
    from app.recording import load_session
    from app.track import track

    key = saved.folder_key(SAMPLE_PACKAGE)
    s = saved.PackageSettings(gains=dict.fromkeys(ARKIT_NAMES, 0.0), smoothing=False)   # every shape muted
    assert saved.save_package_settings(key, s) is None
    clip = SAMPLE_PACKAGE / "synthetic.mp4"

    plain = track(SAMPLE_PACKAGE, str(clip), tmp_path / "plain", backend="cpu", max_frames=3, settings=False)
    assert plain["settings"] is None and plain["smoothing"] is True
    session = load_session(tmp_path / "plain")
    assert max(max(session.expressions(i).values()) for i in range(3)) > 0.1

    tuned = track(SAMPLE_PACKAGE, str(clip), tmp_path / "tuned", backend="cpu", max_frames=3)
    assert tuned["settings"] == str(saved.package_settings_file(key)) and tuned["smoothing"] is False
    report = json.loads((tmp_path / "tuned" / "report.json").read_text())
    assert report["settings"] == tuned["settings"]
    session = load_session(tmp_path / "tuned")
    assert all(max(session.expressions(i).values()) == 0.0 for i in range(3))
    assert all(math.isfinite(v) for v in session.H.ravel())
