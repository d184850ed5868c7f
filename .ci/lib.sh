# Helpers shared by the .ci/ scripts (sourced, not run). Each script sets STAGE first.

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

log() { printf '[%s] %s\n' "${STAGE:-ci}" "$*"; }

die() {
  printf '[%s] FAIL: %s\n' "${STAGE:-ci}" "$*" >&2
  exit 1
}

# pip PYTHON ARGS...: `PYTHON -m pip ARGS`, less the warnings about this machine's index
# folders that lack a package.
pip() {
  local py=$1
  shift
  "$py" -m pip "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}

# step DESCRIPTION CMD...: runs CMD, then prints how long it took.
step() {
  local what=$1 t0=$SECONDS
  shift
  log "$what"
  "$@" || die "$what (exit $?)"
  log "  ... $((SECONDS - t0)) s"
}

# mirror DEST: copies the project's files (tracked, and untracked but not ignored) into DEST,
# keeping their times, and deletes the ones that are gone; build outputs in DEST (build/,
# kmixup/_C*.so, caches) stay. An editable build in DEST has its own kmixup/_C*.so, apart
# from the one .venv's build put in the tree.
mirror() {
  local dest=$1 list
  list=$(mktemp)
  git ls-files -co --exclude-standard | while IFS= read -r f; do
    [ -f "$f" ] && printf '%s\n' "$f"
  done | sort >"$list"
  [ -s "$list" ] || { rm -f "$list"; die "mirror: no files listed (not a git checkout?)"; }
  mkdir -p "$dest"
  tar -cf - -T "$list" | tar -xf - -C "$dest"
  (cd "$dest" && find . -type f \
      ! -path './build/*' ! -name '*.so' ! -path '*/__pycache__/*' ! -path '*.egg-info/*' \
      ! -path './.pytest_cache/*' ! -path './.hypothesis/*' ! -path './demo_output/*' |
    sed 's|^\./||' | sort | comm -13 "$list" - | while IFS= read -r f; do rm -f "$f"; done)
  rm -f "$list"
}
