#!/bin/sh
# FaaS Supervisor contract: the input is $INPUT_FILE_PATH; everything written under
# $TMP_OUTPUT_DIR is stored under the output path.
exec fogd anonymize "$INPUT_FILE_PATH" --out "$TMP_OUTPUT_DIR" --every 5s --classify-masks
