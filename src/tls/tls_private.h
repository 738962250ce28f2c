/* SPDX-License-Identifier: MIT */
/*
 * tls_private.h - the context shared by tls.c (connections, session cache)
 * and anchors.c (loading the trust anchors).
 */
#ifndef TGRING_TLS_PRIVATE_H
#define TGRING_TLS_PRIVATE_H

#include "tls.h"

#include <bearssl.h>

/* The last session negotiated with one server (name and port). */
typedef struct tls_session_slot {
    char name[256];                   /* server name; unused slot when stamp == 0 */
    uint16_t port;                    /* server port */
    br_ssl_session_parameters params; /* includes the master secret: wiped on drop */
    uint64_t stamp;                   /* store order, for replacing the oldest */
} tls_session_slot_t;

struct tls_ctx {
    br_x509_trust_anchor *anchors; /* DN and key bytes owned here */
    size_t nanchors;
    size_t cap; /* slots allocated in anchors */
    tls_ctx_info_t info;
    tls_session_slot_t sessions[TLS_SESSION_CACHE];
    uint64_t session_clock; /* last stamp given */
};

#endif
