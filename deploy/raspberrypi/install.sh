#!/usr/bin/env bash
# Install the gateway on Raspberry Pi OS Bookworm: run as root from a checkout.
#   sudo deploy/raspberrypi/install.sh
set -euo pipefail
[ "$(id -u)" -eq 0 ] || { echo "install.sh: run as root (sudo)" >&2; exit 1; }
src="$(cd "$(dirname "$0")/../.." && pwd)"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv python3-dev gcc bluez
id anxin >/dev/null 2>&1 || useradd --system --home /var/lib/anxin --shell /usr/sbin/nologin anxin
usermod -aG dialout,bluetooth anxin
install -d -m 755 /opt/anxin /etc/anxin
cp -a "$src/." /opt/anxin/
python3 -m venv /opt/anxin/.venv
/opt/anxin/.venv/bin/pip install -q "/opt/anxin[pi]"
if [ ! -f /etc/anxin/gateway.toml ]; then
  install -m 644 "$src/examples/gateway.toml" /etc/anxin/gateway.toml
  echo "install.sh: edit /etc/anxin/gateway.toml (gateway id, rooms, sensors)"
fi
if [ ! -f /etc/anxin/secrets.toml ]; then
  install -m 600 -o anxin -g anxin "$src/examples/secrets.toml" /etc/anxin/secrets.toml
fi
install -m 644 "$src/deploy/raspberrypi/anxin.service" /etc/systemd/system/anxin.service
install -m 644 "$src/deploy/raspberrypi/anxin-provision.service" /etc/systemd/system/anxin-provision.service
install -m 644 "$src/deploy/raspberrypi/99-anxin.rules" /etc/udev/rules.d/99-anxin.rules
udevadm control --reload-rules && udevadm trigger --subsystem-match=tty || true
systemctl daemon-reload
systemctl enable anxin-provision.service
/opt/anxin/.venv/bin/anxin config check --config /etc/anxin/gateway.toml
systemctl enable --now anxin.service
echo "install.sh: anxin is running: journalctl -u anxin -f"
