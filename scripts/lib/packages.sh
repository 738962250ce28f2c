# SPDX-License-Identifier: MIT
#
# scripts/lib/packages.sh - sourced by the scripts that install what they
# need: install_missing PKG... installs the Debian packages among its
# arguments that are not installed yet (apt-get update first, no recommends;
# through sudo when not root). With SKIP_INSTALL=1 it installs nothing and
# fails, naming what is missing.

install_missing() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed ||
            missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "${SKIP_INSTALL:-0}" = 1 ]; then
        echo "${0##*/}: missing packages (SKIP_INSTALL=1): ${missing[*]}" >&2
        return 1
    fi
    local sudo=()
    [ "$(id -u)" -ne 0 ] && sudo=(sudo)
    echo "${0##*/}: installing ${missing[*]}" >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    # Installing postgresql must not start Debian's own cluster in a
    # container without an init system; the scripts run their own.
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends "${missing[@]}" </dev/null
}
