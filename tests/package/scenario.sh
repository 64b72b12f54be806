#!/bin/bash
# Runs inside a clean Debian 12 chroot (made by tests/package/run), as root, in its own PID
# namespace, with no systemd: the fogd package installed with apt, used, upgraded with a
# modified conffile and a running daemon, then purged. Each step says what it checks; the first
# failure stops it.
set -euo pipefail
deb1=$1 deb2=$2
export DEBIAN_FRONTEND=noninteractive
step() { printf '== %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
as_fogd() { runuser -u fogd -- "$@"; }
cfg=(--config /etc/fogd/fogd.yaml)
# The PIDs of processes running this package's binaries.
ours() {
  for d in /proc/[0-9]*; do
    e=$(readlink "$d/exe" 2>/dev/null) || continue
    case "$e" in /usr/bin/fogd|/usr/bin/fogd-vision) echo "${d#/proc/}" ;; esac
  done
}
start() {
  as_fogd fogd "${cfg[@]}" run > "/tmp/run-$1.log" 2>&1 &
  # Up once its API lists the workflow's service (`put` reads the services the daemon registered).
  for _ in $(seq 300); do
    if [ -s /var/lib/fogd/gateway-admin-password ] \
       && FOGD_PASSWORD=$(cat /var/lib/fogd/gateway-admin-password) fogd services \
            --endpoint http://127.0.0.1:8080 2>/dev/null | grep -q copy; then
      return 0
    fi
    sleep 0.1
  done
  cat "/tmp/run-$1.log" >&2
  fail "fogd run did not start"
}
# Waits until service `copy` has $1 succeeded jobs.
succeeded() {
  for _ in $(seq 300); do
    n=$(as_fogd fogd "${cfg[@]}" jobs copy 2>/dev/null | grep -c succeeded || true)
    [ "$n" -ge "$1" ] && return 0
    sleep 0.1
  done
  as_fogd fogd "${cfg[@]}" jobs copy >&2 || true
  fail "$1 succeeded job(s) of copy expected"
}

step "apt install ./$(basename "$deb1") on a clean Debian 12 (Depends and Recommends fetched by apt)"
apt-get update -qq
# As the README says it, so with the Recommends (ffmpeg, which `fogd sample` and so the demo use).
# That the Depends alone are enough for the binaries is shown on arm64 (tests/vision_arm64.rs).
apt-get install -y -qq "$deb1" > /tmp/apt-install.log 2>&1 || { cat /tmp/apt-install.log; fail "apt install"; }
grep -q "gateway-admin-password" /tmp/apt-install.log || fail "postinst did not tell where the admin password is"
fogd --version
getent passwd fogd | grep -q ':/var/lib/fogd:/usr/sbin/nologin$' || fail "no fogd system user"
[ "$(stat -c '%U %a' /var/lib/fogd)" = "fogd 700" ] || fail "/var/lib/fogd: $(stat -c '%U %a' /var/lib/fogd)"
[ -f /lib/systemd/system/fogd.service ] && grep -q '^ExecStart=/usr/bin/fogd ' /lib/systemd/system/fogd.service \
  || fail "the unit does not run /usr/bin/fogd"

step "fogd check: all ok, models and ONNX Runtime found at their installed paths, no environment"
env | grep -E '^(FOGD_|ORT_)' && fail "FOGD_/ORT_ variables set"
as_fogd fogd "${cfg[@]}" check > /tmp/check.txt 2>&1 || { cat /tmp/check.txt; fail "fogd check"; }
cat /tmp/check.txt
grep -q "/usr/lib/fogd/libonnxruntime.so" /tmp/check.txt || fail "check does not name the package's ONNX Runtime"
grep -q "/usr/share/fogd/models" /tmp/check.txt || fail "check does not name the package's models"

step "fogd demo from the installed binaries"
(cd /tmp && fogd demo --seconds 10 --every 2s > /tmp/demo.txt 2>&1) || { cat /tmp/demo.txt; fail "fogd demo"; }
tail -n 12 /tmp/demo.txt
grep -qi "no face left" /tmp/demo.txt || grep -qi "judged" /tmp/demo.txt || fail "demo printed no summary"

step "the node runs as the fogd user and ingests; the admin password is a 0600 file"
mkdir -p /etc/fogd/workflows
cat > /etc/fogd/workflows/copy.yaml <<'FDL'
functions:
  oscar:
  - edge:
      name: copy
      image: debian:bookworm-slim
      script: copy.sh
      input: [{storage_provider: minio, path: frames/in}]
      output: [{storage_provider: minio, path: frames/out}]
FDL
printf 'cp "$INPUT_FILE_PATH" "$TMP_OUTPUT_DIR/"\n' > /etc/fogd/workflows/copy.sh
# The operator's change to the conffile: it must survive the upgrade.
sed -i 's#^workflows: \[\].*#workflows: [/etc/fogd/workflows/copy.yaml]  \# changed by the operator#' /etc/fogd/fogd.yaml
grep -q "changed by the operator" /etc/fogd/fogd.yaml || fail "could not edit fogd.yaml"
start 1
[ "$(stat -c '%U %a' /var/lib/fogd/gateway-admin-password)" = "fogd 600" ] || fail "password file: $(stat -c '%U %a' /var/lib/fogd/gateway-admin-password)"
echo "first frame" > /tmp/one.txt
as_fogd fogd "${cfg[@]}" put minio/frames/in/ /tmp/one.txt
succeeded 1
[ "$(cat /var/lib/fogd/store/frames/out/one.txt)" = "first frame" ] || fail "no output"
pass1=$(cat /var/lib/fogd/gateway-admin-password)

step "upgrade to $(basename "$deb2") while fogd runs: stopped by prerm, journal and config kept"
apt-get install -y -qq "$deb2" > /tmp/apt-upgrade.log 2>&1 || { cat /tmp/apt-upgrade.log; fail "apt upgrade"; }
[ -z "$(ours)" ] || fail "fogd still running after the upgrade's prerm: $(ours)"
dpkg-query -W -f='${Version}\n' fogd | grep -q upgrade || fail "not upgraded"
grep -q "changed by the operator" /etc/fogd/fogd.yaml || fail "the upgrade replaced the operator's fogd.yaml"
[ "$(cat /var/lib/fogd/gateway-admin-password)" = "$pass1" ] || fail "the admin password changed"
start 2
succeeded 1
echo "second frame" > /tmp/two.txt
as_fogd fogd "${cfg[@]}" put minio/frames/in/ /tmp/two.txt
succeeded 2
as_fogd fogd "${cfg[@]}" jobs copy

step "purge: no process left, state and config gone"
apt-get purge -y -qq fogd > /tmp/apt-purge.log 2>&1 || { cat /tmp/apt-purge.log; fail "apt purge"; }
[ -z "$(ours)" ] || fail "processes left after purge: $(ours)"
for p in /usr/bin/fogd /usr/bin/fogd-vision /usr/lib/fogd /usr/share/fogd /var/lib/fogd /etc/fogd; do
  [ ! -e "$p" ] || fail "$p left after purge"
done
echo "package scenario: passed"
