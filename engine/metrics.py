"""Evaluation metrics, defined so our numbers compare with Yoon et al. 2019 (Table 1) and with peers.

- temporal stability (paper Eq. 10) on canonical-frame vertices G, or on image-space points;
- NME / reprojection error of the 51 inner iBUG-68 points against a reference that is not our teacher
  (engine.reference: dlib's 68-point predictor);
- vertex error and pose error against ground truth (synthetic clips); gaze error and gaze r;
- the One Euro filter (Casiez et al. 2012). Research metrics are reported with smoothing off.

numpy only: the live app uses this module too, and it never imports torch.
"""
from __future__ import annotations

import math

import numpy as np

from engine.pose import rotation_matrix

STABILITY_GUARD = 1e-3  # share of the mean shape's (x, y) box diagonal below which a 3-frame chord is "still"


# ------------------------------------------------------------------------------------------ temporal stability
def _chords(P: np.ndarray) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """Eq. 10's pieces for points P [T, V, D]: (valid [T-2], diag, num [T-2, V], den [T-2, V]).

    Row t−1 is the triplet centred on frame t; valid says none of its three frames is lost (NaN anywhere).
    num = ‖P^{t+1} − P^t‖ + ‖P^t − P^{t−1}‖ (path), den = ‖P^{t+1} − P^{t−1}‖ (chord); rows not valid are junk.
    """
    if P.ndim != 3:
        raise ValueError(f"need [T, V, D] points, got {P.shape}")
    found = np.isfinite(P).all((1, 2))
    valid = found[2:] & found[1:-1] & found[:-2]  # triplets t−1, t, t+1 with no lost frame
    # Diagonal of the mean shape's frontal (x, y) box: depth is left out so the guard does not hang on the
    # teacher's z scale (mediapipe's z is only roughly metric). This convention reproduces the project's
    # reference numbers for raw mediapipe (scratch/metrics/); the full 3D diagonal reads ~0.01–0.03 lower.
    diag = 0.0
    if found.any():
        mean_shape = P[found].mean(0)
        diag = float(np.linalg.norm(mean_shape[:, :2].max(0) - mean_shape[:, :2].min(0)))
    P = np.where(found[:, None, None], P, 0.0)
    step = np.linalg.norm(np.diff(P, axis=0), axis=-1)  # [T-1, V]: ‖P^{t+1} − P^t‖
    return valid, diag, step[1:] + step[:-1], np.linalg.norm(P[2:] - P[:-2], axis=-1)


def _stability(P: np.ndarray, guard: float) -> dict:
    """Eq. 10 for points P [T, V, D] (any D). See `temporal_stability` for the conventions."""
    P = np.asarray(P, np.float64)
    valid, diag, num, den = _chords(P)
    if not valid.any():
        raise ValueError("need three consecutive frames with points")
    num, den = num[valid], den[valid]  # [T', V] for the valid t in 1..T-2

    keep = (den >= guard * diag) & (den > 0)  # a zero chord is never kept, even with guard = 0 or a point cloud
    ratio = np.divide(num, den, out=np.ones_like(num), where=keep)
    kept = keep.sum(1)
    # A frame whose every vertex is still has no evidence of jitter: count it as perfect (1.0), not NaN.
    per_frame = np.where(kept > 0, (ratio * keep).sum(1) / np.maximum(kept, 1), 1.0)

    # Unguarded: (num+ε)/(den+ε) with ε = 1e-12·diag, so 0/0 (a perfectly still vertex) gives 1, not NaN,
    # while a vertex that returns exactly to where it was (den = 0, num > 0) still explodes, as Eq. 10 says.
    eps = 1e-12 * diag + 1e-300
    unguarded = (num + eps) / (den + eps)
    return {
        # Mean of per-frame means (each frame's mean over its kept vertices), so `per_frame` averages to it.
        "stability": float(per_frame.mean()),
        "stability_unguarded": float(unguarded.mean(1).mean()),
        "stability_excluded": float(1.0 - keep.mean()),
        # Mean over all kept (t, i) terms, for comparison; equals `stability` when no term is excluded.
        "stability_terms": float(ratio[keep].mean()) if keep.any() else 1.0,
        "per_frame": per_frame.tolist(),
        "frame_index": (np.flatnonzero(valid) + 1).tolist(),
        "guard": guard * diag,
    }


