#!/bin/sh
# Publishes a sample clip and a few frames to the broker, as a camera would (QoS 1).
#   examples/camera-ingest/publish.sh [BROKER_HOST] [PORT] [CAMERA]
# Needs mosquitto_pub (Debian: mosquitto-clients) and fogd on PATH (for `fogd sample`).
set -eu
host=${1:-127.0.0.1}
port=${2:-1883}
cam=${3:-door}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fogd sample --seconds 20 --out "$tmp/clip.mp4" >/dev/null
mosquitto_pub -h "$host" -p "$port" -q 1 -t "fogd/cameras/$cam/clip" -f "$tmp/clip.mp4"
for f in "$here/media/grace_hopper.jpg"; do
  mosquitto_pub -h "$host" -p "$port" -q 1 -t "fogd/cameras/$cam/frame" -f "$f"
done
echo "published a 20 s clip and a frame for camera $cam to $host:$port"
