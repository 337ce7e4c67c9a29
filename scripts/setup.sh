#!/usr/bin/env bash
# Set up a development or demo environment on Debian (Bookworm) or Raspberry Pi OS:
# the system packages the gateway and its tests use, then a virtual environment in .venv.
#   scripts/setup.sh          runtime only (the gateway)
#   scripts/setup.sh demo     plus what `anxin demo` emulates sensors with (a mock BlueZ)
#   scripts/setup.sh dev      plus the test tools
set -euo pipefail
cd "$(dirname "$0")/.."

extra="${1:-}"
apt_packages=(python3 python3-venv python3-dev gcc pkg-config mosquitto mosquitto-clients)
if [ "$extra" = "dev" ] || [ "$extra" = "demo" ]; then
  # dbus-daemon and dbus-python's build needs, for the mock BlueZ (python-dbusmock) that the
  # BLE tests and the demo's emulated button and door contact advertise into
  apt_packages+=(dbus libdbus-1-dev libglib2.0-dev)
fi
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip setuptools wheel
if [ "$extra" = "dev" ]; then
  .venv/bin/python -m pip install -q -e ".[dev]"
elif [ "$extra" = "demo" ]; then
  # Without the extra the demo still runs: it replays the BLE sensors instead (and says so).
  .venv/bin/python -m pip install -q -e ".[demo]" || {
    echo "setup: the demo extra did not install (python-dbusmock needs dbus-python built); installing without it"
    .venv/bin/python -m pip install -q -e .
  }
else
  .venv/bin/python -m pip install -q -e .
fi
echo "setup: done (.venv)"
