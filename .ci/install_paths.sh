#!/usr/bin/env bash
# Install matrix: the ways people install a Python package, in an environment that has
# torch and a compiler. Each must give the compiled ops or stop with an error saying what
# to do; the pure-PyTorch package only when asked for. Checks:
#  1. `pip install .` with pip's default build isolation (no torch in the build
#     environment) fails, naming `--no-build-isolation` and KMIXUP_PURE=1, and installs
#     nothing;
#  2. `KMIXUP_PURE=1 pip install .` (isolated) installs a py3-none-any package without _C,
#     and kmixup reports the pure backend;
#  3. `pip wheel --no-build-isolation .` gives a platform wheel holding kmixup/_C*.so;
#     installed, kmixup reports the compiled CPU kernels (checked outside the tree);
#  4. an sdist made without torch holds every C++/CUDA source, so a build from it compiles.
# .venv-install sees .venv's packages (torch included) through a .pth file; every pip call
# runs under a constraints file pinning torch to .venv's version (PIP_CONSTRAINT reaches
# pip's isolated build environments too), with --no-deps, so no torch is ever fetched.
# The tree is mirrored into .venv-install/src, whose build/ is kept: a rerun compiles only
# what changed. `make test-install` runs it. Env: MAX_JOBS (2).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
STAGE=install
. .ci/lib.sh

BASE=.venv
VENV=.venv-install
PY=$VENV/bin/python
SRC=$VENV/src
ROOT=$PWD
export MAX_JOBS=${MAX_JOBS:-2}

"$BASE/bin/python" -c 'import torch, setuptools, wheel' ||
  die "$BASE lacks torch, setuptools or wheel: run \`make venv\` first"
unset KMIXUP_PURE KMIXUP_EXPECT_COMPILED FORCE_CUDA
overlay_venv "$BASE" "$VENV"
site=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
"$PY" -c 'import torch; print("torch==" + torch.__version__)' >"$VENV/constraints.txt"
export PIP_CONSTRAINT=$ROOT/$VENV/constraints.txt
log "torch pinned: $(cat "$VENV/constraints.txt")"
mirror "$SRC"
installed_kmixup "$site" | xargs rm -rf  # an earlier run's install

# backend EXPECTED: kmixup, imported outside the tree, comes from $site and reports
# EXPECTED for the CPU.
backend() {
  (cd "$VENV" && bin/python - "$site" "$1") <<'PY'
import sys
from pathlib import Path

import kmixup

site, expected = sys.argv[1:]
where = Path(kmixup.__file__).parent
assert where == Path(site, "kmixup"), f"kmixup imported from {where}, not {site}"
info = kmixup.backend_info()
assert info["cpu"] == expected, info
print(f"[install]   kmixup from {where}: backend_info() = {info}")
PY
}

# ---- 1. the isolated build refuses, saying what to do
t0=$SECONDS
log "pip install . with build isolation (log: $VENV/isolated.log)"
if pip "$PY" install --no-deps "$SRC" >"$VENV/isolated.log" 2>&1; then
  die "an isolated pip install succeeded: it must compile the ops or refuse"
fi
for hint in "torch does not import in the build environment" \
    "pip install --no-build-isolation ." "KMIXUP_PURE=1 pip install ."; do
  grep -qF "$hint" "$VENV/isolated.log" ||
    { tail -n 30 "$VENV/isolated.log"; die "the refusal does not say: $hint"; }
done
[ -z "$(installed_kmixup "$site")" ] || die "the refused install left $(installed_kmixup "$site")"
log "  refused, as it must ($((SECONDS - t0)) s); setup.py said:"
grep -A 6 "kmixup: cannot build" "$VENV/isolated.log" | sed "s/^      /    /"

# ---- 2. the pure-PyTorch package, asked for
t0=$SECONDS
log "KMIXUP_PURE=1 pip install . with build isolation (log: $VENV/pure.log)"
KMIXUP_PURE=1 pip "$PY" install --no-deps "$SRC" >"$VENV/pure.log" 2>&1 ||
  { tail -n 30 "$VENV/pure.log"; die "KMIXUP_PURE=1 pip install . failed"; }
grep -qx "Tag: py3-none-any" "$site"/kmixup-*.dist-info/WHEEL ||
  die "the pure package is not py3-none-any: $(grep Tag "$site"/kmixup-*.dist-info/WHEEL)"
if find "$site/kmixup" -name '_C*.so' | grep .; then die "the pure package holds a _C"; fi
backend "pure-pytorch (extension not built)"
log "  ... $((SECONDS - t0)) s"

# ---- 3. the platform wheel, built against the installed torch
t0=$SECONDS
rm -rf "$VENV/wheels"
log "pip wheel --no-build-isolation . (MAX_JOBS=$MAX_JOBS, log: $VENV/wheel.log)"
pip "$PY" wheel -v --no-deps --no-build-isolation -w "$VENV/wheels" "$SRC" \
  >"$VENV/wheel.log" 2>&1 || { tail -n 40 "$VENV/wheel.log"; die "pip wheel failed"; }
wheels=("$VENV"/wheels/kmixup-*.whl)
[ "${#wheels[@]}" -eq 1 ] || die "expected one wheel, got: ${wheels[*]}"
case $(basename "${wheels[0]}") in
  *-none-any.whl) die "not a platform wheel: $(basename "${wheels[0]}")" ;;
esac
so=$("$PY" -m zipfile -l "${wheels[0]}" | grep -o 'kmixup/_C[^ ]*\.so' || true)
[ -n "$so" ] || die "$(basename "${wheels[0]}") holds no kmixup/_C*.so"
log "  $(basename "${wheels[0]}") holds $so"
pip "$PY" install -q --no-deps --force-reinstall "${wheels[0]}" ||
  die "installing $(basename "${wheels[0]}") failed"
backend "compiled (kmixup._C)"
log "  ... $((SECONDS - t0)) s"

# ---- 4. the sdist, made where torch does not import
t0=$SECONDS
rm -rf "$VENV/sdist"
log "sdist without torch"
(cd "$SRC" && ../bin/python - "$ROOT/$VENV/sdist" "$ROOT") <<'PY' || die "the sdist check failed"
import runpy
import subprocess
import sys
import tarfile
from pathlib import Path

dest, root = sys.argv[1:]
sys.modules["torch"] = None  # `import torch` raises ImportError, as where none is installed
sys.argv = ["setup.py", "-q", "sdist", "-d", dest]
runpy.run_path("setup.py", run_name="__main__")
(archive,) = Path(dest).glob("kmixup-*.tar.gz")
names = {name.split("/", 1)[1] for name in tarfile.open(archive).getnames() if "/" in name}
sources = subprocess.run(["git", "ls-files", "csrc"], capture_output=True, text=True,
                         check=True, cwd=root).stdout.split()
missing = [s for s in sources + ["LICENSE", "CITATION.cff"] if s not in names]
assert sources and not missing, f"{archive.name} lacks {missing}"
assert not [n for n in names if n.endswith(".so")], "the sdist holds a compiled object"
print(f"[install]   {archive.name}: the {len(sources)} C++/CUDA sources, LICENSE, "
      "CITATION.cff; no compiled object")
PY
log "  ... $((SECONDS - t0)) s"
