#!/usr/bin/env bash
# Creates the second virtualenv the interop tests use: a ZEO 5.4 client
# (./.venv-zeo54 at the repository top, or $ZEORAID_VENV_ZEO54) from
# interop/requirements-zeo54.txt. Safe to run again: it only reinstalls
# when the requirements changed.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
venv=${ZEORAID_VENV_ZEO54:-$top/.venv-zeo54}
req=$top/interop/requirements-zeo54.txt
stamp=$venv/.requirements
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && cmp -s "$req" "$stamp"; then
  exit 0
fi
echo "interop: creating $venv with ZEO 5.4 from $req" >&2
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
cp "$req" "$stamp"
