/* SPDX-License-Identifier: MIT */
/*
 * test_tls.c - the tls module without sockets: trust anchors loaded from
 * generated bundles (a broken certificate in the middle is skipped and
 * counted), and client handshakes against a BearSSL server engine in
 * memory: full and resumed handshakes, EC and RSA certificates, an unknown
 * CA, a wrong host name, an expired certificate, servers that only offer
 * weaker suites or versions; each of the six suites on its own, and servers
 * whose only suites are not among them; and the error names.
 *
 * The certificates come from mkcerts.sh (the openssl command line tool);
 * argv[1] is that script. Without openssl the test skips (exit 77).
 */
#include "log.h"
#include "tap.h"
#include "tls.h"

#include <bearssl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256];

/* ---- files ---- */

static char *slurp(const char *name, size_t *len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 4096;
            buf = realloc(buf, cap + 1);
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        if (r == 0)
            break;
        n += r;
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

static void write_file(const char *name, const char *data, size_t len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    fwrite(data, 1, len, f);
    fclose(f);
}

static char *path_of(const char *name)
{
    static char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return path;
}

/* The first PEM object of a file, as DER. */
typedef struct der {
    unsigned char *data;
    size_t len;
} der_t;

static void der_append(void *ctx, const void *src, size_t len)
{
    der_t *d = ctx;
    d->data = realloc(d->data, d->len + len);
    memcpy(d->data + d->len, src, len);
    d->len += len;
}

static der_t pem_first(const char *name)
{
    der_t d = {0};
    size_t len;
    char *pem = slurp(name, &len);
    if (pem == NULL)
        return d;
    br_pem_decoder_context pc;
    br_pem_decoder_init(&pc);
    const char *p = pem;
    bool done = false, nl = false;
    while (!done && (len > 0 || !nl)) {
        size_t n;
        if (len == 0) {
            br_pem_decoder_push(&pc, "\n", 1);
            nl = true;
        } else {
            n = br_pem_decoder_push(&pc, p, len);
            p += n;
            len -= n;
        }
        switch (br_pem_decoder_event(&pc)) {
        case BR_PEM_BEGIN_OBJ:
            br_pem_decoder_setdest(&pc, der_append, &d);
            break;
        case BR_PEM_END_OBJ:
            done = true;
            break;
        case BR_PEM_ERROR:
            done = true;
            break;
        }
    }
    free(pem);
    return d;
}

/* ---- trust anchors ---- */

static void test_anchors(void)
{
    int err = 0;
    size_t la, lb;
    char *a = slurp("ca.pem", &la);
    char *b = slurp("other-ca.pem", &lb);

    tls_ctx_t *ctx = tls_ctx_new(path_of("ca.pem"), &err);
    tap_ok(ctx != NULL && tls_ctx_info(ctx).anchors == 1 && tls_ctx_info(ctx).skipped == 0,
           "one CA file gives one anchor");
    tls_ctx_free(ctx);

    /* A certificate whose base64 is fine but whose DER is garbage, in the middle. */
    static const char garbage[] = "-----BEGIN CERTIFICATE-----\n"
                                  "MIIBszCCAVmgAwIBAgIUYWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXo=\n"
                                  "-----END CERTIFICATE-----\n";
    size_t cap = la + lb + sizeof(garbage) + 64;
    char *bundle = malloc(cap);
    size_t n = 0;
    memcpy(bundle + n, a, la), n += la;
    memcpy(bundle + n, garbage, sizeof(garbage) - 1), n += sizeof(garbage) - 1;
    memcpy(bundle + n, b, lb), n += lb;
    write_file("bundle-garbage.pem", bundle, n);
    err = 0;
    ctx = tls_ctx_new(path_of("bundle-garbage.pem"), &err);
    tap_ok(ctx != NULL, "bundle with a garbage certificate in the middle still loads");
    tap_ok(ctx != NULL && tls_ctx_info(ctx).anchors == 2, "... the two good certificates");
    tap_ok(ctx != NULL && tls_ctx_info(ctx).skipped == 1, "... and reports one skipped");
    tls_ctx_free(ctx);

    /* Broken base64 in the middle object: the PEM decoder itself fails there. */
    static const char badb64[] = "-----BEGIN CERTIFICATE-----\n"
                                 "MIIB@@@@not base64 at all====\n"
                                 "-----END CERTIFICATE-----\n";
    n = 0;
    memcpy(bundle + n, a, la), n += la;
    memcpy(bundle + n, badb64, sizeof(badb64) - 1), n += sizeof(badb64) - 1;
    memcpy(bundle + n, b, lb), n += lb;
    ctx = tls_ctx_new_pem(bundle, n, "memory", &err);
    tap_ok(ctx != NULL && tls_ctx_info(ctx).anchors == 2 && tls_ctx_info(ctx).skipped == 1,
           "broken base64 in the middle: two anchors, one skipped");
    tls_ctx_free(ctx);

    /* Text around objects, a private key object, and no final newline. */
    size_t lk;
    char *key = slurp("server.key", &lk);
    n = 0;
    memcpy(bundle + n, "comment line\n", 13), n += 13;
    memcpy(bundle + n, a, la - 1), n += la - 1; /* without its last newline */
    ctx = tls_ctx_new_pem(bundle, n, "memory", &err);
    tap_ok(ctx != NULL && tls_ctx_info(ctx).anchors == 1, "final END line without a newline");
    tls_ctx_free(ctx);
    err = 0;
    ctx = tls_ctx_new_pem(key, lk, "memory", &err);
    tap_ok(ctx == NULL && err == -ENOKEY, "only a private key: -ENOKEY");
    free(key);

    err = 0;
    ctx = tls_ctx_new_pem(garbage, sizeof(garbage) - 1, "memory", &err);
    tap_ok(ctx == NULL && err == -ENOKEY, "only garbage: -ENOKEY");
    err = 0;
    ctx = tls_ctx_new_pem("", 0, "memory", &err);
    tap_ok(ctx == NULL && err == -ENOKEY, "empty bundle: -ENOKEY");
    err = 0;
    ctx = tls_ctx_new(path_of("does-not-exist.pem"), &err);
    tap_ok(ctx == NULL && err == -ENOENT, "missing file: -ENOENT");
    err = 0;
    ctx = tls_ctx_new(dir, &err);
    tap_ok(ctx == NULL && err == -EINVAL, "a directory: -EINVAL");

    struct stat st;
    if (stat(TLS_DEFAULT_CA_FILE, &st) == 0) {
        err = 0;
        ctx = tls_ctx_new(NULL, &err);
        tap_ok(ctx != NULL && tls_ctx_info(ctx).anchors > 50, "the system bundle loads");
        if (ctx != NULL)
            printf("# system bundle: %zu anchors, %zu skipped\n", tls_ctx_info(ctx).anchors,
                   tls_ctx_info(ctx).skipped);
        tls_ctx_free(ctx);
    } else {
        tap_ok(1, "# SKIP no system bundle");
    }
    free(bundle);
    free(a);
    free(b);
}

/* ---- handshakes against a BearSSL server in memory ---- */

typedef struct server {
    br_ssl_server_context sc;
    br_ssl_session_cache_lru lru;
    unsigned char cache[4096];
    unsigned char buf[BR_SSL_BUFSIZE_BIDI];
    br_x509_certificate chain[1];
    der_t cert;
    der_t key;
    br_skey_decoder_context kd;
} server_t;

/* Sets up a server with the certificate and key files; `lru` keeps sessions across resets. */
static bool server_init(server_t *s, const char *cert, const char *key, bool keep_cache)
{
    free(s->cert.data);
    free(s->key.data);
    s->cert = pem_first(cert);
    s->key = pem_first(key);
    if (s->cert.len == 0 || s->key.len == 0)
        return false;
    br_skey_decoder_init(&s->kd);
    br_skey_decoder_push(&s->kd, s->key.data, s->key.len);
    if (br_skey_decoder_last_error(&s->kd) != 0)
        return false;
    s->chain[0].data = s->cert.data;
    s->chain[0].data_len = s->cert.len;
    if (br_skey_decoder_key_type(&s->kd) == BR_KEYTYPE_EC)
        br_ssl_server_init_full_ec(&s->sc, s->chain, 1, BR_KEYTYPE_EC,
                                   br_skey_decoder_get_ec(&s->kd));
    else
        br_ssl_server_init_full_rsa(&s->sc, s->chain, 1, br_skey_decoder_get_rsa(&s->kd));
    if (!keep_cache)
        br_ssl_session_cache_lru_init(&s->lru, s->cache, sizeof(s->cache));
    br_ssl_server_set_cache(&s->sc, &s->lru.vtable);
    br_ssl_engine_set_buffer(&s->sc.eng, s->buf, sizeof(s->buf), 1);
    return br_ssl_server_reset(&s->sc) != 0;
}

/*
 * Moves records between the client and the server until neither can go on.
 * The client's receive window is taken before its pending output is acked,
 * and filled afterwards, as a ring recv in flight beside a send would be.
 * The server echoes what it reads. Returns the client's final state.
 */
static unsigned pump(tls_conn_t *cl, server_t *s, const char *send, char *got, size_t *got_len)
{
    br_ssl_engine_context *se = &s->sc.eng;
    size_t sent = 0;
    bool window_stable = true;
    for (int iter = 0; iter < 10000; iter++) {
        bool progress = false;
        unsigned st = tls_conn_state(cl);
        if (st & TLS_CLOSED)
            break;
        size_t rlen = 0;
        unsigned char *rwin = (st & TLS_RECVREC) ? tls_conn_recvrec_buf(cl, &rlen) : NULL;
        if (st & TLS_SENDREC) {
            size_t len, slen;
            unsigned char *b = tls_conn_sendrec_buf(cl, &len);
            unsigned char *d = br_ssl_engine_recvrec_buf(se, &slen);
            if (d != NULL) {
                size_t n = len < slen ? len : slen;
                memcpy(d, b, n);
                tls_conn_sendrec_ack(cl, n);
                br_ssl_engine_recvrec_ack(se, n);
                progress = true;
            }
        }
        if (rwin != NULL) {
            size_t slen, len2;
            unsigned char *b = br_ssl_engine_sendrec_buf(se, &slen);
            if (b != NULL) {
                unsigned char *again = tls_conn_recvrec_buf(cl, &len2);
                if (again != rwin || len2 != rlen)
                    window_stable = false;
                size_t n = rlen < slen ? rlen : slen;
                memcpy(rwin, b, n);
                br_ssl_engine_sendrec_ack(se, n);
                tls_conn_recvrec_ack(cl, n);
                progress = true;
            }
        }
        /* The server echoes application data. */
        unsigned sst = br_ssl_engine_current_state(se);
        if ((sst & BR_SSL_RECVAPP) && (sst & BR_SSL_SENDAPP)) {
            size_t len, olen;
            unsigned char *in = br_ssl_engine_recvapp_buf(se, &len);
            unsigned char *out = br_ssl_engine_sendapp_buf(se, &olen);
            size_t n = len < olen ? len : olen;
            memcpy(out, in, n);
            br_ssl_engine_recvapp_ack(se, n);
            br_ssl_engine_sendapp_ack(se, n);
            br_ssl_engine_flush(se, 0);
            progress = true;
        }
        st = tls_conn_state(cl);
        if ((st & TLS_SENDAPP) && send != NULL && sent < strlen(send)) {
            size_t len;
            unsigned char *w = tls_conn_sendapp_buf(cl, &len);
            size_t n = strlen(send) - sent;
            if (n > len)
                n = len;
            memcpy(w, send + sent, n);
            tls_conn_sendapp_ack(cl, n);
            sent += n;
            tls_conn_flush(cl);
            progress = true;
        }
        if ((st & TLS_RECVAPP) && got != NULL) {
            size_t len;
            unsigned char *r = tls_conn_recvapp_buf(cl, &len);
            memcpy(got + *got_len, r, len);
            *got_len += len;
            tls_conn_recvapp_ack(cl, len);
            progress = true;
        }
        if (!progress)
            break;
    }
    if (!window_stable)
        return 0xdead;
    return tls_conn_state(cl);
}

static server_t srv;
static uint16_t hs_port = 443; /* the port handshake() connects "to": a session cache key */

/* Runs one connection to `name`; returns the client's error, and whether it resumed. */
static int handshake(tls_ctx_t *ctx, const char *name, const char *cert, const char *key,
                     bool keep_cache, bool *resumed, bool *echoed)
{
    int err = 0;
    if (!server_init(&srv, cert, key, keep_cache))
        return -1000;
    tls_conn_t *cl = tls_conn_new(ctx, name, hs_port, &err);
    if (cl == NULL)
        return -2000;
    char got[256];
    size_t got_len = 0;
    unsigned st = pump(cl, &srv, "ping over tls", got, &got_len);
    if (st == 0xdead) {
        tls_conn_free(cl);
        return -3000;
    }
    int e = tls_conn_error(cl);
    if (resumed != NULL)
        *resumed = tls_conn_resumed(cl);
    if (echoed != NULL)
        *echoed = got_len == 13 && memcmp(got, "ping over tls", 13) == 0 && tls_conn_ready(cl);
    tls_conn_free(cl);
    return e;
}

/* The six suites tls.c offers, listed here on their own so that a change there must show here. */
static const uint16_t our_suites[] = {
    BR_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    BR_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    BR_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    BR_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    BR_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    BR_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
};
#define N_OUR_SUITES (sizeof(our_suites) / sizeof(our_suites[0]))

static bool is_our_suite(uint16_t suite)
{
    for (size_t i = 0; i < N_OUR_SUITES; i++)
        if (our_suites[i] == suite)
            return true;
    return false;
}

/* What the server's engine recorded for the last handshake: version and suite. */
static br_ssl_session_parameters server_session(void)
{
    br_ssl_session_parameters p;
    br_ssl_engine_get_session_parameters(&srv.sc.eng, &p);
    return p;
}

/*
 * One connection to a server that accepts only suites[0..n) and versions
 * [vmin, vmax]. Returns the client's error; *ready says whether application
 * data flowed both ways.
 */
static int handshake_restricted(tls_ctx_t *ctx, const char *cert, const char *key,
                                const uint16_t *suites, size_t n, unsigned vmin, unsigned vmax,
                                bool *ready)
{
    int err = 0;
    *ready = false;
    if (!server_init(&srv, cert, key, false))
        return -1000;
    br_ssl_engine_set_suites(&srv.sc.eng, suites, n);
    br_ssl_engine_set_versions(&srv.sc.eng, vmin, vmax);
    br_ssl_server_reset(&srv.sc);
    tls_conn_t *cl = tls_conn_new(ctx, "localhost", 443, &err);
    if (cl == NULL)
        return -2000;
    char got[64];
    size_t got_len = 0;
    unsigned st = pump(cl, &srv, "suite", got, &got_len);
    int e = st == 0xdead ? -3000 : tls_conn_error(cl);
    *ready = tls_conn_ready(cl) && got_len == 5 && memcmp(got, "suite", 5) == 0;
    tls_conn_free(cl);
    return e;
}

/* Each of the six suites works on its own, and a server offering only others is refused. */
static void test_suites(void)
{
    int err = 0;
    tls_ctx_t *ctx = tls_ctx_new(path_of("ca.pem"), &err);
    if (ctx == NULL) {
        tap_ok(0, "context for the suite checks");
        return;
    }
    bool ready;
    for (size_t i = 0; i < N_OUR_SUITES; i++) {
        uint16_t s = our_suites[i];
        bool rsa = s == BR_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 ||
                   s == BR_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 ||
                   s == BR_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384;
        int e =
            handshake_restricted(ctx, rsa ? "rsa.pem" : "server.pem",
                                 rsa ? "rsa.key" : "server.key", &s, 1, BR_TLS10, BR_TLS12, &ready);
        br_ssl_session_parameters p = server_session();
        tap_ok(e == 0 && ready && p.cipher_suite == s && p.version == BR_TLS12,
               "server with only suite 0x%04x: negotiated, TLS 1.2, data both ways (error %d)",
               (unsigned)s, e);
        tls_ctx_flush_sessions(ctx);
    }

    /* Servers that accept everything BearSSL has: the pick must still be one of the six. */
    bool echoed = false;
    int e = handshake(ctx, "localhost", "server.pem", "server.key", false, NULL, &echoed);
    br_ssl_session_parameters p = server_session();
    tap_ok(e == 0 && echoed && is_our_suite(p.cipher_suite) && p.version == BR_TLS12,
           "full-profile server, EC key: TLS 1.2 with one of the six suites (0x%04x)",
           (unsigned)p.cipher_suite);
    echoed = false;
    e = handshake(ctx, "localhost", "rsa.pem", "rsa.key", false, NULL, &echoed);
    p = server_session();
    tap_ok(e == 0 && echoed && is_our_suite(p.cipher_suite) && p.version == BR_TLS12,
           "full-profile server, RSA key: TLS 1.2 with one of the six suites (0x%04x)",
           (unsigned)p.cipher_suite);
    tls_ctx_flush_sessions(ctx);

    /* Not ours, each for another reason: no ECDHE, no AEAD, an AEAD the client does not offer. */
    static const struct {
        uint16_t suite;
        const char *cert, *key, *what;
    } others[] = {
        {BR_TLS_RSA_WITH_AES_128_GCM_SHA256, "rsa.pem", "rsa.key", "RSA key exchange (AES-GCM)"},
        {BR_TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256, "rsa.pem", "rsa.key", "ECDHE_RSA with CBC"},
        {BR_TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, "server.pem", "server.key",
         "ECDHE_ECDSA with CBC and SHA-1"},
        {BR_TLS_ECDHE_ECDSA_WITH_AES_128_CCM, "server.pem", "server.key", "ECDHE_ECDSA with CCM"},
        {BR_TLS_ECDH_ECDSA_WITH_AES_128_GCM_SHA256, "server.pem", "server.key",
         "static ECDH (AES-GCM)"},
    };
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
        e = handshake_restricted(ctx, others[i].cert, others[i].key, &others[i].suite, 1, BR_TLS10,
                                 BR_TLS12, &ready);
        tap_ok(e != 0 && e > -1000 && !ready, "server offering only %s: handshake fails (%s)",
               others[i].what, tls_error_name(e));
    }

    /* Our suites, but only up to TLS 1.1 (where no AEAD exists) or only TLS 1.0. */
    e = handshake_restricted(ctx, "server.pem", "server.key", our_suites, N_OUR_SUITES, BR_TLS10,
                             BR_TLS11, &ready);
    tap_ok(e != 0 && e > -1000 && !ready, "server with our suites but TLS 1.0-1.1: refused (%s)",
           tls_error_name(e));
    e = handshake_restricted(ctx, "rsa.pem", "rsa.key", our_suites, N_OUR_SUITES, BR_TLS10,
                             BR_TLS10, &ready);
    tap_ok(e != 0 && e > -1000 && !ready, "server with our suites but TLS 1.0 only: refused (%s)",
           tls_error_name(e));
    tls_ctx_free(ctx);
}

