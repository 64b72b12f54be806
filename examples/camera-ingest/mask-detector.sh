#!/bin/sh
exec fogd detect-masks "$INPUT_FILE_PATH" --out "$TMP_OUTPUT_DIR"