def temporal_stability(G: np.ndarray, guard: float = STABILITY_GUARD) -> dict:
    """Paper Eq. 10 on canonical-frame vertices G [T, V, 3] (rigid motion removed). 1 is perfect; higher is worse.

    For each frame t = 1..T−2 and vertex i the term is
        (‖G_i^{t+1} − G_i^t‖ + ‖G_i^t − G_i^{t−1}‖) / ‖G_i^{t+1} − G_i^{t−1}‖,
    i.e. path length over chord across three frames: 1 on any straight line (at any speed), > 1 when it wiggles.
    Guard: the term is left out when the chord ‖G_i^{t+1} − G_i^{t−1}‖ < guard × the diagonal of the (x, y)
    bounding box of the sequence's mean shape (depth not included, see `_stability`), because a still vertex's
    0/0 (or noise/noise) says nothing about stability; an exactly zero chord is always left out.
    Lost frames: a frame with any NaN (no face) breaks the sequence; no triplet spans it.

    Returns a dict:
      stability            mean over frames of each frame's mean over its kept vertices (the mean of `per_frame`)
      stability_unguarded  same with nothing left out; ε = 1e-12·diag added to numerator and denominator
      stability_excluded   share of the (t, i) terms the guard left out
      stability_terms      mean over all kept (t, i) terms (differs from `stability` only when exclusions vary)
      per_frame            one float per valid triplet, NaN-free; a frame with every vertex excluded counts as 1.0
      frame_index          the centre frame t of each `per_frame` entry (1..T−2 when no frame is lost)
      guard                the absolute guard distance used (same units as G)
    """
    return _stability(G, guard)


def stability_image(points: np.ndarray, guard: float = STABILITY_GUARD) -> dict:
    """Eq. 10 on image-space points [T, P, 2] (e.g. the projected 468 landmarks in frame pixels).

    Same conventions as `temporal_stability`; the guard is relative to the 2D bounding-box diagonal of the mean
    points (the same quantity as there, here in pixels). Unlike the canonical-frame metric, head motion counts.
    """
    return _stability(points, guard)


# -------------------------------------------------------------------------- frozen or jittery: two trackers
# A tracker that freezes scores perfectly on Eq. 10 (its still vertices are simply guarded out), so stability
# is only read together with how much the face moves (`motion_ratio`) and on a mask both trackers share.
FROZEN_SHARE_MAX = 0.5  # a tracker still on more than this share of the common kept terms gets stability None


def _found(G: np.ndarray) -> np.ndarray:
    """[T] bool: frames with no NaN/inf anywhere (a lost frame is an all-NaN row)."""
    return np.isfinite(G).all(tuple(range(1, G.ndim)))


def motion_mm(G: np.ndarray) -> float | None:
    """How much the face moves: mean over found frames t and vertices i of ‖G_t,i − Ḡ_i‖, in **mm**.

    G [T, V, 3] in cm (canonical head frame, so rigid head motion is already out; what is left is expression
    and tracker noise); Ḡ is the mean shape over found frames. Lost frames (any NaN) are skipped.
    None when no frame is found. A frozen mesh reads 0.
    """
    G = np.asarray(G, np.float64)
    found = _found(G)
    if not found.any():
        return None
    D = G[found] - G[found][:1]  # relative to one frame first: a frozen mesh then reads exactly 0, not ~1e-17
    return float(10.0 * np.linalg.norm(D - D.mean(0), axis=-1).mean())  # cm → mm


def motion_ratio(G_ours: np.ndarray, G_ref: np.ndarray) -> float | None:
    """motion_mm(ours) / motion_mm(ref) on the frames both found (1: moves as much; 0: frozen; > 1: more).

    Both [T, V, 3] with the same T (ValueError otherwise); the frames must be the same clip. None when no frame
    is common or the reference does not move at all (0 / 0 says nothing).
    """
    A, B = np.asarray(G_ours, np.float64), np.asarray(G_ref, np.float64)
    if A.shape[0] != B.shape[0]:
        raise ValueError(f"need the same frames, got T = {A.shape[0]} and {B.shape[0]}")
    common = _found(A) & _found(B)  # the same frames for both, so a lost stretch cannot skew the ratio
    if not common.any():
        return None
    ref = motion_mm(B[common])
    return None if ref == 0.0 else motion_mm(A[common]) / ref


