#!/usr/bin/env bash
# Build the endogs wheel, install it into a fresh virtual environment (CPU torch first) and run
# the installed `endogs` from a directory outside the checkout: the presets must ship in the
# package, the viewer (endogs.viewer) must import and `endogs view --help` run, and the wheel must
# hold only the endogs namespace.
#   scripts/wheel_check.sh            (PYTHON=python3.11 to pick the interpreter)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

echo "wheel check: building in $WORK"
"$PYTHON" -m venv "$WORK/venv"
VPY="$WORK/venv/bin/python"
"$VPY" -m pip install -q -r "$ROOT/requirements-cpu.txt"
"$VPY" -m pip wheel -q --no-deps --wheel-dir "$WORK/dist" "$ROOT"
WHEEL="$(ls "$WORK"/dist/endogs-*.whl)"
"$VPY" - "$WHEEL" <<'PY'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
top = sorted({n.split("/")[0] for n in names})
bad = [t for t in top if t != "endogs" and not t.endswith(".dist-info")]
if bad:
    sys.exit(f"wheel check: the wheel installs top-level {bad}; only endogs belongs there")
if "endogs/configs/demo.yaml" not in names:
    sys.exit("wheel check: the wheel lacks the presets (endogs/configs/*.yaml)")
if "endogs/viewer/app.py" not in names:
    sys.exit("wheel check: the wheel lacks the viewer (endogs/viewer/)")
print(f"wheel check: {len(names)} files, top level {top}")
PY
"$VPY" -m pip install -q "$WHEEL"
ENDOGS="$WORK/venv/bin/endogs"

cd "$WORK"  # outside the checkout: nothing may resolve from the source tree
"$VPY" -c "import endogs, sys; assert '$ROOT' not in endogs.__file__, endogs.__file__"
"$VPY" -c "import endogs.viewer.app, endogs.viewer.cli, endogs.viewer.live; assert '$ROOT' not in endogs.viewer.app.__file__"
"$ENDOGS" view --help > view-help.txt
grep -q "usage: endogs view" view-help.txt
"$ENDOGS" synthetic scene --width 64 --height 48 --n-frames 8
"$ENDOGS" info scene
"$ENDOGS" train scene --preset demo --iterations 20 --output run --quiet
test -s run/checkpoint.pt && test -s run/log.jsonl
grep -q '"event": "done"' run/log.jsonl
echo "wheel check: passed"
