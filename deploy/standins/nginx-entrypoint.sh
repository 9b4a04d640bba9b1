#!/bin/sh
# As the official nginx image's entrypoint: before starting nginx, run the scripts in /docker-entrypoint.d in
# version order, sourcing the executable *.envsh ones (so they can export variables) and running the *.sh ones.
set -eu
if [ "$1" = nginx ] || [ "$1" = nginx-debug ]; then
    for script in $(find /docker-entrypoint.d/ -follow -type f -print | sort -V); do
        case "$script" in
            *.envsh) if [ -x "$script" ]; then echo "$0: sourcing $script"; . "$script"; fi ;;
            *.sh) if [ -x "$script" ]; then echo "$0: running $script"; "$script"; fi ;;
        esac
    done
fi
exec "$@"
