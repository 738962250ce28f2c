#!/bin/sh
# SPDX-License-Identifier: MIT
#
# nginx-entrypoint.sh - entrypoint of the nginx stand-in image (nginx.Dockerfile): what the
# official image's /docker-entrypoint.sh does before it runs nginx. Templates first
# (NGINX_ENVSUBST_TEMPLATE_DIR/*NGINX_ENVSUBST_TEMPLATE_SUFFIX rendered with the defined
# variables only, into NGINX_ENVSUBST_OUTPUT_DIR), then /docker-entrypoint.d: *.envsh
# sourced, *.sh run when executable.
set -eu

if [ "$1" = nginx ] || [ "$1" = nginx-debug ]; then
    tdir=${NGINX_ENVSUBST_TEMPLATE_DIR:-/etc/nginx/templates}
    suffix=${NGINX_ENVSUBST_TEMPLATE_SUFFIX:-.template}
    odir=${NGINX_ENVSUBST_OUTPUT_DIR:-/etc/nginx/conf.d}
    if [ -d "$tdir" ]; then
        defined=$(printf '${%s} ' $(env | cut -d= -f1))
        for t in "$tdir"/*"$suffix"; do
            [ -f "$t" ] || continue
            out=$odir/$(basename "$t" "$suffix")
            echo "$0: rendering $t to $out"
            envsubst "$defined" <"$t" >"$out"
        done
    fi
    for f in /docker-entrypoint.d/*; do
        case $f in
        *.envsh)
            echo "$0: sourcing $f"
            # shellcheck disable=SC1090
            . "$f"
            ;;
        *.sh)
            if [ -x "$f" ]; then
                echo "$0: running $f"
                "$f"
            else
                echo "$0: ignoring $f, not executable"
            fi
            ;;
        esac
    done
fi

exec "$@"
