# SPDX-License-Identifier: MIT
#
# postgres.Dockerfile - a local stand-in for the official postgres image (compose pins
# postgres:15.10-bookworm), made from Debian's postgresql-15 package on a Debian 12 base, for
# machines that cannot pull from a registry (scripts/container-test builds it and runs the
# compose stack with POSTGRES_IMAGE set to it).
#
# It keeps the part of the official image's contract that docker-compose.yml relies on:
#   - POSTGRES_USER (default postgres), POSTGRES_DB (default: the user), POSTGRES_PASSWORD,
#     each also as *_FILE (a secret file); POSTGRES_INITDB_ARGS, POSTGRES_HOST_AUTH_METHOD;
#   - first start on an empty PGDATA (/var/lib/postgresql/data, a volume): initdb with that
#     user as superuser and its password, `host all all all scram-sha-256`, listening on all
#     addresses; a temporary server on the Unix socket only runs CREATE DATABASE and the
#     /docker-entrypoint-initdb.d scripts (*.sh executed or sourced, *.sql, *.sql.gz);
#   - user postgres with uid/gid 999: started as root it drops to that user; started as that
#     user (compose's `user: "999:999"`, read-only root, tmpfs on /var/run/postgresql and
#     /tmp) it needs no capability; pg_isready and the server binaries on PATH (the compose
#     healthcheck calls pg_isready); STOPSIGNAL SIGINT.
# How it differs: Debian's build of PostgreSQL 15 (the official image uses the PGDG one), the
# C.UTF-8 locale instead of en_US.utf8, setpriv instead of gosu, no POSTGRES_INITDB_WALDIR,
# no *.sql.xz/*.sql.zst init scripts, and no check for a data directory from another version.
# The image has no /var/run/postgresql (the socket's directory): the entrypoint makes it when
# started as root, compose mounts a tmpfs there. Podman 4.3 gives a read-only container a tmpfs
# of its own on /run (where /var/run points); a tmpfs mounted below it on a directory the image
# has then comes up owned by root with mode 1755, which uid 999 cannot write; on one the image
# lacks, with mode 1777, as Docker makes every tmpfs.

ARG BASE=debian:12-slim
FROM ${BASE}

RUN set -eux; \
    groupadd --system --gid 999 postgres; \
    useradd --system --gid postgres --uid 999 --home-dir /var/lib/postgresql \
        --shell /bin/bash postgres; \
    mkdir -p /var/lib/postgresql; \
    chown postgres:postgres /var/lib/postgresql; \
    # No cluster of Debian's own (pg_createcluster): the entrypoint makes one in PGDATA.
    mkdir -p /etc/postgresql-common/createcluster.d; \
    echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.d/stand-in.conf; \
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; \
    chmod 755 /usr/sbin/policy-rc.d; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15; \
    rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d

ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data \
    LANG=C.UTF-8

RUN set -eux; \
    mkdir -p /docker-entrypoint-initdb.d "$PGDATA"; \
    rm -rf /run/postgresql; \
    chown postgres:postgres "$PGDATA"; \
    chmod 700 "$PGDATA"

COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
VOLUME /var/lib/postgresql/data
ENTRYPOINT ["docker-entrypoint.sh"]
STOPSIGNAL SIGINT
EXPOSE 5432
CMD ["postgres"]
