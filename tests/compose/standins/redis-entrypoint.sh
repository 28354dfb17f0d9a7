#!/bin/sh
# As the official image: redis-server runs as redis, listening on every interface (the official
# image ships no config file; Debian's binary defaults to protected mode without one).
set -eu
if [ "$1" = redis-server ]; then
    shift
    chown -R redis:redis /data
    exec setpriv --reuid=redis --regid=redis --init-groups \
        redis-server --bind '* -::*' --protected-mode no "$@"
fi
exec "$@"
