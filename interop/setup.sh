#!/usr/bin/env bash
# Creates the virtualenv the interop tests use (./.venv at the repository
# top, or $ZEORAID_VENV) and installs the pinned Python peers into it. Safe to
# run again: it only reinstalls when requirements.txt changed.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
venv=${ZEORAID_VENV:-$top/.venv}
req=$top/interop/requirements.txt
stamp=$venv/.requirements
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && cmp -s "$req" "$stamp"; then
  exit 0
fi
echo "interop: creating $venv with ZODB/ZEO from $req" >&2
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
cp "$req" "$stamp"
