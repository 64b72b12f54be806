#!/bin/sh
# An anonymised frame (it carries the anonymiser's report: faces, masks judged before blurring) ->
# the frame's verdict (counts, the share without a mask, Safe / Warning / Danger, or Not judged
# when masks were not classified) and the frame annotated with it. Results keep the video's folder.
rel=$(dirname "${STORAGE_OBJECT_KEY#anonymised/}")
exec fogd detect-masks "$INPUT_FILE_PATH" --out "$TMP_OUTPUT_DIR/$rel"
