#!/usr/bin/env bash
# Installs fogd as a systemd service on Raspberry Pi OS / Debian (arm64 or x86_64).
# Usage (as root, from the checkout, after building): deploy/arm64/install.sh [PATH/TO/fogd]
#   - a `fogd` system user, /usr/local/bin/fogd, /etc/fogd/fogd.yaml (kept if present),
#     /var/lib/fogd (StateDirectory), the ONNX Runtime library from scripts/setup, fogd-vision
#     with the models and sample photos in /usr/local/share/fogd,
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
# The vision commands live in fogd-vision (it links OpenCV), with the models and sample photos.
vision=$(dirname "$bin")/fogd-vision
if [ -x "$vision" ]; then
  install -m 0755 "$vision" /usr/local/bin/fogd-vision
  install -d -m 0755 /usr/local/share/fogd/models /usr/local/share/fogd/media
  install -m 0644 "$root"/models/*.onnx "$root"/models/README.md /usr/local/share/fogd/models/
  install -m 0644 "$root"/examples/camera-ingest/media/* /usr/local/share/fogd/media/
else
  echo "install: no $vision (built without the vision feature): anonymize and detect-masks are absent"
fi
install -d -m 0755 /etc/fogd
[ -f /etc/fogd/fogd.yaml ] || install -m 0644 "$here/fogd.yaml" /etc/fogd/fogd.yaml
ort=/usr/local/lib/fogd/onnxruntime/$arch/libonnxruntime.so
[ -f "$ort" ] || echo "install: no $ort (run scripts/setup): the vision functions will not load models"
install -m 0644 "$here/fogd.service" /etc/systemd/system/fogd.service
systemctl daemon-reload
systemctl enable --now fogd.service
echo "install: fogd running; its generated admin password: sudo cat /var/lib/fogd/gateway-admin-password (then delete that file)"
echo "install: check with: sudo -u fogd fogd --config /etc/fogd/fogd.yaml check"
