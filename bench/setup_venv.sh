#!/usr/bin/env bash
# The Python side of the benchmark: a local virtual environment (default
# .venv at the repository root; BENCH_VENV=DIR picks another) with torch,
# torchvision, onnx, onnxruntime, openvino, safetensors and numpy. Creates it
# with `python3 -m venv` when absent and installs only the packages whose
# import fails, so a second run does nothing. `make bench` calls it.
#
#   bash bench/setup_venv.sh            # then: .venv/bin/python bench/bench.py ...
#
# torch and torchvision come from PyPI like everything else (plain `pip
# install torch`, which on Linux x86_64 is the CUDA build: its CPU kernels are
# the same, it only downloads more, about 3.5 GB). BENCH_TORCH="torch==X
# torchvision" replaces the torch requirement, e.g. to take a CPU wheel from a
# local wheel directory (pip's find-links).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${BENCH_VENV:-.venv}
py=$venv/bin/python

if [ ! -x "$py" ]; then
  echo "bench: creating $venv (python3 -m venv)"
  python3 -m venv "$venv"
fi

# module to import → requirement that provides it
missing() {
  "$py" - "$@" <<'PY'
import importlib, sys
for pair in sys.argv[1:]:
    mod, req = pair.split("=", 1)
    try:
        importlib.import_module(mod)
    except Exception:
        print(req)
PY
}
others=$(missing numpy=numpy onnx=onnx onnxruntime=onnxruntime openvino=openvino \
                 safetensors=safetensors)
torch_missing=$(missing torch=torch torchvision=torchvision)

if [ -z "$others" ] && [ -z "$torch_missing" ]; then
  echo "bench: $venv has torch, torchvision, onnx, onnxruntime, openvino, safetensors, numpy"
  exit 0
fi
"$py" -m pip install --quiet --upgrade pip
if [ -n "$torch_missing" ]; then
  if [ -n "${BENCH_TORCH:-}" ]; then
    echo "bench: installing $BENCH_TORCH (BENCH_TORCH)"
    # shellcheck disable=SC2086  # a list of requirements
    "$py" -m pip install $BENCH_TORCH
  else
    echo "bench: installing torch torchvision from PyPI"
    "$py" -m pip install torch torchvision
  fi
fi
others=$(missing numpy=numpy onnx=onnx onnxruntime=onnxruntime openvino=openvino \
                 safetensors=safetensors)
if [ -n "$others" ]; then
  echo "bench: installing" $others
  # shellcheck disable=SC2086
  "$py" -m pip install $others
fi
still=$(missing numpy=numpy torch=torch torchvision=torchvision onnx=onnx \
                onnxruntime=onnxruntime openvino=openvino safetensors=safetensors)
if [ -n "$still" ]; then
  echo "bench: still not importable in $venv:" $still >&2
  exit 1
fi
"$py" - <<'PY'
import importlib
print("bench: " + ", ".join(
    f"{m} {importlib.import_module(m).__version__}"
    for m in ("torch", "torchvision", "onnx", "onnxruntime", "openvino", "safetensors", "numpy")))
PY
