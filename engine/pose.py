"""Head pose H = (f, rx, ry, rz, tx, ty) and weak-perspective projection (paper supp. A.1).

    x = f · Π · R(rx, ry, rz) · X + t        (crop pixels; Π drops z)

R = Rz(rz) · Ry(ry) · Rx(rx): pitch about x, then yaw about y, then roll about z, in radians. The canonical
head frame is x right, y down, z away from the camera (see engine.canonical), so Π needs no sign flips.
Every function takes numpy arrays or torch tensors (differentiable) with any leading batch dimensions; the
two share the names used here, and torch is never imported, so the live app can use the numpy path.
"""
from __future__ import annotations

import math
import sys

import numpy as np


def _xp(a):
    """The array namespace of `a`: torch for tensors, numpy otherwise."""
    return sys.modules["torch"] if type(a).__module__.startswith("torch") else np


def _T(a):
    return a.swapaxes(-1, -2)


def rotation_matrix(angles):
    """[..., 3] Euler angles (rx, ry, rz) → [..., 3, 3] rotation matrices, R = Rz · Ry · Rx."""
    xp = _xp(angles)
    one = xp is np and np.ndim(angles) == 1     # one pose (the live path, every frame): from Python floats, ~8× faster
    if one:
        angles = np.asarray(angles)
        (cx, sx), (cy, sy), (cz, sz) = ((math.cos(a), math.sin(a)) for a in angles.tolist())
    else:
        cx, cy, cz = (xp.cos(angles[..., i]) for i in range(3))
        sx, sy, sz = (xp.sin(angles[..., i]) for i in range(3))
    rows = [[cz * cy, cz * sy * sx - sz * cx, cz * sy * cx + sz * sx],
            [sz * cy, sz * sy * sx + cz * cx, sz * sy * cx - cz * sx],
            [-sy, cy * sx, cy * cx]]
    if one:
        return np.array(rows, angles.dtype if angles.dtype.kind == "f" else np.float64)
    return xp.stack([xp.stack(row, axis=-1) for row in rows], axis=-2)


def euler_angles(R):
    """[..., 3, 3] rotation matrices → [..., 3] (rx, ry, rz); inverse of `rotation_matrix` for |ry| < 90°."""
    xp = _xp(R)
    rx = xp.arctan2(R[..., 2, 1], R[..., 2, 2])
    ry = -xp.arcsin(xp.clip(R[..., 2, 0], -1.0, 1.0))
    rz = xp.arctan2(R[..., 1, 0], R[..., 0, 0])
    return xp.stack([rx, ry, rz], axis=-1)


def transform(G, H):
    """Canonical vertices G [..., V, 3] → crop space [..., V, 3]: f·R·G + (tx, ty, 0); z keeps f's scale."""
    xp = _xp(G)
    if xp is np and np.ndim(H) == 1:            # one pose: no batched stacking
        return (H[0] * G) @ rotation_matrix(H[1:4]).T + np.array([H[4], H[5], 0.0], np.result_type(G, H))
    X = H[..., 0, None, None] * (G @ _T(rotation_matrix(H[..., 1:4])))
    t = xp.stack([H[..., 4], H[..., 5], H[..., 5] * 0], axis=-1)
    return X + t[..., None, :]


def project(G, H):
    """Canonical vertices G [..., V, 3] → image points [..., V, 2] in crop pixels (x = f·Π·R·X + t)."""
    return transform(G, H)[..., :2]


def view_vector(H):
    """[..., 3] unit direction from the head towards the camera, in the canonical head frame (the DAM's v)."""
    # The camera looks along +z, so it sits at −z in crop space; Rᵀ brings that direction into the head frame.
    return -rotation_matrix(H[..., 1:4])[..., 2, :]


