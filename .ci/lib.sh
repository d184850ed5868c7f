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

# overlay_venv BASE VENV: creates VENV (unless it exists) on top of BASE: VENV sees BASE's
# packages (torch included) through a .pth file, so nothing is installed from an index.
# BASE's packages come after VENV's own and before the system's, and BASE's own .pth files
# (its editable kmixup) are not run, except setuptools' one.
overlay_venv() {
  local base=$1 venv=$2 base_site site
  if [ ! -x "$venv/bin/python" ]; then
    step "create $venv on top of $base" "$base/bin/python" -m venv --system-site-packages \
      --without-pip "$venv"  # pip and setuptools too come from BASE
  fi
  base_site=$("$base/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  {
    printf '%s\n' "$base_site"
    cat "$base_site/distutils-precedence.pth" 2>/dev/null || true
  } >"$site/kmixup-ci-base.pth"
}

# installed_kmixup SITE: what a kmixup install put into the site-packages folder SITE.
installed_kmixup() { find "$1" -maxdepth 1 -iname '*kmixup*' ! -name kmixup-ci-base.pth; }