def stability_common(G_a: np.ndarray, G_b: np.ndarray, guard: float = STABILITY_GUARD) -> dict:
    """Eq. 10 for two trackers a, b on the same clip [T, V, 3] (same T), on one shared set of (t, i) terms.

    Terms: triplets t−1, t, t+1 found by both (no NaN in any of the six frames). A term (t, i) is kept for both
    when EITHER tracker's chord ‖G_i^{t+1} − G_i^{t−1}‖ passes its own guard (guard × its own mean shape's
    (x, y) box diagonal, as in `temporal_stability`), so neither can drop terms the other is judged on.
    Rule for a tracker that does not move where the other does: its ratio path/chord is defined only where its
    own chord > 0 (0/0 is no evidence, and with ε it would read a perfect 1); `frozen_share` is the share of the
    kept terms where its own chord is below its own guard, and above FROZEN_SHARE_MAX its stability is None:
    mostly still where the other moves is "frozen", never "stable". Read it with `motion_ratio`.

    Returns {"a": {...}, "b": {...}, "terms", "excluded"}, per tracker:
      stability     mean of path/chord over the kept terms where its own chord > 0 (1 perfect, higher worse);
                    None when frozen_share > FROZEN_SHARE_MAX or it has no such term
      frozen_share  share of the kept terms where its own chord < its own guard (1.0 when nothing is kept)
      terms         how many terms its stability averages
    terms: kept (t, i) count; excluded: share of all common-triplet terms left out (neither tracker moved).
    Two identical trackers read `temporal_stability(G)["stability_terms"]` on the common triplets.
    """
    A, B = np.asarray(G_a, np.float64), np.asarray(G_b, np.float64)
    if A.shape[:1] != B.shape[:1]:
        raise ValueError(f"need the same frames, got {A.shape} and {B.shape}")
    (va, diag_a, num_a, den_a), (vb, diag_b, num_b, den_b) = _chords(A), _chords(B)
    valid = va & vb
    if not valid.any():
        raise ValueError("need three consecutive frames found by both trackers")
    num_a, den_a, num_b, den_b = num_a[valid], den_a[valid], num_b[valid], den_b[valid]
    pass_a = (den_a >= guard * diag_a) & (den_a > 0)  # same test as `_stability`
    pass_b = (den_b >= guard * diag_b) & (den_b > 0)
    keep = pass_a | pass_b

    def side(num, den, passes):
        own = keep & (den > 0)
        frozen = float((keep & ~passes).sum() / keep.sum()) if keep.any() else 1.0
        ratio = num[own] / den[own]
        ok = own.any() and frozen <= FROZEN_SHARE_MAX
        return {"stability": float(ratio.mean()) if ok else None, "frozen_share": frozen, "terms": int(own.sum())}

    return {"a": side(num_a, den_a, pass_a), "b": side(num_b, den_b, pass_b),
            "terms": int(keep.sum()), "excluded": float(1.0 - keep.mean())}


