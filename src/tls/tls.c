/* SPDX-License-Identifier: MIT */
/*
 * tls.c - BearSSL client connections without I/O of their own, a per-name
 * session cache, and the names of BearSSL's error codes.
 *
 * The engine is configured once per connection: TLS 1.2 only, ECDHE with
 * AEAD suites only, no renegotiation, a full-size bidirectional buffer,
 * with implementations the context chose once (no CPU probing per
 * connection) and getrandom() as the only source of randomness. The X.509
 * minimal engine is wrapped by a small class that notes whether a
 * certificate chain was presented at all: in TLS 1.2 an abbreviated
 * (resumed) handshake sends no Certificate message, so a handshake that
 * completes without the chain being started is a resumed one.
 */
#include "tls.h"
#include "core.h"
#include "log.h"
#include "tls_private.h"

#include <bearssl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* Preference order: AES-128-GCM is fastest with AES-NI, ChaCha20 without. */
static const uint16_t tls_suites[] = {
    BR_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    BR_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    BR_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    BR_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    BR_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    BR_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
};

#define TLS_SEED_BYTES 32
#define TLS_MAX_NAME 255

/* Watches the X.509 engine: was a certificate chain presented in this handshake? */
typedef struct x509_watch {
    const br_x509_class *vtable; /* first: BearSSL calls through it */
    br_x509_minimal_context *inner;
    bool chain_seen;
} x509_watch_t;

struct tls_conn {
    br_ssl_client_context cc;
    br_x509_minimal_context xc;
    x509_watch_t xw;
    tls_ctx_t *ctx;
    bool ready;    /* the handshake completed */
    bool resumed;  /* ... without a certificate chain */
    uint16_t port; /* with name, the session cache key */
    char name[TLS_MAX_NAME + 1];
    /* Last, so that only the fields above need zeroing. */
    unsigned char buf[BR_SSL_BUFSIZE_BIDI];
};

/* ---- the X.509 watcher ---- */

static void xw_start_chain(const br_x509_class **ctx, const char *server_name)
{
    x509_watch_t *w = (x509_watch_t *)(void *)ctx;
    w->chain_seen = true;
    w->inner->vtable->start_chain(&w->inner->vtable, server_name);
}

static void xw_start_cert(const br_x509_class **ctx, uint32_t length)
{
    x509_watch_t *w = (x509_watch_t *)(void *)ctx;
    w->inner->vtable->start_cert(&w->inner->vtable, length);
}

static void xw_append(const br_x509_class **ctx, const unsigned char *buf, size_t len)
{
    x509_watch_t *w = (x509_watch_t *)(void *)ctx;
    w->inner->vtable->append(&w->inner->vtable, buf, len);
}

static void xw_end_cert(const br_x509_class **ctx)
{
    x509_watch_t *w = (x509_watch_t *)(void *)ctx;
    w->inner->vtable->end_cert(&w->inner->vtable);
}

static unsigned xw_end_chain(const br_x509_class **ctx)
{
    x509_watch_t *w = (x509_watch_t *)(void *)ctx;
    return w->inner->vtable->end_chain(&w->inner->vtable);
}

static const br_x509_pkey *xw_get_pkey(const br_x509_class *const *ctx, unsigned *usages)
{
    const x509_watch_t *w = (const x509_watch_t *)(const void *)ctx;
    return w->inner->vtable->get_pkey(&w->inner->vtable, usages);
}

static const br_x509_class x509_watch_vtable = {
    sizeof(x509_watch_t), xw_start_chain, xw_start_cert, xw_append,
    xw_end_cert,          xw_end_chain,   xw_get_pkey,
};

/* ---- session cache ---- */

static tls_session_slot_t *session_find(tls_ctx_t *ctx, const char *name, uint16_t port)
{
    for (size_t i = 0; i < TLS_SESSION_CACHE; i++) {
        tls_session_slot_t *s = &ctx->sessions[i];
        if (s->stamp != 0 && s->port == port && strcmp(s->name, name) == 0)
            return s;
    }
    return NULL;
}

static void session_drop(tls_session_slot_t *s)
{
    explicit_bzero(s, sizeof(*s));
}

