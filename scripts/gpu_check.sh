#!/usr/bin/env bash
# One short, prepared check on a GPU machine: CUDA-marked tests, the render benchmark and a
# 640x512 training run on CUDA.
#
# Usage:   scripts/gpu_check.sh OUTDIR        (run from anywhere; ~9 minutes at most)
#
# Target: a machine with an NVIDIA GPU (e.g. one H200), a CUDA build of PyTorch and a CUDA
# toolkit (nvcc) preinstalled, and NO network. gsplat 1.5.3 ships CUDA sources only and compiles
# them (JIT, about 29 files) on the first rasterization call; this script pays that once, with
# TORCH_CUDA_ARCH_LIST=9.0 (Hopper) and MAX_JOBS=16, into a cache under the repo (.cache/).
#
# Wheels. Everything endogs needs besides torch must come from a wheels/ directory carried next
# to this repository (wheels/ at the repo root, or WHEELS_DIR=...). Build it beforehand, on a
# machine WITH network, for the GPU machine's Python version (check it there with
# `python -c 'import sys; print(sys.version_info[:2])'`; 3.11 below) and platform:
#
#   python -c "import ast,sys; t=ast.parse(open('setup.py').read()); \
#     print('\n'.join(e.value for n in ast.walk(t) if isinstance(n, ast.keyword) and n.arg=='install_requires' \
#     for e in n.value.elts if not e.value.startswith('torch')))" > /tmp/req-notorch.txt   # never download torch
#   pip download -d wheels --only-binary=:all: --python-version 3.11 \
#       --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_35_x86_64 \
#       -r /tmp/req-notorch.txt pytest
#   pip wheel -w wheels --no-deps .                                   # endogs itself (optional)
#
# (gsplat, packaging, jaxtyping, rich, ninja are pure Python or manylinux wheels; torch is left to
# the machine's own CUDA build: `--no-index` stops pip from ever replacing it.)
#
# Outputs in OUTDIR: gpu_check.log (everything), env.txt, nvidia-smi.txt, pip_install.log,
# gsplat_compile.log, junit_cuda.xml + pytest_cuda.log, bench_cuda_gsplat.jsonl,
# bench_cuda_torch.jsonl (the PyTorch rasterizer on the GPU), status.txt (one line per step).
# train_640.log + run_640/ (a 640x512 training run and its evaluation).
# Knobs: PYTHON (interpreter), WHEELS_DIR, GPU_CHECK_BUDGET_S (default 540), GPU_CHECK_SKIP_INSTALL=1,
# GPU_TRAIN_ITERS (default 3000).
set -uo pipefail