# --------------------------------------------------------------------------------------- landmark accuracy
def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of the bounding boxes of point sets a, b [N, P, 2] → [N]."""
    lo, hi = np.maximum(a.min(1), b.min(1)), np.minimum(a.max(1), b.max(1))
    inter = np.prod(np.clip(hi - lo, 0, None), -1)
    area = lambda p: np.prod(p.max(1) - p.min(1), -1)  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def nme(pred68_inner: np.ndarray, ref68: np.ndarray, same_face_iou: float = 0.5) -> dict:
    """Normalised mean error of the 51 inner iBUG-68 points (17..67) against a 68-point reference.

    pred68_inner [N, 51, 2], ref68 [N, 68, 2], both in pixels of the original frame. Per frame: the mean point
    error over the 51 points ÷ the reference's outer-eye-corner distance (iBUG 36–45), in %.
    Frames are left out where either input has a NaN (no face found), or where the two are not the same face:
    the boxes of the 51 predicted and 51 reference points overlap with IoU < same_face_iou (a false detection by
    the reference; on the shared clips true pairs have IoU ≥ 0.8, a dlib false hit on a chin had 0.16).
    Returns
      nme             mean over frames of the per-frame NME, %
      reprojection_px mean over frames of the per-frame mean point error, pixels
      per_frame_nme, per_frame_px   [N] lists (NaN for frames left out)
      frames          how many frames were used; mismatched: how many were left out as different faces
    """
    pred = np.asarray(pred68_inner, np.float64)
    ref = np.asarray(ref68, np.float64)
    if pred.shape[-2:] != (51, 2) or ref.shape[-2:] != (68, 2) or pred.shape[:-2] != ref.shape[:-2]:
        raise ValueError(f"need [N,51,2] and [N,68,2], got {pred.shape} and {ref.shape}")
    pred, ref = pred.reshape(-1, 51, 2), ref.reshape(-1, 68, 2)
    found = np.isfinite(pred).all((1, 2)) & np.isfinite(ref).all((1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        mismatched = found & ~(_box_iou(pred, ref[:, 17:]) >= same_face_iou)
        ok = found & ~mismatched
        px = np.where(ok, np.linalg.norm(pred - ref[:, 17:], axis=-1).mean(-1), np.nan)  # [N]
        per_nme = 100.0 * px / np.linalg.norm(ref[:, 36] - ref[:, 45], axis=-1)
    return {
        "nme": float(per_nme[ok].mean()) if ok.any() else math.nan,
        "reprojection_px": float(px[ok].mean()) if ok.any() else math.nan,
        "per_frame_nme": per_nme.tolist(),
        "per_frame_px": px.tolist(),
        "frames": int(ok.sum()),
        "mismatched": int(mismatched.sum()),
    }


# ------------------------------------------------------------------------------------ ground-truth errors
def nme_gt(pred51: np.ndarray, true51: np.ndarray) -> float | None:
    """NME of the 51 inner iBUG points [N, 51, 2] against the ground truth's own [N, 51, 2] (frame pixels), in % of
    the truth's outer-eye-corner distance (iBUG 36–45), as `nme` against dlib. Frames with a NaN are left out; None
    when none is left. dlib is no judge of a wide-open mouth (the ICT performer's jaw past 0.5: 7.1 % from the
    truth, its mouth 12.6 %), so on a synthetic clip this is the 2D accuracy to read."""
    pred, true = np.asarray(pred51, np.float64), np.asarray(true51, np.float64)
    if pred.shape[-2:] != (51, 2) or pred.shape != true.shape:
        raise ValueError(f"need two [N,51,2], got {pred.shape} and {true.shape}")
    ok = np.isfinite(pred).all((1, 2)) & np.isfinite(true).all((1, 2))
    if not ok.any():
        return None
    err = np.linalg.norm(pred[ok] - true[ok], axis=-1).mean(-1)
    return float(100.0 * (err / np.linalg.norm(true[ok, 19] - true[ok, 28], axis=-1)).mean())


def vertex_error(G_pred: np.ndarray, G_gt: np.ndarray) -> dict:
    """Mean Euclidean distance per vertex, [..., V, 3] each, in G's units: {'mean', 'per_frame' [...]}."""
    d = np.linalg.norm(np.asarray(G_pred, np.float64) - np.asarray(G_gt, np.float64), axis=-1).mean(-1)
    return {"mean": float(np.mean(d)), "per_frame": np.atleast_1d(d).tolist()}


def similarity_align(G_pred: np.ndarray, G_gt: np.ndarray) -> np.ndarray:
    """G_pred [..., V, 3] moved per frame onto G_gt by its best similarity transform (Umeyama 1991).

    Least squares over rotation (no reflection), translation and one uniform scale, frame by frame. Frames with
    a NaN in either input come back all-NaN. Same units as G_gt.
    """
    P, Q = np.asarray(G_pred, np.float64), np.asarray(G_gt, np.float64)
    if P.shape != Q.shape or P.shape[-1] != 3:
        raise ValueError(f"need two [..., V, 3] of one shape, got {P.shape} and {Q.shape}")
    shape, P, Q = P.shape, P.reshape(-1, *P.shape[-2:]), Q.reshape(-1, *Q.shape[-2:])
    ok = _found(P) & _found(Q)
    out = np.full_like(P, np.nan)
    if ok.any():
        p, q = P[ok], Q[ok]
        mp, mq = p.mean(1, keepdims=True), q.mean(1, keepdims=True)
        X, Y = p - mp, q - mq
        U, D, Vt = np.linalg.svd(Y.swapaxes(1, 2) @ X)  # covariance Σ_q,p per frame (the 1/V cancels in s)
        S = np.ones_like(D)
        S[:, 2] = np.sign(np.linalg.det(U @ Vt))  # −1 would be a reflection: flip the weakest axis instead
        R = (U * S[:, None]) @ Vt
        var = (X**2).sum((1, 2))
        s = np.divide((D * S).sum(1), var, out=np.zeros_like(var), where=var > 0)  # all points in one: scale 0
        out[ok] = s[:, None, None] * X @ R.swapaxes(1, 2) + mq
    return out.reshape(shape)