def procrustes(X, Y, weights=None):
    """Similarity (s, R, t) minimising Σ w‖s·R·X + t − Y‖² (Umeyama). X, Y: [..., V, 3]; weights [V] or None.

    Returns s [...], R [..., 3, 3], t [..., 3]. Differentiable in torch.
    """
    xp = _xp(Y)
    w = xp.ones_like(Y[..., 0]) if weights is None else weights + Y[..., 0] * 0
    w = (w / w.sum(-1, keepdims=True))[..., None]
    mx, my = (w * X).sum(-2), (w * Y).sum(-2)
    x0, y0 = X - mx[..., None, :], Y - my[..., None, :]
    U, S, Vt = xp.linalg.svd(_T(w * y0) @ x0)
    d = xp.sign(xp.linalg.det(U @ Vt))
    D = xp.stack([d * 0 + 1, d * 0 + 1, d], axis=-1)
    R = (U * D[..., None, :]) @ Vt
    s = (S * D).sum(-1) / (w * x0 * x0).sum((-1, -2))
    t = my - s[..., None] * (mx[..., None, :] @ _T(R))[..., 0, :]
    return s, R, t


def pose_from_landmarks(X, Y, weights=None):
    """Fit H and the canonical-frame observation G to 3D landmarks Y [..., V, 3] (crop pixels, teacher z).

    X [V, 3] is the canonical shape the similarity is fitted to. Returns (H [..., 6], G [..., V, 3]) where
    G = Rᵀ(Y − t)/s is the observed shape with rigid motion removed (the paper's G).
    """
    xp = _xp(Y)
    s, R, t = procrustes(X, Y, weights)
    G = ((Y - t[..., None, :]) @ R) / s[..., None, None]
    H = xp.concatenate([s[..., None], euler_angles(R), t[..., :2]], -1)
    return H, G


# Damped Gauss-Newton (Levenberg-Marquardt) on the 2D reprojection error: the residual is smooth in H's six
# parameters and its Jacobian has a closed form (∂/∂f = Π·R·X, ∂/∂t = I, ∂/∂angle = f·Π·(∂R/∂angle)·X), so a
# handful of 6×6 solves reach the minimum scipy's finite-difference LM finds (tests/test_pose.py), in ~1/4 the time.
REFINE_STEPS = 30
REFINE_TOL = 1e-8     # stop when the cost or the parameters change relatively less (scipy's default ftol, xtol)


def _axes(angles: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The three elementary rotations (Rx, Ry, Rz) of R = Rz·Ry·Rx, and their derivatives (from Python floats: a
    handful of 3×3 arrays a frame, where numpy's per-call overhead is the cost)."""
    (cx, sx), (cy, sy), (cz, sz) = ((math.cos(a), math.sin(a)) for a in angles.tolist())
    R = [np.array([[1.0, 0.0, 0.0], [0.0, cx, -sx], [0.0, sx, cx]]),
         np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]]),
         np.array([[cz, -sz, 0.0], [sz, cz, 0.0], [0.0, 0.0, 1.0]])]
    D = [np.array([[0.0, 0.0, 0.0], [0.0, -sx, -cx], [0.0, cx, -sx]]),
         np.array([[-sy, 0.0, cy], [0.0, 0.0, 0.0], [-cy, 0.0, -sy]]),
         np.array([[-sz, -cz, 0.0], [cz, -sz, 0.0], [0.0, 0.0, 0.0]])]
    return R, D


