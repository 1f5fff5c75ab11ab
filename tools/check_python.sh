#!/usr/bin/env bash
# A fresh install on another Python: make a new virtual environment with the given interpreter,
# install the course with the README's command (pip install -r requirements.txt), run the set-up
# check, the fast tests (pytest -m "not slow") and one chapter through nbval.
#
#   tools/check_python.sh python3.13              # an interpreter on PATH, or a path to one
#   tools/check_python.sh 3.13                    # found as python3.13 on PATH or under pyenv
#   CHAPTER=notebooks/02_pruning_theory.ipynb tools/check_python.sh 3.12
#
# .ci/run runs it on Python 3.13 (with CHECK_PYTHON_INSTALL=1: if neither PATH nor pyenv has it,
# uv installs it). Prints the seconds each step took; exit status 0 = all passed.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# = 1 ] || { echo "usage: $0 PYTHON (e.g. python3.13, 3.13 or /path/to/python)" >&2; exit 2; }
chapter=${CHAPTER:-notebooks/03_pruning_math.ipynb}

find_python() {  # $1: python3.13, 3.13 or a path; prints a working interpreter or fails
  local wanted=$1 candidate
  [[ $wanted =~ ^[0-9]+\.[0-9]+$ ]] && wanted=python$wanted
  # a pyenv shim is on PATH even when that version is not selected: test that it runs
  if command -v "$wanted" >/dev/null 2>&1 && "$wanted" -c "" 2>/dev/null; then
    command -v "$wanted"; return 0
  fi
  if [[ $wanted =~ ^python([0-9]+\.[0-9]+)$ ]]; then
    local root=${PYENV_ROOT:-$HOME/.pyenv}
    command -v pyenv >/dev/null 2>&1 && root=$(pyenv root)
    for candidate in "$root"/versions/"${BASH_REMATCH[1]}"*/bin/"$wanted"; do
      [ -x "$candidate" ] && "$candidate" -c "" 2>/dev/null && { echo "$candidate"; return 0; }
    done
    # last resort, when asked (CI): a uv-managed Python (uv comes with flwr)
    if [ "${CHECK_PYTHON_INSTALL:-0}" = 1 ] && command -v uv >/dev/null 2>&1; then
      echo "check_python: installing Python ${BASH_REMATCH[1]} with uv" >&2
      uv python install "${BASH_REMATCH[1]}" >&2 && uv python find "${BASH_REMATCH[1]}" && return 0
    fi
  fi
  return 1
}

python=$(find_python "$1") || {
  echo "check_python: $1 not found (neither on PATH nor under pyenv's versions/)" >&2; exit 1; }
summary=""
step_start=$(date +%s)
step_done() { local now; now=$(date +%s); summary+="$1 $((now - step_start)) s, "; step_start=$now; }

venv=$(mktemp -d)/venv
trap 'rm -rf "$(dirname "$venv")"' EXIT
"$python" -m venv "$venv"
# shellcheck disable=SC1091
. "$venv/bin/activate"
echo "check_python: $(python -V) from $python, fresh environment $venv"
python -m pip install --quiet --upgrade pip
python -m pip install --quiet -r requirements.txt
step_done "install"
python prunefl_lite/setup_check.py
step_done "set-up check"
python -m pytest -m "not slow" -q
step_done "fast tests"
python -m pytest "$chapter" -q
step_done "$(basename "$chapter")"
echo "check_python summary ($(python -V)): ${summary%, }"
