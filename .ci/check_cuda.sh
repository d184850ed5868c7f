#!/usr/bin/env bash
# Compile check of the CUDA sources; needs nvcc, no GPU.
#  1. every csrc/cuda/*.cu with nvcc for sm_80 and sm_90: fails on a compile error or on any
#     register spill reported by ptxas in a row kernel (the special-function kernels may
#     spill a few bytes: reported only); prints the registers of every kernel;
#  2. csrc/cuda/binding.cpp with `g++ -fsyntax-only` against torch's (stable ABI, at
#     setup.py's TORCH_TARGET_VERSION) and CUDA's headers, when torch imports from $PYTHON
#     (default python3).
# Skipped (exit 0) when nvcc is absent. Env: NVCC, PYTHON, CXX, CUDA_HOME.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

NVCC=${NVCC:-nvcc}
PYTHON=${PYTHON:-python3}
CXX=${CXX:-g++}
if ! command -v "$NVCC" >/dev/null 2>&1; then
  echo "check_cuda: $NVCC not found, CUDA compile check skipped"
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0

# ---- 1. kernels
for src in csrc/cuda/*.cu; do
  log="$tmp/$(basename "$src").log"
  if ! "$NVCC" -std=c++17 -O3 -Icsrc -Xptxas -v --threads 0 \
      -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
      -c "$src" -o "$tmp/out.o" >"$log" 2>&1; then
    cat "$log"
    echo "check_cuda: FAIL $src does not compile"
    status=1
    continue
  fi
  # ptxas prints, per function: "Compiling entry function 'K' for 'sm_XX'", "Function
  # properties for F", "... N bytes spill stores, M bytes spill loads", "Used R registers".
  awk -v src="$src" '
    /Compiling entry function/ { split($0, q, "'\''"); kernel = q[2]; arch = q[4] }
    /Function properties for/  { func = $NF }
    /bytes spill stores/ {
      # The memory-bound row kernels must not spill. The special-function kernels
      # (coefficient_kernel, special_kernel) are compute-bound, call out-of-line math
      # functions, and may spill a few bytes: reported, not fatal.
      if ($5 + 0 > 0 || $9 + 0 > 0) {
        if (func ~ /coefficient_kernel|special_kernel/) { print "SPILL (allowed) " src " " func ": " $0 }
        else { print "SPILL " src " " func ": " $0; bad = 1 }
      }
    }
    /Used [0-9]+ registers/ && kernel != "" {
      for (i = 1; i <= NF; i++) if ($i == "Used") print arch, $(i + 1), kernel
      kernel = ""
    }
    END { exit bad }
  ' "$log" >"$tmp/regs" || status=1
  grep '^SPILL' "$tmp/regs" || true
  echo "$src (registers per thread: sm_80 sm_90)"
  # One line per kernel, both architectures side by side, names demangled and shortened.
  grep -v '^SPILL' "$tmp/regs" | sort -k3,3 -k1,1 |
    awk '{ regs[$3] = regs[$3] sprintf("%4d", $2) } END { for (k in regs) print regs[k], k }' |
    sort -k3 | while read -r r80 r90 name; do
      name=$(c++filt -p "$name" 2>/dev/null || echo "$name")
      base=${name%%<*}
      printf '  %4s %4s  %s\n' "$r80" "$r90" "${base##*::}${name#"$base"}"
    done
done
[ "$status" -eq 0 ] || { echo "check_cuda: FAIL (compile error or register spill)"; exit 1; }

# ---- 2. binding syntax
if ! incs=$("$PYTHON" -c 'import sysconfig, torch.utils.cpp_extension as c
print("\n".join(c.include_paths() + [sysconfig.get_paths()["include"]]))' 2>/dev/null); then
  echo "check_cuda: torch not importable from $PYTHON, binding syntax check skipped"
  exit 0
fi
# nvcc knows its toolkit root (TOP), also when it is a wrapper script.
top=$("$NVCC" --dryrun -c -x cu /dev/null -o /dev/null 2>&1 | sed -n 's/^#\$ TOP=//p' | head -n1)
cuda_inc=""
for root in "${CUDA_HOME:-}" "$top" /usr/local/cuda; do
  if [ -n "$root" ] && [ -f "$root/include/cuda_runtime_api.h" ]; then
    cuda_inc=$root/include
    break
  fi
done
if [ -z "$cuda_inc" ]; then
  echo "check_cuda: CUDA headers not found (set CUDA_HOME), binding syntax check skipped"
  exit 0
fi
# The binding uses torch's stable ABI only, as far as setup.py's TORCH_TARGET_VERSION has it.
target=$(sed -n 's/^TORCH_TARGET_VERSION = "\(0x[0-9a-f]*\)"$/\1/p' setup.py)
[ -n "$target" ] || { echo "check_cuda: FAIL no TORCH_TARGET_VERSION in setup.py"; exit 1; }
flags=(-DTORCH_TARGET_VERSION="$target" -DUSE_CUDA)  # as setup.py builds it
while read -r dir; do flags+=(-isystem "$dir"); done <<<"$incs"
if "$CXX" -std=c++17 -fsyntax-only -Wall -Wextra "${flags[@]}" -isystem "$cuda_inc" \
    -Icsrc csrc/cuda/binding.cpp; then
  echo "check_cuda: csrc/cuda/binding.cpp syntax OK"
else
  echo "check_cuda: FAIL csrc/cuda/binding.cpp"
  exit 1
fi
