#!/bin/sh
# SPDX-License-Identifier: MIT
# Makes the certificates the tls and httpc tests use, in directory $1, with
# the openssl command line tool:
#   ca.pem            test CA (EC P-256)
#   server.pem/.key   "localhost" (SAN DNS:localhost, IP:127.0.0.1) by ca, EC key
#   rsa.pem/.key      the same name by ca, RSA 2048 key (ECDHE_RSA suites)
#   other-ca.pem      another CA; other.pem/.key: "localhost" by other-ca
#   wrong.pem         "wrong.example" by ca, with server.key
#   expired.pem       "localhost" by ca, already expired, with server.key
set -eu
cd "$1"
q() { "$@" >/dev/null 2>&1; }

printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:false\n' > localhost.ext
printf 'subjectAltName=DNS:wrong.example\nbasicConstraints=CA:false\n' > wrong.ext

mkca() { # name subject
    q openssl ecparam -name prime256v1 -genkey -noout -out "$1.key"
    q openssl req -new -x509 -key "$1.key" -subj "/CN=$2" -days 3650 -out "$1.pem" \
        -addext basicConstraints=critical,CA:true -addext keyUsage=critical,keyCertSign,cRLSign
}
sign() { # out key ca ext subject days serial
    q openssl req -new -key "$2" -subj "/CN=$5" -out "$1.csr"
    q openssl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" -set_serial "$7" \
        -days "$6" -extfile "$4" -out "$1.pem"
}

mkca ca "tgring test CA"
mkca other-ca "tgring other CA"
q openssl ecparam -name prime256v1 -genkey -noout -out server.key
q openssl ecparam -name prime256v1 -genkey -noout -out other.key
q openssl genrsa -out rsa.key 2048
sign server server.key ca localhost.ext localhost 365 2
sign rsa rsa.key ca localhost.ext localhost 365 3
sign other other.key other-ca localhost.ext localhost 365 4
sign wrong server.key ca wrong.ext wrong.example 365 5
# -days -1 gives notAfter before notBefore: expired from the start.
sign expired server.key ca localhost.ext localhost -1 6
rm -f ./*.csr
