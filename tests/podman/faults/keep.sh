ls /v > "$TMP_OUTPUT_DIR/seen.txt"
echo "$OSCAR_SERVICE_NAME" > "/v/$OSCAR_SERVICE_NAME"
