#!/bin/sh
# The official image builds redis-server with protected mode off; Debian's package keeps it on.
if [ "$1" = redis-server ]; then
    shift
    set -- redis-server --protected-mode no "$@"
fi
exec "$@"