static void session_store(tls_ctx_t *ctx, const char *name, uint16_t port,
                          const br_ssl_session_parameters *p)
{
    tls_session_slot_t *s = session_find(ctx, name, port);
    if (s == NULL) {
        s = &ctx->sessions[0];
        for (size_t i = 1; i < TLS_SESSION_CACHE && s->stamp != 0; i++)
            if (ctx->sessions[i].stamp < s->stamp)
                s = &ctx->sessions[i];
        session_drop(s);
        snprintf(s->name, sizeof(s->name), "%s", name);
        s->port = port;
    }
    s->params = *p;
    s->stamp = ++ctx->session_clock;
}

void tls_ctx_flush_sessions(tls_ctx_t *ctx)
{
    for (size_t i = 0; i < TLS_SESSION_CACHE; i++)
        session_drop(&ctx->sessions[i]);
}

/* ---- configuration ---- */

void tls_impl_lookup(tls_impl_t *im)
{
    /* The same choices as br_ssl_engine_set_default_aes_gcm() and _chapol() make. */
    im->aes_ctr = br_aes_x86ni_ctr_get_vtable();
    if (im->aes_ctr == NULL)
        im->aes_ctr = br_aes_pwr8_ctr_get_vtable();
    if (im->aes_ctr == NULL)
        im->aes_ctr = UINTPTR_MAX > UINT32_MAX ? &br_aes_ct64_ctr_vtable : &br_aes_ct_ctr_vtable;
    im->ghash = br_ghash_pclmul_get();
    if (im->ghash == 0)
        im->ghash = br_ghash_pwr8_get();
    if (im->ghash == 0)
        im->ghash = UINTPTR_MAX > UINT32_MAX ? &br_ghash_ctmul64 : &br_ghash_ctmul;
    im->chacha20 = br_chacha20_sse2_get();
    if (im->chacha20 == 0)
        im->chacha20 = &br_chacha20_ct_run;
    im->poly1305 = br_poly1305_ctmulq_get();
    if (im->poly1305 == 0)
        im->poly1305 = &br_poly1305_ctmul_run;
    im->ec = br_ec_get_default();
    im->ecdsa = br_ecdsa_vrfy_asn1_get_default();
    im->rsavrfy = br_rsa_pkcs1_vrfy_get_default();
}

/*
 * Sets up a zeroed engine with what the six suites need and nothing else:
 * TLS 1.2 only, ECDHE (with ECDSA or RSA signatures), AES-GCM and
 * ChaCha20-Poly1305, and the X.509 minimal engine for the chain. Unlike
 * br_ssl_client_init_full() this probes nothing: the implementations come
 * from the context. All six hash functions are installed, as the full
 * profile does, because the ClientHello's signature_algorithms list is made
 * from them (and the X.509 engine checks certificate signatures with them).
 */
