#!/usr/bin/env bash
# Install matrix: a CUDA build of torch on a machine without a GPU (a docker or CI build box).
#  1. .venv-cuda: torch==2.14.1 (CUDA 13.0) and torchvision==0.29.1 from this machine's wheel
#     index, timm and the test dependencies, all under a constraints file pinning torch and
#     torchvision, so nothing can pull another torch;
#  2. kmixup built WITH its CUDA kernels (FORCE_CUDA=1, nvcc), editable, in a mirror of the
#     tree, .venv-cuda/src, whose kmixup/_C*.so is its own (the tree's is .venv's CPU build);
#     every torch.ops.kmixup op must have a CPU and a CUDA kernel;
#  3. the test suite there, on the CPU: it must pass with no NVIDIA driver, and the tests that
#     need timm or torchvision (skipped in .venv) must run.
# A rerun reuses the venv, and builds again only when csrc/, setup.py or pyproject.toml
# changed. `make test-cuda-torch` runs it.
# Env: PYTHON (python3), TORCH_CUDA_ARCH_LIST ("8.0;9.0"), MAX_JOBS (2).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
STAGE=cuda-torch
. .ci/lib.sh

VENV=.venv-cuda
PY=$VENV/bin/python
SRC=$VENV/src
TORCH_PINS=(torch==2.14.1 torchvision==0.29.1)
EXTRA=(timm)
DEPS_STAMP=$VENV/.deps-installed
BUILD_STAMP=$VENV/.kmixup-built
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-8.0;9.0} MAX_JOBS=${MAX_JOBS:-2}

command -v nvcc >/dev/null || die "nvcc not on PATH: this stage builds the CUDA kernels"
# torch takes CUDA_HOME from nvcc's folder, wrong where nvcc is a wrapper (as in
# /usr/local/bin here): nvcc itself knows its toolkit root.
if [ -z "${CUDA_HOME:-}" ]; then
  CUDA_HOME=$(nvcc --dryrun -c -x cu /dev/null -o /dev/null 2>&1 | sed -n 's/^#\$ TOP=//p' |
    head -n 1)
  CUDA_HOME=$(cd "$CUDA_HOME" && pwd -P)
fi
[ -f "$CUDA_HOME/include/cuda_runtime.h" ] || die "no CUDA headers under CUDA_HOME=$CUDA_HOME"
export CUDA_HOME

# ---- 1. environment (set up again when the list of what goes in changes)
read -ra deps <<<"$(make --no-print-directory -s print-deps)"
want="${TORCH_PINS[*]} ${EXTRA[*]} setuptools>=77 wheel ${deps[*]}"
if [ ! -x "$PY" ] || [ "$(cat "$DEPS_STAMP" 2>/dev/null)" != "$want" ]; then
  rm -f "$DEPS_STAMP" "$BUILD_STAMP"
  [ -x "$PY" ] || step "create $VENV" "${PYTHON:-python3}" -m venv "$VENV"
  printf '%s\n' "${TORCH_PINS[@]}" >"$VENV/constraints.txt"
  step "install ${TORCH_PINS[*]} ${EXTRA[*]} and the test dependencies" \
    pip "$PY" install -q -c "$VENV/constraints.txt" "${TORCH_PINS[@]}" "${EXTRA[@]}" \
    'setuptools>=77' wheel "${deps[@]}"
  printf '%s\n' "$want" >"$DEPS_STAMP"
else
  log "reusing $VENV"
fi
"$PY" - "${TORCH_PINS[@]}" <<'EOF' || die "wrong torch in .venv-cuda"
import sys

import torch
import torchvision

want = dict(pin.split("==") for pin in sys.argv[1:])
got = {m.__name__: m.__version__.split("+")[0] for m in (torch, torchvision)}
assert got == want, (got, want)
assert torch.version.cuda, "torch is a CPU build"
print(f"[cuda-torch] torch {torch.__version__} (CUDA {torch.version.cuda}), torchvision "
      f"{torchvision.__version__}, cuda available: {torch.cuda.is_available()}")
EOF
"$PY" -c 'import timm, torchvision.transforms.v2' || die "timm or torchvision does not import"
log "$(nvcc --version | tail -n 2 | head -n 1), CUDA_HOME=$CUDA_HOME"