def _residual_and_jacobian(X: np.ndarray, y: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """r [2V] and J [2V,6] of f·Π·R·X + t − y, the x rows first, then the y rows, and Π·R [2,3]."""
    (Rx, Ry, Rz), (dRx, dRy, dRz) = _axes(h[1:4])
    rows = np.concatenate([M[:2] for M in (Rz @ Ry @ Rx, Rz @ Ry @ dRx, Rz @ dRy @ Rx, dRz @ Ry @ Rx)])
    P = X @ rows.T                                  # [V,8]: (x, y) of Π·R·X, then of Π·(∂R/∂angle)·X per angle
    V = len(X)
    J = np.zeros((2 * V, 6))
    J[:V, 0], J[V:, 0] = P[:, 0], P[:, 1]
    J[:V, 1:4], J[V:, 1:4] = h[0] * P[:, 2::2], h[0] * P[:, 3::2]
    J[:V, 4] = J[V:, 5] = 1.0
    r = np.concatenate([h[0] * P[:, 0] + h[4] - y[:, 0], h[0] * P[:, 1] + h[5] - y[:, 1]])
    return r, J, rows[:2]


def gauss_newton(X, y, h, steps: int) -> np.ndarray:
    """Numpy: `steps` undamped Gauss-Newton steps on ‖f·Π·R·X + t − y‖² from an h already near the minimum."""
    X, y, h = np.asarray(X, np.float64), np.asarray(y, np.float64), np.asarray(h, np.float64)
    for _ in range(steps):
        r, J, _ = _residual_and_jacobian(X, y, h)
        h = h + np.linalg.solve(J.T @ J, -(J.T @ r))
    return h


def gauss_newton_expression(G, y, h, basis_t, precision, steps: int, mean=None) -> tuple[np.ndarray, np.ndarray]:
    """Numpy: `steps` undamped Gauss-Newton steps, from (h, c = 0), on the MAP cost

        ‖f·Π·R·(G + Σ_k c_k·B_k) + t − y‖² + (c − μ)ᵀ·P·(c − μ)

    over the pose h [6] and the coefficients c [K] of an expression basis B [K,V,3] added to the shape G [V,3]
    (P [K,K], `precision`, and μ [K], `mean` (default 0): a Gaussian prior on c against px² of landmark noise).
    Returns (h, c).
    It runs every frame of the live path, so the basis comes axis first, basis_t [3,V,K] (one matmul gives the
    expression's Jacobian), and the normal equations are formed directly."""
    G, y, h = np.asarray(G, np.float64), np.asarray(y, np.float64), np.asarray(h, np.float64)
    _, V, K = basis_t.shape
    by_axis = basis_t.reshape(3, V * K)
    c = np.zeros(K)
    for step in range(steps):
        r, Jh, PR = _residual_and_jacobian(G + (basis_t @ c).T if step else G, y, h)     # c = 0 at first
        Jc = (h[0] * (PR @ by_axis)).reshape(2 * V, K)          # x rows, then y rows, as r
        J = np.concatenate([Jh, Jc], 1)
        A, g = J.T @ J, J.T @ r
        A[6:, 6:] += precision
        g[6:] += precision @ (c if mean is None else c - mean)
        step = np.linalg.solve(A, -g)
        h, c = h + step[:6], c + step[6:]
    return h, c


def refine(X, y, h0) -> np.ndarray:
    """Numpy: the H [6] minimising the 2D reprojection error ‖f·Π·R·X + t − y‖² of shape X [V,3] onto points
    y [V,2], starting from h0 (the minimum near it)."""
    X, y = np.asarray(X, np.float64), np.asarray(y, np.float64)
    h, lam = np.asarray(h0, np.float64).copy(), 1e-6
    r, J, _ = _residual_and_jacobian(X, y, h)
    cost = r @ r
    for _ in range(REFINE_STEPS):
        A, g = J.T @ J, J.T @ r
        step = np.linalg.solve(A + lam * np.diag(np.diag(A)), -g)
        if np.linalg.norm(step) <= REFINE_TOL * (REFINE_TOL + np.linalg.norm(h)):
            return h + step                                    # converged: the step need not be evaluated
        r_new, J_new, _ = _residual_and_jacobian(X, y, h + step)
        new = r_new @ r_new
        if new <= cost:                                        # accept: trust the quadratic model more
            done = cost - new <= REFINE_TOL * cost
            h, r, J, cost, lam = h + step, r_new, J_new, new, max(lam / 10, 1e-12)
            if done:
                break
        else:                                                  # reject: a shorter, more gradient-like step
            lam *= 10
            if lam > 1e8:
                break
    return h


def fit(X, Y):
    """Numpy: H and G for 3D landmarks Y [V,3] (crop pixels, teacher z) of the canonical shape X [V,3].

    The closed-form 3D Procrustes trusts the teacher's depth, which is compressed on turned heads (it reads
    ~0.76 of the true yaw on the synthetic bench), so H is refined to minimise the 2D reprojection error
    ‖f·Π·R·X + t − y‖² (the projection H is defined by). G then reprojects exactly onto the 2D landmarks, with
    its depth taken from the 3D fit under the refined pose.
    """
    H0, G0 = pose_from_landmarks(X, Y)
    H = refine(X, Y[:, :2], H0)
    observed = np.concatenate([Y[:, :2], transform(G0, H)[:, 2:]], -1)
    t = np.array([H[4], H[5], 0.0])
    return H, ((observed - t) @ rotation_matrix(H[1:4])) / H[0]


def degrees(H):
    """Pose angles of H in degrees (pitch, yaw, roll) for reports."""
    return H[..., 1:4] * (180.0 / math.pi)
