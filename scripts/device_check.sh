#!/usr/bin/env bash
# The GPU checks no CPU can show, as one short run on a lent device machine (see the device tool's README):
#   1. `facetrack build --profile full` on the synthetic pair: seconds per stage and the package's eval;
#   2. `facetrack bench` on that package: tracker ms per backend ONNX Runtime finds (CUDA when onnxruntime-gpu is
#      installed, else CPU), with MediaPipe timed beside it when mediapipe imports;
#   3. the native TensorRT path (`python -m export.trt_engine PACKAGE`): engines built, or the one-line reason
#      (TensorRT-RTX is expected to say it cannot run on sm_90).
# Wheels the machine lacks (onnxruntime-gpu in parts, mediapipe + protobuf<5, tensorrt) go in a git-excluded
# folder named in `carry`, default .wheels/: parts named *.part-* are joined before installing.
# Untested on a GPU so far (no device was lent to the sessions that wrote it): expect to adjust.
# Usage on the device: bash scripts/device_check.sh [WHEELS] ; results in $OUT (or out/device).
set -uo pipefail
cd "$(dirname "$0")/.."
wheels=${1:-.wheels}
out=${OUT:-out/device}
mkdir -p "$out" /root/wheels
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=8
py=python3
if [ -d "$wheels" ]; then
  for first in "$wheels"/*.part-aa; do
    [ -e "$first" ] && cat "${first%.part-aa}".part-* > "/root/wheels/$(basename "${first%.part-aa}")"
  done
  cp "$wheels"/*.whl /root/wheels/ 2>/dev/null
  $py -m pip install -q --no-deps --target /root/site /root/wheels/*.whl 2>&1 | tail -2
  export PYTHONPATH=/root/site:${PYTHONPATH:-}
fi
$py -m pip install -q --no-deps -e . 2>&1 | tail -1
ft="$py -m engine.cli"
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  $py -c "import torch, onnxruntime as o; print('torch', torch.__version__, torch.cuda.is_available(), 'ort', o.__version__, o.get_available_providers())"
} 2>&1 | tee "$out/machine.txt"
w=scratch/device
$ft synth --out $w/enroll --frames 240 --domain lab --seed 1
$ft synth --out $w/new_env --frames 150 --domain wild --seed 2
$ft synth --out $w/test --frames 150 --domain wild --seed 3
/usr/bin/time -v $ft build $w/enroll/video.mp4 $w/new_env/video.mp4 --out $w/pkg --work $w/work --profile full \
  2>&1 | tee "$out/build.log" | grep -E "done in|Elapsed|error"
cp $w/pkg/build_report.json "$out/" 2>/dev/null
$ft eval $w/pkg $w/test/video.mp4 --gt $w/test/gt.npz --json "$out/eval_full.json" 2>&1 | tail -4
$ft bench $w/pkg --json "$out/bench.json" --rounds 3 2>&1 | tail -2
$py -m export.trt_engine $w/pkg 2>&1 | tail -5 | tee "$out/trt.txt"
