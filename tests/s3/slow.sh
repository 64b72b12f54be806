#!/bin/sh
# Takes its time, so that the raw item it reads is still there while the test tries to replace it.
sleep 5
echo ok > "$TMP_OUTPUT_DIR/ok.txt"