static void test_handshakes(void)
{
    int err = 0;
    tls_ctx_t *ctx = tls_ctx_new(path_of("ca.pem"), &err);
    if (ctx == NULL) {
        tap_ok(0, "context for handshakes");
        return;
    }
    bool resumed = true, echoed = false;
    int e = handshake(ctx, "localhost", "server.pem", "server.key", false, &resumed, &echoed);
    tap_ok(e == 0 && echoed, "EC certificate: handshake and data both ways");
    tap_ok(!resumed, "... a full handshake the first time");

    resumed = false;
    echoed = false;
    e = handshake(ctx, "localhost", "server.pem", "server.key", true, &resumed, &echoed);
    tap_ok(e == 0 && echoed && resumed, "second connection resumes the cached session");

    hs_port = 8443;
    resumed = true;
    e = handshake(ctx, "localhost", "server.pem", "server.key", true, &resumed, NULL);
    tap_ok(e == 0 && !resumed, "the same name on another port: its own, full handshake");
    hs_port = 443;

    tls_ctx_flush_sessions(ctx);
    resumed = true;
    e = handshake(ctx, "localhost", "server.pem", "server.key", true, &resumed, NULL);
    tap_ok(e == 0 && !resumed, "after flushing the cache: a full handshake again");

    /* A server that forgot the session: a full handshake, not a failure. */
    resumed = true;
    e = handshake(ctx, "localhost", "server.pem", "server.key", false, &resumed, &echoed);
    tap_ok(e == 0 && echoed && !resumed, "server without the session: full handshake");

    tls_ctx_flush_sessions(ctx);
    echoed = false;
    e = handshake(ctx, "localhost", "rsa.pem", "rsa.key", false, NULL, &echoed);
    tap_ok(e == 0 && echoed, "RSA certificate (ECDHE_RSA)");

    e = handshake(ctx, "localhost", "other.pem", "other.key", false, NULL, NULL);
    tap_ok(e == BR_ERR_X509_NOT_TRUSTED, "unknown CA: BR_ERR_X509_NOT_TRUSTED");
    tap_ok(tls_error_is_certificate(e), "... counted as a certificate error");

    e = handshake(ctx, "localhost", "wrong.pem", "server.key", false, NULL, NULL);
    tap_ok(e == BR_ERR_X509_BAD_SERVER_NAME, "certificate for another name: BAD_SERVER_NAME");
    e = handshake(ctx, "api.example", "server.pem", "server.key", false, NULL, NULL);
    tap_ok(e == BR_ERR_X509_BAD_SERVER_NAME, "connecting to another name: BAD_SERVER_NAME");

    e = handshake(ctx, "localhost", "expired.pem", "server.key", false, NULL, NULL);
    tap_ok(e == BR_ERR_X509_EXPIRED, "expired certificate: BR_ERR_X509_EXPIRED");

    /* A server with only a CBC suite: the client must fail, not fall back. */
    tls_ctx_flush_sessions(ctx);
    if (server_init(&srv, "server.pem", "server.key", false)) {
        static const uint16_t cbc[] = {BR_TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256};
        br_ssl_engine_set_suites(&srv.sc.eng, cbc, 1);
        br_ssl_server_reset(&srv.sc);
        tls_conn_t *cl = tls_conn_new(ctx, "localhost", 443, &err);
        unsigned st = pump(cl, &srv, NULL, NULL, NULL);
        e = tls_conn_error(cl);
        tap_ok((st & TLS_CLOSED) && e != 0 && !tls_conn_ready(cl),
               "server offering only CBC: handshake fails");
        char msg[160];
        printf("# %s\n", tls_strerror(e, msg, sizeof(msg)));
        tls_conn_free(cl);
    } else {
        tap_ok(0, "server offering only CBC: server set up");
    }

    /* A server that speaks TLS 1.1 at most. */
    if (server_init(&srv, "server.pem", "server.key", false)) {
        br_ssl_engine_set_versions(&srv.sc.eng, BR_TLS10, BR_TLS11);
        br_ssl_server_reset(&srv.sc);
        tls_conn_t *cl = tls_conn_new(ctx, "localhost", 443, &err);
        unsigned st = pump(cl, &srv, NULL, NULL, NULL);
        e = tls_conn_error(cl);
        tap_ok((st & TLS_CLOSED) && e != 0 && !tls_conn_ready(cl), "TLS 1.1 server: refused");
        tls_conn_free(cl);
    } else {
        tap_ok(0, "TLS 1.1 server: server set up");
    }

    /* Close cleanly: close_notify goes out and the engine ends without an error. */
    if (server_init(&srv, "server.pem", "server.key", false)) {
        tls_conn_t *cl = tls_conn_new(ctx, "localhost", 443, &err);
        pump(cl, &srv, NULL, NULL, NULL);
        bool ready = tls_conn_ready(cl);
        tls_conn_close(cl);
        unsigned st = pump(cl, &srv, NULL, NULL, NULL);
        tap_ok(ready && (st & TLS_CLOSED) && tls_conn_error(cl) == 0,
               "clean close: close_notify both ways, no error");
        tls_conn_free(cl);
    }

    err = 0;
    tap_ok(tls_conn_new(ctx, "", 443, &err) == NULL && err == -EINVAL,
           "empty server name: -EINVAL");
    tls_ctx_free(ctx);
}

