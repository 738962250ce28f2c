# SPDX-License-Identifier: MIT
#
# Dockerfile - the tgring image: built and run on Debian 12 (bookworm) with Debian's packages
# only, so the libraries at run time are the ones the binary was built against.
#
#   docker build -t tgring .        (podman: add --format docker, or HEALTHCHECK is dropped)
#
# The image runs `tgring serve` as an unprivileged user, listening on 0.0.0.0:8080. io_uring
# must be allowed by the container's seccomp profile: see seccomp/tgring.json and
# docker-compose.yml.
#
# BASE is the Debian 12 image both stages start from. The default is Docker Hub's; a machine
# without a registry passes a local one (scripts/container-test: --build-arg BASE=...).

ARG BASE=debian:12-slim

FROM ${BASE} AS build

RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        gcc libc6-dev meson ninja-build pkg-config python3 \
        liburing-dev libbearssl-dev libpq-dev libjsmn-dev libjansson-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .
# Release optimisation with assertions kept on (house rule). Only the server binary is built:
# the test programs need a PostgreSQL server and tools the image has no use for.
RUN meson setup build --buildtype=release -Db_ndebug=false \
 && meson compile -C build tgring \
 && ./build/tgring version

FROM ${BASE}

RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        liburing2 libbearssl0 libpq5 libjansson4 ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# A fixed uid/gid, so that secret files on the host can be made readable to exactly this user.
RUN groupadd --gid 10001 tgring \
 && useradd --uid 10001 --gid tgring --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin tgring

COPY --from=build /src/build/tgring /usr/local/bin/tgring
# Fails the build if a shared library the binary needs is missing from this stage.
RUN ["tgring", "version"]

USER tgring
ENV TGRING_LISTEN=0.0.0.0:8080
EXPOSE 8080

HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["tgring", "healthcheck"]

ENTRYPOINT ["tgring"]
CMD ["serve"]
