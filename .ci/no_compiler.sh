#!/usr/bin/env bash
# Install matrix: a machine with no compiler. A build that cannot compile the ops must stop
# with setup.py's error (what to do instead), never install the slow package silently;
# the pure-PyTorch package installs when asked for (KMIXUP_PURE=1). This stage checks both:
#  1. .venv-nocc sees .venv's packages (torch included) through a .pth file, so nothing is
#     installed from an index (needs .venv: `make venv`);
#  2. cc, c++, gcc, g++, clang, clang++ and nvcc on PATH, and CC, CXX and LDSHARED, are
#     programs that fail (checked: a one-line C++ file no longer compiles); kmixup is
#     installed from a fresh copy of the tree, so no _C*.so of another build is around:
#     a plain install must fail with setup.py's error naming KMIXUP_PURE=1, and install
#     nothing; with KMIXUP_PURE=1 it must succeed, editable or not, and build no _C;
#  3. outside the tree: kmixup.backend_info() reports the pure backend with its reason,
#     a few ops are checked against tests/oracle.py (.ci/pure_smoke.py), and the op and
#     functional tests run (KMIXUP_EXPECT_COMPILED unset).
# `make test-no-compiler` runs it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
STAGE=no-compiler
. .ci/lib.sh

BASE=.venv
VENV=.venv-nocc
PY=$VENV/bin/python
ROOT=$PWD

"$BASE/bin/python" -c 'import torch, setuptools, scipy, pytest' ||
  die "$BASE lacks torch, setuptools, scipy or pytest: run \`make venv\` first"

# ---- 1. environment
overlay_venv "$BASE" "$VENV"
site=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
"$PY" -c 'import torch
print(f"[no-compiler] torch {torch.__version__} from {torch.__file__}")'

# ---- 2. no compiler
nocc=$ROOT/$VENV/no-compiler-bin
rm -rf "$nocc"
mkdir -p "$nocc"
for tool in cc c++ gcc g++ clang clang++ x86_64-linux-gnu-gcc x86_64-linux-gnu-g++ nvcc; do
  printf '#!/bin/sh\necho "%s: no compiler here (kmixup CI)" >&2\nexit 1\n' "$tool" >"$nocc/$tool"
  chmod +x "$nocc/$tool"
done
export PATH=$nocc:$PATH CC=$nocc/cc CXX=$nocc/c++ LDSHARED="$nocc/cc -shared"
unset CUDA_HOME CUDA_PATH FORCE_CUDA KMIXUP_PURE KMIXUP_EXPECT_COMPILED
probe=$(mktemp -d)
echo 'int main() { return 0; }' >"$probe/t.cpp"
for compiler in cc c++ gcc g++ "$CC" "$CXX"; do
  if "$compiler" -x c++ "$probe/t.cpp" -o "$probe/t" 2>/dev/null; then
    rm -rf "$probe"
    die "$compiler still compiles"
  fi
done
rm -rf "$probe"
log "no compiler: cc, c++, gcc, g++, \$CC and \$CXX all fail"

rm -rf "$VENV/src"
mirror "$VENV/src"

# A plain install: it must fail, saying why and what to do, and leave no kmixup behind
# (what an earlier run installed is removed first).
installed_kmixup "$site" | xargs rm -rf
log "installing kmixup without a compiler and without KMIXUP_PURE (log: $VENV/refused.log)"
if pip "$PY" install --no-index --no-deps --no-build-isolation "$VENV/src" \
    >"$VENV/refused.log" 2>&1; then
  die "pip install succeeded without a compiler: it must refuse, pointing to KMIXUP_PURE=1"
fi
grep -q "kmixup: compiling the ops failed" "$VENV/refused.log" &&
  grep -q "KMIXUP_PURE=1 pip install" "$VENV/refused.log" ||
  { tail -n 30 "$VENV/refused.log"; die "the failed install did not show setup.py's error"; }
[ -z "$(installed_kmixup "$site")" ] || die "the failed install left $(installed_kmixup "$site")"
log "  refused, as it must; setup.py said:"
grep -A 7 "kmixup: compiling the ops failed" "$VENV/refused.log" | sed "s/^      /    /"

# install HOW KMIXUP_DIR ARGS...: `KMIXUP_PURE=1 pip install ARGS` (the copy, with -e or
# not) must succeed and build no _C; then the smoke test, run outside the tree, must
# import kmixup from KMIXUP_DIR.
install() {
  local how=$1 expect=$2 t0=$SECONDS
  shift 2
  log "installing the pure-PyTorch kmixup $how without a compiler (log: $VENV/install.log)"
  if ! KMIXUP_PURE=1 pip "$PY" install -v --no-index --no-deps --no-build-isolation \
      --force-reinstall "$@" >"$VENV/install.log" 2>&1; then
    tail -n 40 "$VENV/install.log"
    die "KMIXUP_PURE=1 pip install ($how) failed without a compiler"
  fi
  log "  ... $((SECONDS - t0)) s"
  if find "$VENV" -name '_C*.so' -path '*kmixup*' | grep .; then
    die "a compiled kmixup._C was built or installed anyway"
  fi
  # not in the tree: `import kmixup` must find the installed package
  (cd "$VENV" && bin/python "$ROOT/.ci/pure_smoke.py" "$ROOT/tests" "$expect") ||
    die "smoke test failed ($how install)"
}

# ---- 3. the pure-PyTorch kernels, installed both ways
install editable "$ROOT/$VENV/src/kmixup" -e "$VENV/src"
install "(not editable)" "$site/kmixup" "$VENV/src"
cd "$VENV"
# Left out: inductor's CPU code generation needs a C++ compiler, for any torch.compile.
deselect=tests/test_ops.py::test_torch_compile_training_step_fullgraph_equals_eager
log "pytest tests/test_ops.py tests/test_functional.py on the pure kernels (less $deselect:" \
  "torch.compile's C++ code generation needs a compiler)"
t0=$SECONDS
bin/python -m pytest -q -p no:cacheprovider --rootdir "$ROOT" --deselect "$deselect" \
  "$ROOT/tests/test_ops.py" "$ROOT/tests/test_functional.py" ||
  die "pytest failed on the pure-PyTorch kernels"
log "  ... $((SECONDS - t0)) s"
