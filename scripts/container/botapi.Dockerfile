# SPDX-License-Identifier: MIT
#
# botapi.Dockerfile - Python for the Bot API stand-in (tests/standin/botapi.py, standard
# library only) as a container on the compose stack's frontend network. scripts/container-test
# mounts the script and its certificate; see scripts/container/compose.podman.yml.

ARG BASE=debian:12-slim
FROM ${BASE}

RUN set -eux; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3; \
    rm -rf /var/lib/apt/lists/*

ENTRYPOINT ["python3"]
