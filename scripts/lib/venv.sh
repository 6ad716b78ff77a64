# Sourced by scripts/demo and scripts/test: the project's virtual environment at .venv.
#
#   ensure_venv REPO_DIR [dev]
#
# Creates .venv with the first Python >= 3.11 found ($PYTHON, python3.13, python3.12, python3.11,
# python3) when it is missing, and installs flowpod into it in editable mode ("dev" adds the test
# tools and the operator extra, kopf, which the unit tier needs) only when pyproject.toml changed
# since the last install: a stamp in .venv records what was installed, so later runs need no
# network.

_is_recent_python() {
  "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1
}

_find_python() {
  local candidate
  for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
    if [[ -n "$candidate" ]] && command -v "$candidate" >/dev/null 2>&1 \
        && _is_recent_python "$candidate"; then
      echo "$candidate"
      return 0
    fi
  done
  echo "flowpod needs Python 3.11 or newer, and none was found on PATH" >&2
  echo "  (tried \$PYTHON, python3.13, python3.12, python3.11, python3)." >&2
  echo "  Install one, or point PYTHON at it: PYTHON=/path/to/python3.11 bash $0" >&2
  return 1
}

ensure_venv() {
  local repo=$1 extra=${2:-}
  local venv="$repo/.venv" python hash stamp spec
  if [[ ! -x "$venv/bin/python" ]]; then
    python=$(_find_python) || return 1
    echo "creating $venv with $python" >&2
    "$python" -m venv "$venv"
  elif ! _is_recent_python "$venv/bin/python"; then
    echo "$venv runs an older Python; flowpod needs 3.11 or newer. Remove $venv and run this again." >&2
    return 1
  fi
  hash=$(sha256sum "$repo/pyproject.toml" | cut -c1-16)
  stamp=$(cat "$venv/.flowpod-stamp" 2>/dev/null || true)
  if "$venv/bin/python" -c 'import flowpod' >/dev/null 2>&1; then
    case "$stamp" in
      "$hash dev") return 0 ;;                      # a dev install serves both callers
      "$hash base") [[ -z "$extra" ]] && return 0 ;;
    esac
  fi
  spec="$repo"
  [[ -n "$extra" ]] && spec="$repo[$extra]"
  echo "installing flowpod${extra:+[$extra]} into $venv (needs the network this time only)" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$spec"; then
    echo "'pip install -e $spec' failed; see the messages above." >&2
    return 1
  fi
  echo "$hash ${extra:-base}" > "$venv/.flowpod-stamp"
}