static void configure(tls_conn_t *c, const tls_ctx_t *ctx)
{
    static const br_hash_class *const hashes[] = {
        &br_md5_vtable,    &br_sha1_vtable,   &br_sha224_vtable,
        &br_sha256_vtable, &br_sha384_vtable, &br_sha512_vtable,
    };
    const tls_impl_t *im = &ctx->impl;
    br_ssl_engine_context *eng = &c->cc.eng;
    br_x509_minimal_context *xc = &c->xc;

    br_ssl_client_zero(&c->cc);
    br_ssl_engine_set_versions(eng, BR_TLS12, BR_TLS12);
    br_ssl_engine_set_suites(eng, tls_suites, sizeof(tls_suites) / sizeof(tls_suites[0]));
    br_ssl_engine_add_flags(eng, BR_OPT_NO_RENEGOTIATION);

    /* The X.509 engine hashes DNs with SHA-256 to compare them. */
    br_x509_minimal_init(xc, &br_sha256_vtable, ctx->anchors, ctx->nanchors);
    for (int id = br_md5_ID; id <= br_sha512_ID; id++) {
        br_ssl_engine_set_hash(eng, id, hashes[id - br_md5_ID]);
        br_x509_minimal_set_hash(xc, id, hashes[id - br_md5_ID]);
    }
    br_ssl_engine_set_rsavrfy(eng, im->rsavrfy);
    br_ssl_engine_set_ec(eng, im->ec);
    br_ssl_engine_set_ecdsa(eng, im->ecdsa);
    br_x509_minimal_set_rsa(xc, im->rsavrfy);
    br_x509_minimal_set_ecdsa(xc, im->ec, im->ecdsa);
    c->xw.vtable = &x509_watch_vtable;
    c->xw.inner = xc;
    br_ssl_engine_set_x509(eng, &c->xw.vtable);

    /* TLS 1.2's PRF with the suite's hash: SHA-256, or SHA-384 for AES-256-GCM. */
    br_ssl_engine_set_prf_sha256(eng, &br_tls12_sha256_prf);
    br_ssl_engine_set_prf_sha384(eng, &br_tls12_sha384_prf);
    br_ssl_engine_set_gcm(eng, &br_sslrec_in_gcm_vtable, &br_sslrec_out_gcm_vtable);
    br_ssl_engine_set_aes_ctr(eng, im->aes_ctr);
    br_ssl_engine_set_ghash(eng, im->ghash);
    br_ssl_engine_set_chapol(eng, &br_sslrec_in_chapol_vtable, &br_sslrec_out_chapol_vtable);
    br_ssl_engine_set_chacha20(eng, im->chacha20);
    br_ssl_engine_set_poly1305(eng, im->poly1305);

    /*
     * Full-size buffers in both directions: with less room BearSSL asks the
     * server for a smaller maximum fragment length, which many servers
     * ignore, and then their 16 KB records fail.
     */
    br_ssl_engine_set_buffer(eng, c->buf, sizeof(c->buf), 1);
}

/* ---- connections ---- */

tls_conn_t *tls_conn_new(tls_ctx_t *ctx, const char *server_name, uint16_t port, int *err)
{
    size_t nlen = server_name != NULL ? strlen(server_name) : 0;
    if (nlen == 0 || nlen > TLS_MAX_NAME) {
        *err = -EINVAL;
        return NULL;
    }
    tls_conn_t *c = xmalloc(sizeof(*c));
    memset(c, 0, offsetof(tls_conn_t, buf));
    c->ctx = ctx;
    c->port = port;
    memcpy(c->name, server_name, nlen + 1);

    configure(c, ctx);
    br_ssl_engine_context *eng = &c->cc.eng;
    unsigned char seed[TLS_SEED_BYTES];
    if (getrandom(seed, sizeof(seed), 0) != (ssize_t)sizeof(seed)) {
        explicit_bzero(seed, sizeof(seed));
        tls_conn_free(c);
        *err = -EIO;
        return NULL;
    }
    br_ssl_engine_inject_entropy(eng, seed, sizeof(seed));
    explicit_bzero(seed, sizeof(seed));
    /*
     * BearSSL also runs its system seeder once in every engine, when the
     * handshake starts (br_ssl_engine_init_rand(): CPUID, then RDRAND). The
     * 32 bytes from getrandom() are all the engine needs, so mark that
     * attempt as made. This is a field of the engine structure rather than
     * a documented call; BearSSL 0.6 offers no other way to skip it.
     */
    eng->rng_os_rand_done = 1;

    int resume = 0;
    tls_session_slot_t *s = session_find(ctx, c->name, c->port);
    if (s != NULL) {
        br_ssl_engine_set_session_parameters(eng, &s->params);
        resume = 1;
    }
    if (!br_ssl_client_reset(&c->cc, c->name, resume) || br_ssl_engine_last_error(eng) != 0) {
        tls_conn_free(c);
        *err = -EIO;
        return NULL;
    }
    return c;
}

void tls_conn_free(tls_conn_t *c)
{
    if (c == NULL)
        return;
    /* The engine holds the master secret and the record keys; the buffer holds plaintext. */
    explicit_bzero(c, sizeof(*c));
    free(c);
}

size_t tls_conn_memory(void)
{
    return sizeof(tls_conn_t);
}

