#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian 12 machine (run as root): Debian's QGIS stack + one venv that sees it.
# A warm rerun takes seconds. See README "Environment" for the traps each step avoids.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=0
for pkg in python3-qgis qgis python3-venv xvfb xauth; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need_apt=1
done
if [ "$need_apt" = 1 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends python3-qgis qgis python3-venv xvfb xauth >/dev/null
fi

# Debian's Python, not whatever python3 is first on PATH: QGIS's bindings are built for it.
if [ ! -x .venv/bin/python ]; then
  /usr/bin/python3 -m venv --system-site-packages .venv
fi
stamp=.venv/.requirements.sha256
want=$(cat requirements.txt constraints.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt -c constraints.txt 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
  echo "$want" > "$stamp"
fi
# Debian's python3-matplotlib (a QGIS dependency) makes mpl_toolkits, at start-up (its nspkg .pth), a namespace
# package of its own 3.6 copy alone: the venv's matplotlib then warned "Unable to import Axes3D" on every plot.
# Imported first, from the venv's .pth (processed before the system's), its own copy leads the package's path.
site=$(.venv/bin/python -c "import matplotlib, pathlib; print(pathlib.Path(matplotlib.__file__).parent.parent)")
if [ -d "$site/mpl_toolkits" ] && [ ! -f "$site/sar_compress_mpl_toolkits.pth" ]; then
  echo "import mpl_toolkits" > "$site/sar_compress_mpl_toolkits.pth"
fi
