name=$(basename "$INPUT_FILE_PATH")
{ [ -n "$GREETING" ] && printf '%s ' "$GREETING"; cat "$INPUT_FILE_PATH"; } | tr a-z A-Z > "$TMP_OUTPUT_DIR/$name"
cat "$TMP_OUTPUT_DIR/$name"
