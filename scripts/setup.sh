#!/usr/bin/env bash
# Installs everything on a fresh machine (Debian + Python 3.11): system GL libraries, then .venv with the
# pinned stack and this project in editable mode. Safe to run again; it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

# GL (EGL for offscreen rendering) and what Qt's xcb platform needs under Xvfb (tests, screenshots).
need=()
for pkg in libegl1 libegl-mesa0 libgl1-mesa-dri libgl1 xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-image0 \
           libxcb-render-util0 libxcb-xinerama0 libxcb-xkb1 libxkbcommon-x11-0 libxcb-cursor0 libxcb-shape0 \
           libxcb-randr0 libxcb-xfixes0 libxcb-sync1 libxcb-shm0 libxcb-glx0 libfontconfig1 libdbus-1-3 libxkbcommon0; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test]"
# The landmark teacher's .tflite files come from this wheel; --no-deps keeps our opencv and protobuf pins.
.venv/bin/python -m pip install -q --no-deps "mediapipe==0.10.14"
echo "setup: ok ($(.venv/bin/python -c 'import torch, cv2; print("torch", torch.__version__, "opencv", cv2.__version__)'))"
