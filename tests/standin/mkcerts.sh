#!/bin/sh
# SPDX-License-Identifier: MIT
#
# mkcerts.sh DIR - makes the certificates the Bot API stand-in and the TLS
# tests use, with the openssl CLI, into DIR (created if missing):
#   ca.pem, ca.key                the test CA (give ca.pem as TELEGRAM_CA_FILE)
#   server.pem, server.key        signed by it, for localhost and IP 127.0.0.1
#   other-ca.pem, other-ca.key    a second CA that nobody trusts
#   server-other.pem/.key         localhost and 127.0.0.1, signed by other-ca
#   wrong-host.pem/.key           signed by the test CA, for example.invalid only
#   expired.pem/.key              signed by the test CA, for localhost, expired in 2021
# RSA 2048 keys with SHA-256 signatures, as api.telegram.org has; KEY=ec
# makes ECDSA P-256 keys instead. Existing files are overwritten.
set -eu

if [ $# -ne 1 ]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi
dir=$1
mkdir -p "$dir"
cd "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

newkey() {
    if [ "${KEY:-rsa}" = ec ]; then
        openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
    else
        openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1" 2>/dev/null
    fi
    chmod 600 "$1"
}

# ca NAME SUBJECT: a self-signed CA.
ca() {
    newkey "$1.key"
    openssl req -x509 -new -key "$1.key" -sha256 -days 3650 -subj "/CN=$2" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectKeyIdentifier=hash" \
        -out "$1.pem"
}

# leaf NAME CA SAN [openssl ca dates]: a server certificate signed by CA.
leaf() {
    name=$1 issuer=$2 san=$3
    cn=${san#DNS:}
    cn=${cn%%,*}
    newkey "$name.key"
    openssl req -new -key "$name.key" -subj "/CN=$cn" -out "$tmp/$name.csr"
    cat >"$tmp/$name.ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=$san
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EOF
    openssl x509 -req -in "$tmp/$name.csr" -CA "$issuer.pem" -CAkey "$issuer.key" \
        -CAcreateserial -CAserial "$tmp/$issuer.srl" -sha256 -days 825 \
        -extfile "$tmp/$name.ext" -out "$name.pem" 2>/dev/null
}

# expired NAME CA SAN: like leaf, valid only from 2020 to 2021 (openssl x509 cannot
# backdate, so this goes through a minimal `openssl ca`).
expired() {
    name=$1 issuer=$2 san=$3
    cn=${san#DNS:}
    cn=${cn%%,*}
    newkey "$name.key"
    openssl req -new -key "$name.key" -subj "/CN=$cn" -out "$tmp/$name.csr"
    : >"$tmp/index.txt"
    cat >"$tmp/ca.cnf" <<EOF
[ca]
default_ca = test
[test]
database = $tmp/index.txt
new_certs_dir = $tmp
serial = $tmp/serial
default_md = sha256
policy = any
copy_extensions = none
x509_extensions = ext
unique_subject = no
[any]
commonName = supplied
[ext]
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=$san
EOF
    echo 1000 >"$tmp/serial"
    openssl ca -batch -config "$tmp/ca.cnf" -cert "$issuer.pem" -keyfile "$issuer.key" \
        -startdate 20200101000000Z -enddate 20210101000000Z -notext \
        -in "$tmp/$name.csr" -out "$name.pem" 2>/dev/null
}

ca ca "tgring test CA"
ca other-ca "tgring untrusted CA"
leaf server ca "DNS:localhost,IP:127.0.0.1"
leaf server-other other-ca "DNS:localhost,IP:127.0.0.1"
leaf wrong-host ca "DNS:example.invalid"
expired expired ca "DNS:localhost,IP:127.0.0.1"
chmod 644 ./*.pem
