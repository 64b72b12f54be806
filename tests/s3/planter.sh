#!/bin/sh
# A hostile script: links out of its mounted bucket, to the host's root and to fogd's data folder.
set -e
if [ -n "$MOUNT_PATH" ]; then
  ln -sfn / "$MOUNT_PATH/hostroot"
  ln -sfn ../../.. "$MOUNT_PATH/up"
  ln -sfn /etc/hostname "$MOUNT_PATH/hostname"
  mkdir -p "$MOUNT_PATH/real"
  echo mine > "$MOUNT_PATH/real/file.txt"
fi
echo done > "$TMP_OUTPUT_DIR/done.txt"