def vertex_error_nonrigid(G_pred: np.ndarray, G_gt: np.ndarray) -> dict:
    """`vertex_error` after `similarity_align`: shape error only, with pose and size taken out per frame.

    Mean per-vertex Euclidean distance in G's units (cm): {'mean', 'per_frame' [...]}; per_frame is NaN for a
    frame with a NaN in either input, and 'mean' averages the other frames (NaN when none is left).
    """
    Q = np.asarray(G_gt, np.float64)
    d = np.linalg.norm(similarity_align(G_pred, Q) - Q, axis=-1).mean(-1)
    d = np.atleast_1d(d)
    ok = np.isfinite(d)
    return {"mean": float(d[ok].mean()) if ok.any() else math.nan, "per_frame": d.tolist()}


def pose_error_deg(H_pred: np.ndarray, H_gt: np.ndarray) -> dict:
    """Angle (degrees) of the relative rotation R_pred·R_gtᵀ, for H = (f, rx, ry, rz, tx, ty) [..., 6].

    Returns {'mean', 'per_frame' [...]}. Uses atan2(‖axis‖, trace−1), accurate at small and large angles.
    """
    Rp = rotation_matrix(np.asarray(H_pred, np.float64)[..., 1:4])
    Rg = rotation_matrix(np.asarray(H_gt, np.float64)[..., 1:4])
    R = Rp @ Rg.swapaxes(-1, -2)
    axis = np.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1)
    trace = R[..., 0, 0] + R[..., 1, 1] + R[..., 2, 2]
    deg = np.degrees(np.arctan2(np.linalg.norm(axis, axis=-1), trace - 1.0))  # |axis| = 2 sin θ, tr−1 = 2 cos θ
    return {"mean": float(np.mean(deg)), "per_frame": np.atleast_1d(deg).tolist()}


# --------------------------------------------------------------------------------------------- expressions
# The synthetic performer's ground-truth channels (engine.expressions.NAMES; "left" is the subject's left, as in
# ARKit) → the ARKit names (export.expressions.ARKIT_NAMES) whose mean should follow each channel.
GT_TO_ARKIT = {
    "jaw_open": ("jawOpen",),
    "smile_left": ("mouthSmileLeft",),
    "smile_right": ("mouthSmileRight",),
    "blink_left": ("eyeBlinkLeft",),
    "blink_right": ("eyeBlinkRight",),
    "brow_raise": ("browInnerUp", "browOuterUpLeft", "browOuterUpRight"),
    "brow_frown": ("browDownLeft", "browDownRight"),
    "pucker": ("mouthPucker",),
}