# ---- 2. build with the CUDA kernels
# (built again when a build input changes: the stamp holds their checksum)
mirror "$SRC"
inputs=$(cd "$SRC" && find csrc setup.py pyproject.toml -type f | sort | xargs sha256sum |
  sha256sum)
if [ "$(cat "$BUILD_STAMP" 2>/dev/null)" != "$inputs" ] ||
    ! compgen -G "$SRC/kmixup/_C*.so" >/dev/null; then
  rm -f "$BUILD_STAMP" "$SRC"/kmixup/_C*.so
  log "building kmixup with CUDA kernels (TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST, log: $VENV/build.log)"
  t0=$SECONDS
  if ! FORCE_CUDA=1 pip "$PY" install -v -c "$VENV/constraints.txt" --no-build-isolation \
      --no-deps -e "$SRC" >"$VENV/build.log" 2>&1; then
    tail -n 40 "$VENV/build.log"
    die "pip install of kmixup failed (the CUDA build, most likely)"
  fi
  log "  ... $((SECONDS - t0)) s"
  printf '%s\n' "$inputs" >"$BUILD_STAMP"
else
  log "kmixup build is up to date"
fi
(cd "$SRC" && ../bin/python -) <<'EOF' || die "kmixup lacks compiled kernels"
import torch

import kmixup
from kmixup import _ops

ops = sorted(_ops.SCHEMAS)  # every op kmixup declares
named = {"betainc", "betaincinv", "pair_sq_dist", "kernel_mix", "interpolate",
         "interpolate_backward"}
assert named <= set(ops), ops
missing = [f"kmixup::{op} ({key})" for op in ops for key in ("CPU", "CUDA")
           if not torch._C._dispatch_has_kernel_for_dispatch_key(f"kmixup::{op}", key)]
assert not missing, f"no compiled kernel for {missing}"
print(f"[cuda-torch] CPU and CUDA kernels registered for {', '.join(ops)}; "
      f"backend_info: {kmixup.backend_info()}")
EOF

# ---- 3. the test suite, no GPU needed
MUST_RUN=(
  "tests/test_examples.py::test_timm_swap_is_drop_in[batch]"
  "tests/test_examples.py::test_timm_swap_is_drop_in[pair]"
  "tests/test_examples.py::test_timm_swap_is_drop_in[elem]"
  "tests/test_torchvision_mixup.py::test_tv_tensors_pass_through_as_such_like_v2_mixup"
  "tests/test_torchvision_mixup.py::test_inside_a_v2_pipeline_on_batches_from_a_loader"
  "tests/test_examples.py::test_lightning_module_fits"
  "tests/test_benchmarks.py::test_throughput_writes_every_method_with_minima_ratios_and_flags"
)
t0=$SECONDS
log "pytest in $SRC"
rc=0
rm -f "$VENV/pytest.xml"
(cd "$SRC" && KMIXUP_EXPECT_COMPILED=cpu ../bin/python -m pytest -q -p no:cacheprovider \
  --junitxml=../pytest.xml) || rc=$?
log "  ... $((SECONDS - t0)) s"
[ -s "$VENV/pytest.xml" ] || die "pytest failed (exit $rc) with no report"
"$PY" - "$VENV/pytest.xml" "${MUST_RUN[@]}" <<'EOF' || die "a test that must run here did not"
import sys
import xml.etree.ElementTree as ET

outcome = {}
for case in ET.parse(sys.argv[1]).iter("testcase"):
    path = case.get("classname").replace(".", "/") + ".py"
    status = "skipped" if case.find("skipped") is not None else "ran"
    if case.find("failure") is not None or case.find("error") is not None:
        status = "failed"
    outcome[f"{path}::{case.get('name')}"] = status
for test in sys.argv[2:]:
    assert outcome.get(test) == "ran", f"{test}: {outcome.get(test, 'not collected')}"
print(f"[cuda-torch] ran, as they must here: {', '.join(t.split('::')[1] for t in sys.argv[2:])}")
EOF
[ "$rc" -eq 0 ] || die "pytest failed (exit $rc) with a CUDA torch and no GPU"
