#!/usr/bin/env bash
# Rebuilds export/sample_package: the embedded default performer, made by our own `facetrack build` from the
# synthetic performer (registry data only: skimage's astronaut photo) enrolled as a performer does in the studio
# (30 s of the guided prompts, with their timeline) and adapted to 30 s of a new place, plus a held-out synthetic
# "wild" clip with its ground truth for `facetrack demo` and the studio's `synthetic` source. Tiny profile, CPU,
# ~11 minutes (the benchmark's procedural pair, scripts/table1.sh, is the same recipe).
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-scratch/sample_build}
ft=".venv/bin/facetrack"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
$ft synth --out "$work/enroll" --frames 750 --domain lab --seed 1 --script enroll
$ft synth --out "$work/new_env" --frames 750 --domain wild --seed 2
$ft synth --out "$work/demo_clip" --frames 150 --domain wild --seed 3
rm -rf export/sample_package "$work/build"
$ft build "$work/enroll/video.mp4" "$work/new_env/video.mp4" --out export/sample_package --work "$work/build" \
    --profile tiny
cp "$work/demo_clip/video.mp4" export/sample_package/synthetic.mp4
cp "$work/demo_clip/gt.npz" export/sample_package/synthetic_gt.npz
.venv/bin/python -c "from export.package import add_files; add_files('export/sample_package', ['synthetic.mp4', 'synthetic_gt.npz'])"
du -sh export/sample_package
