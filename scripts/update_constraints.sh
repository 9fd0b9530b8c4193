#!/usr/bin/env bash
# Refresh constraints.txt: install the newest versions pyproject.toml allows into a scratch venv,
# run the test suite there, and rewrite the lock only if the suite passes.
#
#   scripts/update_constraints.sh              # the suite without the real engine (-m "not engine")
#   scripts/update_constraints.sh -- -x tests/dynasor/server   # other pytest arguments
#
# On failure the lock is left as it is and the script prints the failing tests and which
# packages moved against the current lock (the suspects). Exit status: pytest's.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTEST_ARGS=(-m "not engine")
if [[ "${1:-}" == "--" ]]; then shift; PYTEST_ARGS=("$@"); fi

SCRATCH="$(mktemp -d)"
trap 'rm -rf "$SCRATCH"' EXIT
log() { printf '[update_constraints] %s\n' "$*" >&2; }

log "scratch venv $SCRATCH/venv (newest allowed versions, no pip cache)"
python3 -m venv "$SCRATCH/venv"
PY="$SCRATCH/venv/bin/python"
"$PY" -m pip install -q --no-cache-dir --upgrade pip || exit 1
# Without the lock: whatever pyproject.toml's ranges admit today.
"$PY" -m pip install -q --no-cache-dir --upgrade -e '.[dev]' || { log "install failed"; exit 1; }
"$PY" -m pip freeze --exclude-editable | LC_ALL=C sort -f >"$SCRATCH/candidate.txt"

log "running pytest ${PYTEST_ARGS[*]}"
"$SCRATCH/venv/bin/pytest" -p no:cacheprovider "${PYTEST_ARGS[@]}" >"$SCRATCH/pytest.log" 2>&1
status=$?
tail -n 3 "$SCRATCH/pytest.log" >&2

moved() {
    # Packages whose pinned version differs between the current lock and the candidate.
    diff <(grep -v '^#' constraints.txt | grep -v '^$' | LC_ALL=C sort -f) "$SCRATCH/candidate.txt" \
        | sed -n 's/^> /  now     /p; s/^< /  locked  /p'
}

if [[ $status -ne 0 ]]; then
    log "the suite fails with the newest versions; constraints.txt is unchanged. Failing tests:"
    grep -E '^(FAILED|ERROR) ' "$SCRATCH/pytest.log" >&2
    log "versions that moved against the lock (suspects):"
    moved >&2
    exit "$status"
fi

{
    echo "# The exact versions the test suite passed with (Python $("$PY" -c 'import sys; print(".".join(map(str, sys.version_info[:2])))'), $(uname -m))."
    echo "# Used by the README's commands and .ci/run: pip install -c constraints.txt ..."
    echo "# Regenerate with scripts/update_constraints.sh (rewrites this file only if the suite passes)."
    cat "$SCRATCH/candidate.txt"
} >constraints.txt.new
log "suite passed; versions that moved:"
moved >&2
mv constraints.txt.new constraints.txt
log "constraints.txt rewritten"
