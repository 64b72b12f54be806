n=$(cat /state/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /state/n
echo "$n $GREETING $TOKEN $(nproc)" > "$TMP_OUTPUT_DIR/$(basename "$INPUT_FILE_PATH").out"
