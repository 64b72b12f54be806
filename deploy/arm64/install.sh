#!/usr/bin/env bash
# Installs fogd as a systemd service on Raspberry Pi OS / Debian (arm64 or x86_64).
# Usage (as root, from the checkout, after building): deploy/arm64/install.sh [PATH/TO/fogd]
#   - a `fogd` system user, /usr/local/bin/fogd, /etc/fogd/fogd.yaml (kept if present),
#     /var/lib/fogd (StateDirectory), the ONNX Runtime library from scripts/setup,
#     the unit fogd.service, enabled and started.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
arch=$(uname -m)
bin=${1:-}
if [ -z "$bin" ]; then
  for c in "$root/target/release/fogd" "$root/target/aarch64-unknown-linux-gnu/release/fogd"; do
    if [ -x "$c" ] && file "$c" | grep -q "$( [ "$arch" = aarch64 ] && echo aarch64 || echo x86-64)"; then bin=$c; break; fi
  done
fi
[ -n "$bin" ] && [ -x "$bin" ] || { echo "install: build fogd first (cargo build --release), or give its path" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "install: run as root" >&2; exit 2; }

id fogd >/dev/null 2>&1 || useradd --system --home-dir /var/lib/fogd --shell /usr/sbin/nologin fogd
install -m 0755 "$bin" /usr/local/bin/fogd
install -d -m 0755 /etc/fogd
[ -f /etc/fogd/fogd.yaml ] || install -m 0644 "$here/fogd.yaml" /etc/fogd/fogd.yaml
ort=/usr/local/lib/fogd/onnxruntime/$arch/libonnxruntime.so
[ -f "$ort" ] || echo "install: no $ort (run scripts/setup): the vision functions will not load models"
install -m 0644 "$here/fogd.service" /etc/systemd/system/fogd.service
systemctl daemon-reload
systemctl enable --now fogd.service
echo "install: fogd running; its admin password is in: journalctl -u fogd | grep 'shown once'"
echo "install: check with: sudo -u fogd fogd --config /etc/fogd/fogd.yaml check"
