#!/bin/sh
# FaaS Supervisor contract: the input is $INPUT_FILE_PATH; everything written under
# $TMP_OUTPUT_DIR is stored under the output paths. The camera's folder is kept: an item from
# cameras/incoming/door/ goes to cameras/anonymised/door/ (a video gets a folder of its own).
rel=$(dirname "${STORAGE_OBJECT_KEY#incoming/}")
exec fogd anonymize "$INPUT_FILE_PATH" --out "$TMP_OUTPUT_DIR/$rel" --every 5s --classify-masks
