#!/bin/sh
# OSCAR's cowsay example script (grycap/oscar, examples/cowsay/script.sh, Apache-2.0): it needs
# jq and /usr/games/cowsay, which only the service's image has.

if [ "$INPUT_TYPE" = "json" ]
then
    jq '.message' "$INPUT_FILE_PATH" -r | /usr/games/cowsay
else
    cat "$INPUT_FILE_PATH" | /usr/games/cowsay
fi
