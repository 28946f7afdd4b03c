#!/usr/bin/env bash
# A check on clips nobody tuned on (docs/BENCHMARKS.md, issue #11 third step): each CLIP is split 50 / 20 / 30 % into
# enrollment, new environment and scored frames; one tiny build; then `eval` of the package with its expression
# basis (pkgA) and of the same package without it (pkgB: basis.npz dropped from the manifest, so the loop refits H
# only), each beside MediaPipe FaceMesh.   Usage: scripts/heldout_check.sh OUT CLIP...   (~10 min a clip, 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/heldout_check.sh OUT CLIP...}; shift
ft="${PYTHON:-.venv/bin/python} -m engine.cli"
export OMP_NUM_THREADS=1
for clip in "$@"; do
  name=$(basename "$clip" .mp4); d="$out/$name"; mkdir -p "$d"
  ${PYTHON:-.venv/bin/python} - "$clip" "$d" <<'PY'
import sys
from pathlib import Path
from engine import video
src, dst = sys.argv[1], Path(sys.argv[2])
info = video.probe(src); frames = list(video.frames(src)); n = len(frames)
a, b = int(0.5 * n), int(0.7 * n)
for name, part in (("enroll.mp4", frames[:a]), ("new.mp4", frames[a:b]), ("test.mp4", frames[b:])):
    with video.VideoWriter(dst / name, info.fps or 25.0) as w:
        for f in part: w.write(f)
PY
  $ft build "$d/enroll.mp4" "$d/new.mp4" --out "$d/pkgA" --work "$d/work" --profile tiny 2> "$d/build.log"
  cp -r "$d/pkgA" "$d/pkgB"
  ${PYTHON:-.venv/bin/python} -c "
import json, sys; p = sys.argv[1] + '/manifest.json'; m = json.load(open(p)); m['files'].pop('basis.npz'); json.dump(m, open(p, 'w'))" "$d/pkgB"
  for m in pkgA pkgB; do
    $ft eval "$d/$m" "$d/test.mp4" --baseline mediapipe --threads 1 --json "$d/eval_$m.json" 2>/dev/null | grep -v "^→" > "$d/eval_$m.txt"
  done
  echo "$name done"
done