unsigned tls_conn_state(tls_conn_t *c)
{
    br_ssl_engine_context *eng = &c->cc.eng;
    unsigned st = br_ssl_engine_current_state(eng);
    if (st & BR_SSL_CLOSED) {
        if (br_ssl_engine_last_error(eng) == BR_ERR_RESUME_MISMATCH) {
            tls_session_slot_t *s = session_find(c->ctx, c->name, c->port);
            if (s != NULL)
                session_drop(s);
        }
        return TLS_CLOSED;
    }
    if (!c->ready && (st & (BR_SSL_SENDAPP | BR_SSL_RECVAPP))) {
        c->ready = true;
        c->resumed = !c->xw.chain_seen;
        br_ssl_session_parameters p;
        br_ssl_engine_get_session_parameters(eng, &p);
        if (p.session_id_len > 0)
            session_store(c->ctx, c->name, c->port, &p);
        explicit_bzero(&p, sizeof(p));
    }
    unsigned out = 0;
    if (st & BR_SSL_SENDREC)
        out |= TLS_SENDREC;
    if (st & BR_SSL_RECVREC)
        out |= TLS_RECVREC;
    if (st & BR_SSL_SENDAPP)
        out |= TLS_SENDAPP;
    if (st & BR_SSL_RECVAPP)
        out |= TLS_RECVAPP;
    return out;
}

/*
 * The four windows of the engine, one buffer-and-ack pair each. They are
 * alike on purpose: each forwards to BearSSL's call of the same name, and
 * keeping them as functions keeps br_ssl_client_context out of tls.h.
 */
unsigned char *tls_conn_sendrec_buf(tls_conn_t *c, size_t *len)
{
    return br_ssl_engine_sendrec_buf(&c->cc.eng, len);
}

void tls_conn_sendrec_ack(tls_conn_t *c, size_t len)
{
    br_ssl_engine_sendrec_ack(&c->cc.eng, len);
}

unsigned char *tls_conn_recvrec_buf(tls_conn_t *c, size_t *len)
{
    return br_ssl_engine_recvrec_buf(&c->cc.eng, len);
}

void tls_conn_recvrec_ack(tls_conn_t *c, size_t len)
{
    br_ssl_engine_recvrec_ack(&c->cc.eng, len);
}

unsigned char *tls_conn_sendapp_buf(tls_conn_t *c, size_t *len)
{
    return br_ssl_engine_sendapp_buf(&c->cc.eng, len);
}

void tls_conn_sendapp_ack(tls_conn_t *c, size_t len)
{
    br_ssl_engine_sendapp_ack(&c->cc.eng, len);
}

unsigned char *tls_conn_recvapp_buf(tls_conn_t *c, size_t *len)
{
    return br_ssl_engine_recvapp_buf(&c->cc.eng, len);
}

void tls_conn_recvapp_ack(tls_conn_t *c, size_t len)
{
    br_ssl_engine_recvapp_ack(&c->cc.eng, len);
}

void tls_conn_flush(tls_conn_t *c)
{
    br_ssl_engine_flush(&c->cc.eng, 0);
}

void tls_conn_close(tls_conn_t *c)
{
    br_ssl_engine_close(&c->cc.eng);
}

bool tls_conn_ready(const tls_conn_t *c)
{
    return c->ready;
}

bool tls_conn_resumed(const tls_conn_t *c)
{
    return c->ready && c->resumed;
}

int tls_conn_error(const tls_conn_t *c)
{
    return br_ssl_engine_last_error(&c->cc.eng);
}

const char *tls_conn_server_name(const tls_conn_t *c)
{
    return c->name;
}

/* ---- error names ---- */

typedef struct tls_errname {
    int code;
    const char *name;
    const char *text;
} tls_errname_t;

#define E(code, text)                                                                              \
    {                                                                                              \
        code, #code, text                                                                          \
    }
