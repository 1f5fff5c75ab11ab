#!/usr/bin/env bash
# Canary: does the course still work with the NEWEST releases of its stack?
#
# Makes a fresh virtual environment, installs the newest releases of the stack without pins
# (tensorflow, tf-keras, tensorflow-model-optimization, flwr, ai-edge-litert, dp-accounting,
# jupyter-book below 2, myst-nb) plus the rest of requirements.txt as pinned, installs the course
# package without its own pins (pip install --no-deps -e .), then runs the fast tests
# (pytest -m "not slow") and chapter 9 through nbval. It prints which versions differ from the
# pins. Exit status 0: the newest releases work; otherwise the failing step is named.
#
#   tools/canary.sh            # from anywhere in the repository
#   PYTHON=python3.13 tools/canary.sh
#
# The weekly workflow .github/workflows/canary.yml runs exactly this script.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3.11}
start=$(date +%s)

# the stack that floats; every other line of requirements.txt stays pinned
newest=(tensorflow tf-keras tensorflow-model-optimization flwr ai-edge-litert dp-accounting
        "jupyter-book<2" myst-nb)
floating='^(tensorflow|tf-keras|tensorflow-model-optimization|flwr|ai-edge-litert|dp-accounting|jupyter-book|myst-nb)=='

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
grep -Ev "$floating" requirements.txt | grep -Ev '^-e ' > "$work/rest.txt"

"$python" -m venv "$work/venv"
# shellcheck disable=SC1091
. "$work/venv/bin/activate"
python -m pip install --quiet --upgrade pip
echo "canary: installing the newest ${newest[*]} with the rest of requirements.txt ($(python -V))"
python -m pip install --quiet --upgrade "${newest[@]}" -r "$work/rest.txt" \
  || { echo "canary: FAILED to install the newest releases together" >&2; exit 1; }
# the package's own pins (pyproject.toml) would pull the pinned TensorFlow back: skip them
python -m pip install --quiet --no-deps -e .
python -m pip check || echo "canary: pip check reports conflicts (above)"

echo "canary: versions that differ from requirements.txt:"
python - <<'PY'
import re
from importlib.metadata import version, PackageNotFoundError
changed = 0
for line in open("requirements.txt"):
    m = re.match(r"^([A-Za-z0-9_.-]+)==([^\s#]+)", line)
    if not m:
        continue
    try:
        now = version(m[1])
    except PackageNotFoundError:
        now = "missing"
    if now != m[2]:
        changed += 1
        print(f"  {m[1]}: pinned {m[2]}, installed {now}")
if not changed:
    print("  none: the newest releases are the pinned ones")
PY

status=0
echo "canary: fast tests (pytest -m 'not slow')"
python -m pytest -m "not slow" -q -p no:cacheprovider || { status=1; echo "canary: FAILED fast tests"; }
echo "canary: chapter 9 through nbval"
python -m pytest notebooks/09_deployment.ipynb -q -p no:cacheprovider \
  || { status=1; echo "canary: FAILED chapter 9"; }
echo "canary: $([ $status = 0 ] && echo passed || echo FAILED) in $(( $(date +%s) - start )) s"
exit $status