static void test_names(void)
{
    char buf[160];
    tap_ok(strcmp(tls_error_name(BR_ERR_X509_NOT_TRUSTED), "BR_ERR_X509_NOT_TRUSTED") == 0 &&
               strcmp(tls_error_text(BR_ERR_X509_NOT_TRUSTED), "certificate not trusted") == 0,
           "NOT_TRUSTED: name and text");
    tap_ok(strcmp(tls_error_text(BR_ERR_X509_BAD_SERVER_NAME),
                  "certificate is for another host name") == 0,
           "BAD_SERVER_NAME text");
    tap_ok(strcmp(tls_error_name(BR_ERR_X509_EXPIRED), "BR_ERR_X509_EXPIRED") == 0, "EXPIRED name");
    tls_strerror(BR_ERR_RECV_FATAL_ALERT + 40, buf, sizeof(buf));
    tap_ok(strstr(buf, "BR_ERR_RECV_FATAL_ALERT") != NULL && strstr(buf, "handshake_failure"),
           "received alert: named with its alert");
    tap_ok(strcmp(tls_error_name(9999), "BR_ERR_UNKNOWN") == 0, "unknown code");
    tap_ok(!tls_error_is_certificate(BR_ERR_BAD_MAC) && !tls_error_is_certificate(0),
           "BAD_MAC is not a certificate error");
    tls_strerror(BR_ERR_X509_NOT_TRUSTED, buf, 12);
    tap_ok(strlen(buf) == 11, "tls_strerror cuts to fit");
}

int main(int argc, char **argv)
{
    log_setup(LOG_WARN, LOG_FORMAT_TEXT);
    if (argc < 2 || system("openssl version >/dev/null 2>&1") != 0) {
        return tap_skip_all("openssl command line tool not available");
    }
    snprintf(dir, sizeof(dir), "/tmp/tgring-tls-XXXXXX");
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "sh '%s' '%s'", argv[1], dir);
    if (system(cmd) != 0) {
        return tap_skip_all("could not make certificates with openssl");
    }
    test_anchors();
    test_handshakes();
    test_suites();
    test_names();
    free(srv.cert.data);
    free(srv.key.data);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return tap_done();
}