static const tls_errname_t tls_errnames[] = {
    E(BR_ERR_OK, "no error"),
    E(BR_ERR_BAD_PARAM, "bad parameter"),
    E(BR_ERR_BAD_STATE, "operation not allowed in this state"),
    E(BR_ERR_UNSUPPORTED_VERSION, "unsupported protocol version"),
    E(BR_ERR_BAD_VERSION, "record version mismatch"),
    E(BR_ERR_BAD_LENGTH, "invalid record length"),
    E(BR_ERR_TOO_LARGE, "record too large"),
    E(BR_ERR_BAD_MAC, "bad record MAC or padding"),
    E(BR_ERR_NO_RANDOM, "no entropy for the random generator"),
    E(BR_ERR_UNKNOWN_TYPE, "unknown record type"),
    E(BR_ERR_UNEXPECTED, "unexpected message"),
    E(BR_ERR_BAD_CCS, "invalid ChangeCipherSpec"),
    E(BR_ERR_BAD_ALERT, "invalid alert"),
    E(BR_ERR_BAD_HANDSHAKE, "malformed handshake message"),
    E(BR_ERR_OVERSIZED_ID, "session ID too long"),
    E(BR_ERR_BAD_CIPHER_SUITE, "server chose a cipher suite that was not offered"),
    E(BR_ERR_BAD_COMPRESSION, "server chose a compression that was not offered"),
    E(BR_ERR_BAD_FRAGLEN, "maximum fragment length mismatch"),
    E(BR_ERR_BAD_SECRENEG, "secure renegotiation failed"),
    E(BR_ERR_EXTRA_EXTENSION, "server sent an extension that was not offered"),
    E(BR_ERR_BAD_SNI, "invalid server name indication"),
    E(BR_ERR_BAD_HELLO_DONE, "invalid ServerHelloDone"),
    E(BR_ERR_LIMIT_EXCEEDED, "internal limit exceeded (e.g. key too large)"),
    E(BR_ERR_BAD_FINISHED, "Finished message does not match"),
    E(BR_ERR_RESUME_MISMATCH, "resumed session with another version or cipher suite"),
    E(BR_ERR_INVALID_ALGORITHM, "unsupported or invalid algorithm"),
    E(BR_ERR_BAD_SIGNATURE, "invalid ServerKeyExchange signature"),
    E(BR_ERR_WRONG_KEY_USAGE, "server key not allowed for this use"),
    E(BR_ERR_NO_CLIENT_AUTH, "client certificate required"),
    E(BR_ERR_IO, "transport I/O error"),
    E(BR_ERR_X509_OK, "certificate valid"),
    E(BR_ERR_X509_INVALID_VALUE, "invalid value in certificate"),
    E(BR_ERR_X509_TRUNCATED, "truncated certificate"),
    E(BR_ERR_X509_EMPTY_CHAIN, "empty certificate chain"),
    E(BR_ERR_X509_INNER_TRUNC, "certificate element overruns its parent"),
    E(BR_ERR_X509_BAD_TAG_CLASS, "unsupported ASN.1 tag class"),
    E(BR_ERR_X509_BAD_TAG_VALUE, "unsupported ASN.1 tag value"),
    E(BR_ERR_X509_INDEFINITE_LENGTH, "indefinite ASN.1 length"),
    E(BR_ERR_X509_EXTRA_ELEMENT, "extra ASN.1 element"),
    E(BR_ERR_X509_UNEXPECTED, "unexpected ASN.1 element"),
    E(BR_ERR_X509_NOT_CONSTRUCTED, "ASN.1 element should be constructed"),
    E(BR_ERR_X509_NOT_PRIMITIVE, "ASN.1 element should be primitive"),
    E(BR_ERR_X509_PARTIAL_BYTE, "BIT STRING not a whole number of bytes"),
    E(BR_ERR_X509_BAD_BOOLEAN, "invalid BOOLEAN"),
    E(BR_ERR_X509_OVERFLOW, "value out of range"),
    E(BR_ERR_X509_BAD_DN, "invalid distinguished name"),
    E(BR_ERR_X509_BAD_TIME, "invalid date in certificate"),
    E(BR_ERR_X509_UNSUPPORTED, "certificate uses an unsupported feature"),
    E(BR_ERR_X509_LIMIT_EXCEEDED, "certificate key or signature too large"),
    E(BR_ERR_X509_WRONG_KEY_TYPE, "certificate key type mismatch"),
    E(BR_ERR_X509_BAD_SIGNATURE, "bad certificate signature"),
    E(BR_ERR_X509_TIME_UNKNOWN, "current time unknown"),
    E(BR_ERR_X509_EXPIRED, "certificate expired or not yet valid"),
    E(BR_ERR_X509_DN_MISMATCH, "issuer/subject name mismatch in chain"),
    E(BR_ERR_X509_BAD_SERVER_NAME, "certificate is for another host name"),
    E(BR_ERR_X509_CRITICAL_EXTENSION, "unknown critical extension in certificate"),
    E(BR_ERR_X509_NOT_CA, "issuer is not a CA or path too long"),
    E(BR_ERR_X509_FORBIDDEN_KEY_USAGE, "key usage forbids this use"),
    E(BR_ERR_X509_WEAK_PUBLIC_KEY, "certificate key too small"),
    E(BR_ERR_X509_NOT_TRUSTED, "certificate not trusted"),
};
#undef E

