"""The canonical head shape: 468 teacher vertices of a frontal, neutral, mirror-symmetric face, in cm.

Frame (the canonical head frame used everywhere): x to the image's right, y down, z away from the camera
(right-handed), origin at the vertex centroid. It is derived from registry data only: the teacher's landmarks
on skimage's astronaut photo (public domain) and on its mirror image, symmetrised. `python -m engine.canonical`
rebuilds `assets/canonical_shape.npz`; everything else only loads it.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

ASSET = Path(__file__).with_name("assets") / "canonical_shape.npz"
FACE_WIDTH_CM = 15.3  # distance between the oval's extreme vertices 234 and 454 on an adult face


@lru_cache(maxsize=1)
def load() -> tuple[np.ndarray, np.ndarray]:
    """Returns (shape [468,3] float32 cm, mirror [468] int: index of each vertex's mirror partner)."""
    with np.load(ASSET) as z:
        return z["shape"].astype(np.float32), z["mirror"].astype(np.int64)


def symmetrise(points: np.ndarray, iters: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Rotate `points` [468,3] so the face is mirror-symmetric about x=0; average each vertex with its partner."""
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial.transform import Rotation

    flip = np.array([-1.0, 1.0, 1.0])
    x = points - points.mean(0)
    for _ in range(iters):
        mirrored = x * flip
        dist = np.linalg.norm(x[:, None] - mirrored[None], axis=-1)
        rows, cols = linear_sum_assignment(dist)
        mirror = np.empty(len(x), np.int64)
        mirror[rows] = cols
        # Rotation taking the relabelled mirror image onto the shape; half of it makes the shape symmetric.
        u, _, vt = np.linalg.svd(mirrored[mirror].T @ x)
        half = Rotation.from_rotvec(Rotation.from_matrix(u @ vt).as_rotvec() / 2).as_matrix()
        x = x @ half.T
    x = (x + (x * flip)[mirror]) / 2
    return x - x.mean(0), mirror


def build(landmarks: np.ndarray, landmarks_of_mirror_image: np.ndarray, image_width: int) -> dict:
    """Canonical shape from the teacher's landmarks [468,3] (pixels) on an image and on its mirror image."""
    from scipy.optimize import linear_sum_assignment

    back = landmarks_of_mirror_image.copy()
    back[:, 0] = image_width - back[:, 0]
    # The mirror-image run is a second estimate of the same physical points, under other labels: match and average.
    rows, cols = linear_sum_assignment(np.linalg.norm(landmarks[:, None, :2] - back[None, :, :2], axis=-1))
    avg = landmarks.copy()
    avg[rows] = (landmarks[rows] + back[cols]) / 2
    shape, mirror = symmetrise(avg)
    shape *= FACE_WIDTH_CM / np.linalg.norm(shape[234] - shape[454])
    return {"shape": shape.astype(np.float32), "mirror": mirror}


def main() -> None:
    import skimage.data

    from engine.teacher import TeacherModel
    from engine.tracking import FaceLoop

    image = skimage.data.astronaut()
    runs = []
    for img in (image, np.ascontiguousarray(image[:, ::-1])):
        found = FaceLoop(TeacherModel())(img)
        crop, landmarks = found.crop, found.landmarks
        runs.append(np.column_stack([crop.to_frame(landmarks[:, :2], 256), landmarks[:, 2] * crop.size / 256]))
    np.savez(ASSET, **build(runs[0], runs[1], image.shape[1]))
    print(f"wrote {ASSET}")


if __name__ == "__main__":
    main()
