"""Add the optional iris graph to an existing performer package, retraining nothing (issue #12).

    .venv/bin/python scripts/add_iris.py [PACKAGE] [--video CLIP] [--frames N]

Writes PACKAGE/iris.onnx (engine.iris.IrisGraph: MediaPipe's iris landmarker from the mediapipe wheel, through
export.onnx_export.export_iris), checks it against torch on both eye crops of N frames of CLIP tracked by the
package itself (default: the package's synthetic.mp4), then records parity["iris"], graph_rewrites["iris.onnx"] and
the "iris" note in the manifest and lists iris.onnx with its hash (export.package.add_files). The other graphs and
their hashes are untouched. PACKAGE defaults to the embedded sample (export/sample_package).
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine import video  # noqa: E402
from export.onnx_export import IRIS_INFO, export_iris, iris_batch  # noqa: E402
from export.package import IRIS, MANIFEST, SAMPLE_PACKAGE, add_files, open_package  # noqa: E402
from export.runtime import Tracker  # noqa: E402


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("package", nargs="?", type=Path, default=SAMPLE_PACKAGE)
    p.add_argument("--video", type=Path, help="frames for the parity check (default: PACKAGE/synthetic.mp4)")
    p.add_argument("--frames", type=int, default=8)
    a = p.parse_args(argv)
    clip = a.video or a.package / "synthetic.mp4"
    tracker = Tracker(a.package, backend="cpu")
    batches = []
    for frame in itertools.islice(video.frames(clip), 4 * a.frames):
        r = tracker(frame)
        if r is not None:
            batches.append(iris_batch(frame, r.points))
        if len(batches) == a.frames:
            break
    if not batches:
        raise SystemExit(f"{clip}: the package found no face in its first {4 * a.frames} frames")
    rewrites, parity = export_iris(a.package, batches)
    manifest = json.loads((a.package / MANIFEST).read_text())
    manifest.setdefault("parity", {})["iris"] = parity
    manifest.setdefault("graph_rewrites", {})[IRIS] = rewrites
    manifest["iris"] = IRIS_INFO
    (a.package / MANIFEST).write_text(json.dumps(manifest, indent=2))
    add_files(a.package, [IRIS])
    open_package(a.package)   # what we wrote must verify
    print(json.dumps({"package": str(a.package), "parity_iris_px": parity, "frames": len(batches)}))
    return manifest


if __name__ == "__main__":
    main()
