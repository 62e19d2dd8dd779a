# Sourced by scripts/test and scripts/demo: make sure .venv exists with cxl installed.
# Needs only python3 (>= 3.11) on the PATH; everything else comes from the package index.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
VENV="$ROOT/.venv"
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "cxl needs Python 3.11 or newer; $PY is $("$PY" --version 2>&1). Set PYTHON=/path/to/python3.11." >&2
  exit 1
fi
stamp="$VENV/.cxl-installed"
# Reinstall when pyproject.toml or the set of top-level packages changes: the editable
# install maps packages by name at install time, so a new package needs a new install.
want="$(cd "$ROOT" && { cat pyproject.toml; ls -d */__init__.py 2>/dev/null; } | cksum)"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setting up $VENV (one-time) ..." >&2
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  "$VENV/bin/python" -m pip install -q -e "$ROOT[test]"
  echo "$want" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"
cd "$ROOT"
