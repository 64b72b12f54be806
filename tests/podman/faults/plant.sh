#!/bin/sh
# A hostile container (issue 30, finding 2): links out of its mounted bucket and its output
# folder, to the host's root and a host file. Paths inside the container mean the host's once
# fogd follows them.
set -e
ln -sfn / "$MOUNT_PATH/hostroot"
ln -sfn /etc/hostname "$MOUNT_PATH/hostname"
ln -sfn /etc/hostname "$TMP_OUTPUT_DIR/hostname"
echo mine > "$MOUNT_PATH/mine.txt"
echo done > "$TMP_OUTPUT_DIR/done.txt"
