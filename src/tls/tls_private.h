/* SPDX-License-Identifier: MIT */
/*
 * tls_private.h - the context shared by tls.c (connections, session cache,
 * the implementations connections use) and anchors.c (loading the trust
 * anchors).
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

/*
 * The implementations every connection is configured with, chosen once per
 * context: BearSSL's own "default" helpers probe the CPU (CPUID) on every
 * call, and in a VM each probe traps to the hypervisor.
 */
typedef struct tls_impl {
    const br_block_ctr_class *aes_ctr; /* AES-CTR for GCM: AES-NI when the CPU has it */
    br_ghash ghash;                    /* GHASH for GCM: PCLMULQDQ when the CPU has it */
    br_chacha20_run chacha20;          /* SSE2 when available */
    br_poly1305_run poly1305;          /* 64x64->128 multiplications when available */
    const br_ec_impl *ec;              /* ECDHE and ECDSA curves */
    br_ecdsa_vrfy ecdsa;               /* ECDSA signatures, ASN.1 format */
    br_rsa_pkcs1_vrfy rsavrfy;         /* RSA PKCS#1 v1.5 signatures */
} tls_impl_t;

/* Fills *im with the fastest implementations this CPU runs (tls.c). */
void tls_impl_lookup(tls_impl_t *im);

struct tls_ctx {
    br_x509_trust_anchor *anchors; /* DN and key bytes owned here */
    size_t nanchors;
    size_t cap; /* slots allocated in anchors */
    tls_ctx_info_t info;
    tls_session_slot_t sessions[TLS_SESSION_CACHE];
    uint64_t session_clock; /* last stamp given */
    tls_impl_t impl;        /* looked up when the context is made */
};

#endif
