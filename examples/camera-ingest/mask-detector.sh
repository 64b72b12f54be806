#!/bin/sh
# The anonymiser's sidecar of a frame (faces, masks judged before blurring) -> the frame's verdict:
# counts, the share without a mask, Safe / Warning / Danger. Results keep the video's folder.
rel=$(dirname "${STORAGE_OBJECT_KEY#anonymised/}")
exec fogd detect-masks "$INPUT_FILE_PATH" --out "$TMP_OUTPUT_DIR/$rel"
