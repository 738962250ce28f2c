# SPDX-License-Identifier: MIT
#
# nginx.Dockerfile - a local stand-in for the official nginx image (compose pins
# nginx:1.26-bookworm), made from Debian's nginx-light package (1.22.1) on a Debian 12 base,
# for machines that cannot pull from a registry (scripts/container-test builds it and runs the
# compose stack with NGINX_IMAGE set to it).
#
# It keeps the part of the official image's contract that docker-compose.yml relies on: the
# configuration at /etc/nginx/nginx.conf (compose mounts nginx/nginx.conf there, and the
# certificates at /etc/nginx/certs), a user and group nginx (uid/gid 101) for `user nginx;`,
# /etc/nginx/conf.d, logs to the container's stdout and stderr, `nginx -g 'daemon off;'` as
# the command, STOPSIGNAL SIGQUIT, and the entrypoint's hooks: /etc/nginx/templates/*.template
# rendered with envsubst into /etc/nginx/conf.d, then the /docker-entrypoint.d scripts; temp
# files under /var/cache/nginx and the pid file under /var/run, so that it runs with a
# read-only root, tmpfs on those two and /tmp, and only the capabilities CHOWN,
# NET_BIND_SERVICE, SETGID and SETUID, as docker-compose.yml runs it.
# How it differs: Debian's build of 1.22 (nginx-light: fewer modules than nginx.org's, e.g. no
# njs, no stream; its compiled-in temp paths /var/lib/nginx/* reach /var/cache/nginx through a
# symbolic link), no default server in conf.d, and no IPv6 or worker_processes tuning scripts.

ARG BASE=debian:12-slim
FROM ${BASE}

RUN set -eux; \
    groupadd --system --gid 101 nginx; \
    useradd --system --gid nginx --uid 101 --no-create-home --home-dir /nonexistent \
        --shell /bin/false nginx; \
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; \
    chmod 755 /usr/sbin/policy-rc.d; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        nginx-light gettext-base; \
    rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d /etc/nginx/sites-enabled/*; \
    ln -sf /dev/stdout /var/log/nginx/access.log; \
    ln -sf /dev/stderr /var/log/nginx/error.log; \
    mkdir -p /docker-entrypoint.d /etc/nginx/conf.d

# The official image's temp directory, where compose mounts a tmpfs: the master makes the
# body, proxy, ... directories in it at start and hands them to the workers (CAP_CHOWN).
RUN set -eux; \
    mkdir -p /var/cache/nginx; \
    rm -rf /var/lib/nginx; \
    ln -s /var/cache/nginx /var/lib/nginx

COPY nginx-entrypoint.sh /docker-entrypoint.sh
ENTRYPOINT ["/docker-entrypoint.sh"]
EXPOSE 80
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