def pearson_r(a, b) -> float | None:
    """Pearson correlation of two 1-D series of one length, over the indices where both are finite.

    None when fewer than 3 such points or either series is constant there: a flat prediction has no
    correlation (r is 0/0), and reporting 0 would hide that it never moved.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"need two 1-D series of one length, got {a.shape} and {b.shape}")
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:  # ptp, not std: a float mean can leave ~1e-17 residue
        return None
    a, b = a - a.mean(), b - b.mean()
    return float(np.clip((a @ b) / math.sqrt((a @ a) * (b @ b)), -1.0, 1.0))


def expression_r(pred: dict, truth: dict) -> dict:
    """{name: pearson_r(pred[name], truth[name])} for every name in `truth`; None where pred lacks it."""
    return {k: pearson_r(pred[k], v) if k in pred else None for k, v in truth.items()}


def gt_channels(arkit: dict) -> dict:
    """ARKit series {name: [T]} → ground-truth channels {gt_name: [T]}: the mean of GT_TO_ARKIT's names.

    ARKit names missing from `arkit` are skipped; a channel with none of its names present is left out.
    """
    out = {}
    for gt, names in GT_TO_ARKIT.items():
        series = [np.asarray(arkit[n], np.float64) for n in names if n in arkit]
        if series:
            out[gt] = np.mean(series, axis=0)
    return out


# ---------------------------------------------------------------------------------------------------- gaze
# Gaze is per eye (yaw, pitch) in radians in app.senders' convention, [T, 2, 2] as (left, right) × (yaw, pitch),
# the layout of the synthetic performer's `gaze` (engine.synth).
GAZE_SIDES = ("left", "right")


def gaze_direction(gaze) -> np.ndarray:
    """Unit gaze vectors [..., 3] for (yaw, pitch) [..., 2] as engine.eyes.gaze_angles defines the angles: the iris
    centre sits sin(yaw), sin(pitch) eyeball radii from straight ahead (x towards the subject's right, y down,
    z straight ahead)."""
    s = np.sin(np.asarray(gaze, np.float64))
    z = np.sqrt(np.clip(1.0 - (s**2).sum(-1), 0.0, None))
    return np.concatenate([s, z[..., None]], -1)


def _gaze_frames(pred: np.ndarray, truth: np.ndarray, mask) -> np.ndarray:
    """[T, 2] bool: frames and eyes where both gazes are finite and `mask` (default all) allows."""
    pred, truth = np.asarray(pred, np.float64), np.asarray(truth, np.float64)
    if pred.shape != truth.shape or pred.shape[1:] != (2, 2):
        raise ValueError(f"need two [T, 2, 2] gaze series, got {pred.shape} and {truth.shape}")
    ok = np.isfinite(pred).all(-1) & np.isfinite(truth).all(-1)
    return ok if mask is None else ok & np.asarray(mask, bool)


def gaze_error_deg(pred, truth, mask=None) -> dict:
    """Angle (degrees) between tracked and true gaze directions (`gaze_direction`), per eye over the frames where
    both are finite and mask [T, 2] is true: {side: {"mean", "median", "frames"}} (mean/median None on no frame)."""
    ok = _gaze_frames(pred, truth, mask)
    a, b = gaze_direction(pred), gaze_direction(truth)
    angle = np.degrees(np.arctan2(np.linalg.norm(np.cross(a, b), axis=-1), (a * b).sum(-1)))  # exact at 0°
    out = {}
    for k, side in enumerate(GAZE_SIDES):
        e = angle[ok[:, k], k]
        out[side] = {"mean": float(e.mean()) if e.size else None, "median": float(np.median(e)) if e.size else None,
                     "frames": int(e.size)}
    return out


def gaze_r(pred, truth, mask=None) -> dict:
    """Pearson r of tracked against true yaw and pitch per eye, over the frames `gaze_error_deg` uses:
    {side: {"yaw", "pitch"}} (None where `pearson_r` has none)."""
    ok = _gaze_frames(pred, truth, mask)
    pred, truth = np.asarray(pred, np.float64), np.asarray(truth, np.float64)
    out = {}
    for k, side in enumerate(GAZE_SIDES):
        p, t = pred[ok[:, k], k], truth[ok[:, k], k]
        out[side] = {axis: pearson_r(p[:, j], t[:, j]) for j, axis in enumerate(("yaw", "pitch"))}
    return out


# ----------------------------------------------------------------------------------------------- smoothing
class OneEuro:
    """One Euro filter (Casiez et al. 2012) on arrays of any shape, one call per frame, elementwise.

    A low-pass filter whose cutoff rises with speed: fc = min_cutoff + beta·|ẋ̂|, so still signals are smoothed
    hard (less jitter) and fast motion passes with little lag. min_cutoff and d_cutoff are in Hz.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0, rate: float = 30.0):
        self.min_cutoff, self.beta, self.d_cutoff, self.rate = min_cutoff, beta, d_cutoff, rate
        self.reset()

    def reset(self) -> None:
        self._x = self._dx = self._t = None

    @staticmethod
    def _alpha(cutoff, dt):
        tau = 1.0 / (2.0 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, x, t: float | None = None) -> np.ndarray:
        """Filter one frame `x`; `t` is its time in seconds (default: frames at `rate` Hz)."""
        x = np.asarray(x, np.float64)
        if self._x is None:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), (0.0 if t is None else t)
            return self._x.copy()
        t = self._t + 1.0 / self.rate if t is None else t
        dt = max(t - self._t, 1e-9)
        self._t = t
        dx = (x - self._x) / dt  # speed from the previous *filtered* value, as in the paper
        self._dx = self._dx + self._alpha(self.d_cutoff, dt) * (dx - self._dx)
        cutoff = self.min_cutoff + self.beta * np.abs(self._dx)
        self._x = self._x + self._alpha(cutoff, dt) * (x - self._x)
        return self._x.copy()

    def run(self, sequence) -> np.ndarray:
        """Filter a whole sequence [T, ...] from a fresh state (for 'metrics with smoothing on')."""
        self.reset()
        return np.stack([self(x) for x in sequence])


one_euro = OneEuro  # the name used in the design notes