static const tls_errname_t *errname_find(int err)
{
    for (size_t i = 0; i < sizeof(tls_errnames) / sizeof(tls_errnames[0]); i++)
        if (tls_errnames[i].code == err)
            return &tls_errnames[i];
    return NULL;
}

const char *tls_error_name(int err)
{
    if (err >= BR_ERR_SEND_FATAL_ALERT && err < BR_ERR_SEND_FATAL_ALERT + 256)
        return "BR_ERR_SEND_FATAL_ALERT";
    if (err >= BR_ERR_RECV_FATAL_ALERT && err < BR_ERR_RECV_FATAL_ALERT + 256)
        return "BR_ERR_RECV_FATAL_ALERT";
    const tls_errname_t *e = errname_find(err);
    return e != NULL ? e->name : "BR_ERR_UNKNOWN";
}

const char *tls_error_text(int err)
{
    if (err >= BR_ERR_SEND_FATAL_ALERT && err < BR_ERR_SEND_FATAL_ALERT + 256)
        return "fatal alert sent to the server";
    if (err >= BR_ERR_RECV_FATAL_ALERT && err < BR_ERR_RECV_FATAL_ALERT + 256)
        return "fatal alert received from the server";
    const tls_errname_t *e = errname_find(err);
    return e != NULL ? e->text : "unknown error";
}

static const char *alert_name(int alert)
{
    switch (alert) {
    case 0:
        return "close_notify";
    case 10:
        return "unexpected_message";
    case 20:
        return "bad_record_mac";
    case 22:
        return "record_overflow";
    case 40:
        return "handshake_failure";
    case 42:
        return "bad_certificate";
    case 43:
        return "unsupported_certificate";
    case 44:
        return "certificate_revoked";
    case 45:
        return "certificate_expired";
    case 46:
        return "certificate_unknown";
    case 47:
        return "illegal_parameter";
    case 48:
        return "unknown_ca";
    case 49:
        return "access_denied";
    case 50:
        return "decode_error";
    case 51:
        return "decrypt_error";
    case 70:
        return "protocol_version";
    case 71:
        return "insufficient_security";
    case 80:
        return "internal_error";
    case 90:
        return "user_canceled";
    case 100:
        return "no_renegotiation";
    case 110:
        return "unsupported_extension";
    case 112:
        return "unrecognized_name";
    default:
        return "unknown alert";
    }
}

char *tls_strerror(int err, char *buf, size_t cap)
{
    if (cap == 0)
        return buf;
    if (err >= BR_ERR_RECV_FATAL_ALERT && err < BR_ERR_SEND_FATAL_ALERT + 256)
        snprintf(buf, cap, "%s (%d): %s: %d %s", tls_error_name(err), err, tls_error_text(err),
                 err & 255, alert_name(err & 255));
    else
        snprintf(buf, cap, "%s (%d): %s", tls_error_name(err), err, tls_error_text(err));
    return buf;
}

bool tls_error_is_certificate(int err)
{
    return err > BR_ERR_X509_OK && err < BR_ERR_RECV_FATAL_ALERT;
}
