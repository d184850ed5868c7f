#!/usr/bin/env bash
# One build for every torch: kmixup._C uses only the LibTorch stable ABI (the C shim and
# header-only code, csrc/checks.h) and the limited Python API. This stage checks both:
#  1. every kmixup/_C*.so built here (the tree's, against .venv's torch; .venv-cuda/src's,
#     the CUDA build, when there is one) is an abi3 module whose undefined dynamic symbols,
#     demangled, name no at::, c10:: or torch:: C++ symbol;
#  2. the tree's _C, built against .venv's torch (2.13.0, CPU), serves the ops under
#     .venv-cuda's (2.14.1): a copy of the tree with that _C, outside the tree, runs the
#     CPU test suite (-m "not fuzz") with .venv-cuda's python and KMIXUP_EXPECT_COMPILED=cpu,
#     after checking that the _C loaded is that copy, byte for byte, and that
#     backend_info() says compiled.
# Needs the cpu-torch and cuda-torch stages' environments (`make venv`, .ci/cuda_torch.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
STAGE=stable-abi
. .ci/lib.sh

BUILT_PY=.venv/bin/python
RUN_PY=$PWD/.venv-cuda/bin/python
[ -x "$BUILT_PY" ] || die "no .venv: run \`make venv\` first"
[ -x "$RUN_PY" ] || die "no .venv-cuda: run .ci/cuda_torch.sh first"

# ---- 1. symbols
check_symbols() {
  local so=$1 bad shim
  case $so in *.abi3.so) ;; *) die "$so is not an abi3 module (limited Python API)" ;; esac
  bad=$(nm -D --undefined-only "$so" | c++filt | grep -E '(^|[^[:alnum:]_])(at|c10|torch)::' ||
    true)
  if [ -n "$bad" ]; then
    printf '%s\n' "$bad" >&2
    die "$so needs $(printf '%s\n' "$bad" | wc -l) torch C++ symbols outside the stable ABI (above)"
  fi
  shim=$(nm -D --undefined-only "$so" | grep -cE ' U (aoti_torch|torch)_' || true)
  log "$so: no at::/c10::/torch:: symbol; $shim functions of torch's C shim"
}
mapfile -t built < <(compgen -G "kmixup/_C*.so" || true)
[ "${#built[@]}" -eq 1 ] || die "expected one kmixup/_C*.so in the tree, found ${#built[@]}"
check_symbols "${built[0]}"
if compgen -G ".venv-cuda/src/kmixup/_C*.so" >/dev/null; then
  for so in .venv-cuda/src/kmixup/_C*.so; do check_symbols "$so"; done
fi

# ---- 2. built against one torch, run under another
built_torch=$("$BUILT_PY" -c 'import torch; print(torch.__version__)')
run_torch=$("$RUN_PY" -c 'import torch; print(torch.__version__)')
[ "${built_torch%%+*}" != "${run_torch%%+*}" ] ||
  die "both venvs have torch $built_torch: nothing to check across versions"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mirror "$tmp/src"
cp "${built[0]}" "$tmp/src/kmixup/"
log "the _C built against torch $built_torch, under torch $run_torch"
# PYTHONPATH: the copy, not .venv-cuda's own editable kmixup, also in tests' subprocesses.
sha=$(sha256sum <"${built[0]}")
check_loaded() { (cd "$tmp/src" && PYTHONPATH=$tmp/src "$RUN_PY" - "${sha%% *}"); }
check_loaded <<'EOF' || die "the tree's _C does not serve the ops under torch $run_torch"
import hashlib
import os
import sys

import torch

import kmixup

here = os.getcwd()
c_ext = sys.modules["kmixup._C"].__file__  # imported by kmixup._ops
assert os.path.dirname(kmixup.__file__) == os.path.join(here, "kmixup"), kmixup.__file__
assert os.path.dirname(c_ext) == os.path.join(here, "kmixup"), c_ext
with open(c_ext, "rb") as f:
    assert hashlib.sha256(f.read()).hexdigest() == sys.argv[1], "another _C"
info = kmixup.backend_info()
assert info["cpu"] == "compiled (kmixup._C)", info
print(f"[stable-abi] torch {torch.__version__} loads {c_ext}: {info}")
EOF
t0=$SECONDS
(cd "$tmp/src" && PYTHONPATH=$tmp/src KMIXUP_EXPECT_COMPILED=cpu "$RUN_PY" -m pytest -q \
  -p no:cacheprovider -m "not fuzz") || die "the CPU suite fails under torch $run_torch"
log "  ... $((SECONDS - t0)) s"
