#!/usr/bin/env bash
# Set up a fresh Debian/Ubuntu machine (Python 3.11+) to run and test streamproc:
# Mosquitto from Debian's packages, and a virtualenv in .venv with streamproc installed.
# Idempotent: a second run only checks. Options:
#   --with-prometheus   also install Prometheus (promtool) and systemd (systemd-analyze):
#                       the deploy/ tests use them
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(mosquitto mosquitto-clients openssl python3-venv)
[[ "${1:-}" == "--with-prometheus" ]] && packages+=(prometheus systemd)

missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  echo "installing ${missing[*]} from Debian's packages" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  # Debian starts a system-wide mosquitto on port 1883; streamproc starts its own when it
  # needs one, so the system service is left as the package configured it.
fi

python=${PYTHON:-python3}
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "streamproc needs Python 3.11 or newer; set PYTHON=python3.11" >&2; exit 1; }
[[ -x .venv/bin/python ]] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
