#!/usr/bin/env bash
# The GPU checks of the probes, as one script: the probe benchmark on CUDA, then the probe tests.
#
#   bash benchmarks/gpu_check.sh            (from anywhere; OUT=/some/dir to choose where files go)
#
# For a fresh machine with CUDA and python3, maybe without this project's virtual environment and
# without network. Everything it learns is printed and also written under $OUT (default ./gpu_out):
#   bench_cuda.json   every figure of benchmarks/bench_probes.py --device cuda
#   *.log             the output of each step
# Steps run in order of importance, each under its own time limit, and a step that would overrun
# the overall budget (GPU_CHECK_BUDGET seconds, default 480) is skipped and says so. A failing step
# never stops the later ones; the summary at the end lists every step's outcome.
set -u -o pipefail

cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu_out}"
mkdir -p "$OUT"
BUDGET="${GPU_CHECK_BUDGET:-480}"
SUMMARY=()

banner() { printf '\n===== %s  [%s, %ss elapsed]\n' "$1" "$(date +%H:%M:%S)" "$SECONDS"; }

# step NAME SECONDS COMMAND...: run with a time limit, print and log the output, record the outcome.
step() {
  local name="$1" limit="$2"
  shift 2
  if (( SECONDS + limit > BUDGET )); then
    banner "$name: SKIPPED (needs up to ${limit}s, ${SECONDS}s of ${BUDGET}s used)"
    SUMMARY+=("$name: skipped for time")
    return 0
  fi
  banner "$name (limit ${limit}s)"
  local log="$OUT/$(printf %s "$name" | tr -c "[:alnum:]\n" _).log"
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  case $rc in
    0) SUMMARY+=("$name: ok") ;;
    124|137) SUMMARY+=("$name: TIMED OUT after ${limit}s") ;;
    *) SUMMARY+=("$name: FAILED (exit $rc)") ;;
  esac
  return 0
}

banner "machine"
nvidia-smi 2>&1 || echo "nvidia-smi: not available"
uname -a
nproc
command -v python3 && python3 --version

# ---------------------------------------------------------------------------------------------
# A Python with torch and CUDA: the system's own if it has one (no download: the machine may be
# offline), else a virtual environment on top of it with whatever it lacks.
banner "python"
PY=""
for cand in python3 python3.11 python; do
  if command -v "$cand" >/dev/null 2>&1 && "$cand" -c \
      "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" >/dev/null 2>&1; then
    PY="$(command -v "$cand")"
    break
  fi
done
if [[ -z "$PY" ]]; then
  echo "No python3 here imports a torch that sees CUDA; trying a virtual environment from requirements-dev.txt"
  python3 -m venv --system-site-packages /tmp/v && \
    timeout 300 /tmp/v/bin/pip install -q --retries 1 --timeout 20 -r requirements-dev.txt
  if /tmp/v/bin/python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    PY=/tmp/v/bin/python
  else
    echo "GPU CHECK ABORTED: no torch with CUDA on this machine, and none could be installed."
    python3 -c "import torch; print('torch', torch.__version__, 'cuda available:', torch.cuda.is_available())" 2>&1
    exit 1
  fi
fi
"$PY" - <<'EOF'
import torch
print("python with CUDA torch:", __import__("sys").executable)
print("torch", torch.__version__, "| CUDA", torch.version.cuda, "| cuDNN", torch.backends.cudnn.version())
print("device:", torch.cuda.get_device_name(0), "| capability", torch.cuda.get_device_capability(0))
print("TF32: cudnn", torch.backends.cudnn.allow_tf32, "| matmul", torch.backends.cuda.matmul.allow_tf32)
EOF

# What the engine and the tests import besides torch (module name -> package name).
MISSING=$("$PY" - <<'EOF'
import importlib.util
need = {"numpy": "numpy", "pandas": "pandas", "scipy": "scipy", "sklearn": "scikit-learn", "PIL": "pillow",
        "pytest": "pytest", "hypothesis": "hypothesis", "pytest_timeout": "pytest-timeout"}
print(" ".join(pkg for mod, pkg in need.items() if importlib.util.find_spec(mod) is None))
EOF
)
if [[ -n "$MISSING" ]]; then
  echo "missing: $MISSING -> a virtual environment over $PY (torch stays the system's)"
  "$PY" -m venv --system-site-packages /tmp/v && \
    timeout 240 /tmp/v/bin/pip install -q --retries 1 --timeout 20 $MISSING \
    || echo "pip could not install: $MISSING (offline?); steps that need them will fail and say so"
  [[ -x /tmp/v/bin/python ]] && PY=/tmp/v/bin/python
else
  echo "every module the engine and the tests import is present"
fi
# pytest without pytest-timeout refuses the project's --timeout option: run without the ini addopts.
PYTEST=("$PY" -m pytest -q -p no:cacheprovider -o addopts= -m "not slow" --tb=short)

# ---------------------------------------------------------------------------------------------
# 1. The benchmark on CUDA: what docs/benchmarks.md needs.
step "bench cuda" 240 "$PY" benchmarks/bench_probes.py --device cuda --json "$OUT/bench_cuda.json"

# 2. Fast paths equal the plain ones, and the CUDA path: CUDA agrees with the CPU, results come back
#    in one transfer, synchronizations do not grow with the number of probe points.
step "equivalence tests with cuda" 120 "${PYTEST[@]}" -rs tests/test_speed_equivalence.py

# 3. The probe test files on this machine's own torch, CPU path (CUDA hidden: their hand-built
#    references are CPU computations compared at 1e-9).
step "probe tests cpu" 150 env CUDA_VISIBLE_DEVICES= "${PYTEST[@]}" tests/test_probes.py \
  tests/test_metrics.py tests/test_hooks.py tests/test_paper_claims.py tests/test_data.py

# 4. Informational: the same files with CUDA visible, so ProbeConfig's device "auto" runs them on
#    the GPU. Comparisons against CPU-built references at 1e-9 are expected to fail on float
#    rounding (and TF32 convolutions); an exception (device mismatch, a crash) is a real bug.
step "probe tests on cuda (informational)" 150 "${PYTEST[@]}" --tb=line tests/test_probes.py \
  tests/test_paper_claims.py

# 5. Optional: the CPU figures of this machine's host, for comparison (GPU_CHECK_CPU_BENCH=1).
if [[ "${GPU_CHECK_CPU_BENCH:-0}" == 1 ]]; then
  step "bench cpu of the gpu host" 200 "$PY" benchmarks/bench_probes.py --device cpu --quick \
    --models mlp resnet56 --no-memory --json "$OUT/bench_cpu_host.json"
fi

banner "summary"
printf '  %s\n' "${SUMMARY[@]}"
echo "files under $OUT:"
ls -l "$OUT"