OUT=${1:?usage: scripts/gpu_check.sh OUTDIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
export OUT
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
exec > >(tee -a "$OUT/gpu_check.log") 2>&1

PY=${PYTHON:-python}
WHEELS=${WHEELS_DIR:-$REPO/wheels}
BUDGET_S=${GPU_CHECK_BUDGET_S:-540}   # whole script, including gsplat's first-call compile
START=$SECONDS
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
export MAX_JOBS=${MAX_JOBS:-16}
export TORCH_EXTENSIONS_DIR=${TORCH_EXTENSIONS_DIR:-$REPO/.cache/torch_extensions}
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDA_HOME=/usr/local/cuda   # torch may guess /usr/local from a /usr/local/bin/nvcc wrapper
fi
mkdir -p "$TORCH_EXTENSIONS_DIR"
: > "$OUT/status.txt"

left() { echo $((BUDGET_S - (SECONDS - START))); }
step() {  # step NAME MAX_SECONDS CMD...: run with a timeout capped by the remaining budget
  local name=$1 max=$2; shift 2
  local t; t=$(left); [ "$t" -gt "$max" ] && t=$max
  if [ "$t" -le 5 ]; then
    echo "SKIP $name (time budget spent)" | tee -a "$OUT/status.txt"; return 0
  fi
  echo "=== $name (timeout ${t}s, $(left)s left) ==="
  local t0=$SECONDS
  timeout --kill-after=10 "$t" "$@"
  local rc=$?
  echo "$name rc=$rc time=$((SECONDS - t0))s" | tee -a "$OUT/status.txt"
  return 0
}

# 1. Environment.
{
  date -u
  uname -a
  echo "python: $(command -v "$PY")"
  echo "CUDA_HOME=${CUDA_HOME:-} TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST MAX_JOBS=$MAX_JOBS"
  command -v nvcc && nvcc --version | tail -2
  nproc
  "$PY" -c 'import sys, torch; print(sys.version); print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(), "devices", torch.cuda.device_count())'
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true

# 2. Install missing dependencies from the carried wheels (never from the network, never torch).
install_deps() {
  if [ ! -d "$WHEELS" ]; then
    echo "no wheels directory at $WHEELS; using what is installed"
  else
    local req; req=$(mktemp)
    grep -v -E '^\s*(#|$|torch\b)' requirements.txt > "$req"
    echo pytest >> "$req"
    # All at once first; if one wheel is missing, fall back to one package at a time.
    if ! "$PY" -m pip install --no-index --find-links "$WHEELS" -r "$req"; then
      while read -r pkg; do
        "$PY" -m pip install --no-index --find-links "$WHEELS" "$pkg" || echo "WARN: could not install $pkg"
      done < "$req"
    fi
  fi
  # endogs itself, without touching dependencies (PYTHONPATH covers it if this fails).
  "$PY" -m pip install --no-index --no-deps --no-build-isolation -e "$REPO" || echo "WARN: endogs not installed; using PYTHONPATH"
  "$PY" -c 'import gsplat, endogs.render; print("gsplat", gsplat.__version__, "endogs ok")'
}
export PY WHEELS REPO
export -f install_deps
if [ "${GPU_CHECK_SKIP_INSTALL:-0}" = 1 ]; then
  echo "pip_install skipped (GPU_CHECK_SKIP_INSTALL=1)" | tee "$OUT/pip_install.log" >> "$OUT/status.txt"
else
  step pip_install 90 bash -c install_deps > "$OUT/pip_install.log" 2>&1
fi
tail -3 "$OUT/pip_install.log"

# 3. gsplat's first-call JIT compile, timed, on a tiny scene.
step gsplat_compile 210 "$PY" - > "$OUT/gsplat_compile.log" 2>&1 <<'EOF'
import time
import torch
from endogs.render import render
from endogs.render.reference import pinhole_camera, synthetic_scene

t0 = time.perf_counter()
out = render(synthetic_scene(100, device="cuda"), pinhole_camera(64, 48), backend="gsplat")
torch.cuda.synchronize()
print(f"gsplat first call (compile + run): {time.perf_counter() - t0:.1f} s; backend={out.backend}")
EOF
cat "$OUT/gsplat_compile.log" | tail -5

# 4. CUDA-marked tests (all test modules; collection errors of unrelated modules do not stop it).
step pytest_cuda 90 "$PY" -m pytest -m cuda -q -rs --continue-on-collection-errors \
  --junitxml="$OUT/junit_cuda.xml" tests > "$OUT/pytest_cuda.log" 2>&1
tail -15 "$OUT/pytest_cuda.log"

# 5. Render benchmark on CUDA: gsplat, then the PyTorch rasterizer on the same GPU.
step bench_gsplat 45 "$PY" scripts/bench_render.py --device cuda --backend gsplat --in-process \
  --repeats 10 --warmup 2 --out "$OUT/bench_cuda_gsplat.jsonl"
step bench_torch 45 "$PY" scripts/bench_render.py --device cuda --backend cpu --in-process \
  --repeats 5 --warmup 1 --out "$OUT/bench_cuda_torch.jsonl"

# 6. Full-size training: a 640x512, 40-frame synthetic scene with the CUDA defaults (HexPlane,
# gsplat rasterizer), GPU_TRAIN_ITERS iterations (default 3000 of the CUDA default 14000, to fit
# the loan), then the evaluation of the held-out frames (PSNR/SSIM, FPS, time, memory).
step train_640 240 bash -c '
  set -e
  "$PY" -m endogs synthetic "$OUT/scene_640" --width 640 --height 512 --n-frames 40 --overwrite
  "$PY" -m endogs train "$OUT/scene_640" --output "$OUT/run_640" --iterations "${GPU_TRAIN_ITERS:-3000}" --quiet
  "$PY" -m endogs eval "$OUT/run_640" --no-images --no-video
  rm -rf "$OUT/scene_640" "$OUT/run_640/checkpoint.pt"
' > "$OUT/train_640.log" 2>&1
tail -12 "$OUT/train_640.log"

echo "=== done in $((SECONDS - START)) s ==="
cat "$OUT/status.txt"
