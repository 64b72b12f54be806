#!/bin/sh
# A hostile script: looks for the node's data folder (two folders above its own work folder)
# and for other services' secrets, and says what it found.
data=$(cd ../.. && pwd)
{
  for f in journal.sqlite s3-keys gateway-admin; do
    if [ -r "$data/$f" ]; then echo "read $f"; fi
  done
  ls "$data" 2>/dev/null | sed 's/^/ls /'
  ls "$data/work" 2>/dev/null | sed 's/^/work /'
  ls "$data/store" 2>/dev/null | sed 's/^/store /'
  grep -l "s3cr3t-anon" /proc/[0-9]*/environ 2>/dev/null | sed 's/^/environ /'
  ps -e -o pid= 2>/dev/null | wc -l | sed 's/^/processes /'
  if [ -n "$MOUNT_PATH" ]; then ls "$MOUNT_PATH" | sed 's/^/mount /'; fi
  echo "input $(cat "$INPUT_FILE_PATH")"
} > "$TMP_OUTPUT_DIR/found.txt"
