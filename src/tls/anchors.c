/* SPDX-License-Identifier: MIT */
/*
 * anchors.c - trust anchors from a PEM bundle, with BearSSL's PEM and X.509
 * decoders.
 *
 * Each certificate's subject DN and public key are copied out, since the
 * decoded certificate itself is not kept. One bad certificate in a bundle
 * of a hundred is logged and skipped rather than refusing the start: the
 * others are still good, and the connection to the Bot API only needs one.
 */
#include "core.h"
#include "log.h"
#include "tls.h"
#include "tls_private.h"

#include <bearssl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A DER certificate larger than this is not a CA certificate we want. */
#define TLS_MAX_CERT (64u << 10)

/* A growing byte string, used as a BearSSL decoder destination. */
typedef struct blob {
    unsigned char *data;
    size_t len;
    size_t cap;
    bool overflow; /* more than TLS_MAX_CERT bytes were offered */
} blob_t;

static void blob_append(void *ctx, const void *src, size_t len)
{
    blob_t *b = ctx;
    if (b->overflow || len > TLS_MAX_CERT - b->len) {
        b->overflow = true;
        return;
    }
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + len)
            cap *= 2;
        b->data = xrealloc(b->data, cap);
        b->cap = cap;
    }
    memcpy(b->data + b->len, src, len);
    b->len += len;
}

static void discard(void *ctx, const void *src, size_t len)
{
    (void)ctx;
    (void)src;
    (void)len;
}

static unsigned char *dup_bytes(const unsigned char *p, size_t len)
{
    unsigned char *q = xmalloc(len);
    memcpy(q, p, len);
    return q;
}

static void anchor_dispose(br_x509_trust_anchor *ta)
{
    free(ta->dn.data);
    if (ta->pkey.key_type == BR_KEYTYPE_RSA) {
        free(ta->pkey.key.rsa.n);
        free(ta->pkey.key.rsa.e);
    } else if (ta->pkey.key_type == BR_KEYTYPE_EC) {
        free(ta->pkey.key.ec.q);
    }
}

static void skip(tls_ctx_t *ctx, const char *source, size_t index, const char *why, int err)
{
    ctx->info.skipped++;
    if (err != 0) {
        char msg[160];
        log_warn("tls_ca_skipped", "%s: PEM object %zu skipped: %s: %s", source, index, why,
                 tls_strerror(err, msg, sizeof(msg)));
    } else {
        log_warn("tls_ca_skipped", "%s: PEM object %zu skipped: %s", source, index, why);
    }
}

/* Decodes one DER certificate into a trust anchor; skips (and logs) it if it does not decode. */
static void add_certificate(tls_ctx_t *ctx, const blob_t *der, const char *source, size_t index)
{
    br_x509_decoder_context dc;
    blob_t dn = {0};

    if (der->overflow) {
        skip(ctx, source, index, "certificate too large", 0);
        return;
    }
    br_x509_decoder_init(&dc, blob_append, &dn);
    br_x509_decoder_push(&dc, der->data, der->len);
    const br_x509_pkey *pk = br_x509_decoder_get_pkey(&dc);
    int err = br_x509_decoder_last_error(&dc);
    if (pk == NULL || err != 0 || dn.overflow) {
        skip(ctx, source, index, "certificate does not decode",
             err != 0 ? err : BR_ERR_X509_TRUNCATED);
        free(dn.data);
        return;
    }
    br_x509_trust_anchor ta;
    memset(&ta, 0, sizeof(ta));
    if (pk->key_type == BR_KEYTYPE_RSA) {
        ta.pkey.key_type = BR_KEYTYPE_RSA;
        ta.pkey.key.rsa.n = dup_bytes(pk->key.rsa.n, pk->key.rsa.nlen);
        ta.pkey.key.rsa.nlen = pk->key.rsa.nlen;
        ta.pkey.key.rsa.e = dup_bytes(pk->key.rsa.e, pk->key.rsa.elen);
        ta.pkey.key.rsa.elen = pk->key.rsa.elen;
    } else if (pk->key_type == BR_KEYTYPE_EC) {
        ta.pkey.key_type = BR_KEYTYPE_EC;
        ta.pkey.key.ec.curve = pk->key.ec.curve;
        ta.pkey.key.ec.q = dup_bytes(pk->key.ec.q, pk->key.ec.qlen);
        ta.pkey.key.ec.qlen = pk->key.ec.qlen;
    } else {
        skip(ctx, source, index, "key is neither RSA nor EC", 0);
        free(dn.data);
        return;
    }
    ta.dn.data = dn.data != NULL ? dn.data : dup_bytes((const unsigned char *)"", 0);
    ta.dn.len = dn.len;
    ta.flags = br_x509_decoder_isCA(&dc) ? BR_X509_TA_CA : 0;
    if (ctx->nanchors == ctx->cap) {
        ctx->cap = ctx->cap ? ctx->cap * 2 : 64;
        ctx->anchors = xrealloc(ctx->anchors, ctx->cap * sizeof(*ctx->anchors));
    }
    ctx->anchors[ctx->nanchors++] = ta;
    ctx->info.anchors++;
}

tls_ctx_t *tls_ctx_new_pem(const char *pem, size_t len, const char *source, int *err)
{
    tls_ctx_t *ctx = xcalloc(1, sizeof(*ctx));
    tls_impl_lookup(&ctx->impl);
    br_pem_decoder_context pc;
    blob_t der = {0};
    size_t index = 0; /* PEM objects seen, for log lines */
    bool in_cert = false;
    bool in_obj = false;
    bool final_nl = false; /* a last newline was pushed so that a final banner is seen */

    br_pem_decoder_init(&pc);
    while (len > 0 || !final_nl) {
        const char *in = pem;
        size_t avail = len;
        if (len == 0) {
            in = "\n";
            avail = 1;
            final_nl = true;
        }
        size_t n = br_pem_decoder_push(&pc, in, avail);
        if (len > 0) {
            pem += n;
            len -= n;
        }
        switch (br_pem_decoder_event(&pc)) {
        case BR_PEM_BEGIN_OBJ:
            index++;
            in_obj = true;
            in_cert = strcmp(br_pem_decoder_name(&pc), "CERTIFICATE") == 0 ||
                      strcmp(br_pem_decoder_name(&pc), "X509 CERTIFICATE") == 0;
            der.len = 0;
            der.overflow = false;
            br_pem_decoder_setdest(&pc, in_cert ? blob_append : discard, &der);
            break;
        case BR_PEM_END_OBJ:
            if (in_cert)
                add_certificate(ctx, &der, source, index);
            else if (in_obj)
                skip(ctx, source, index, "not a CERTIFICATE object", 0);
            in_obj = in_cert = false;
            break;
        case BR_PEM_ERROR:
            /*
             * Broken base64: drop this object and start afresh. Outside an
             * object the decoder ignores everything up to the next BEGIN
             * banner, so the rest of the broken one is passed over.
             */
            skip(ctx, source, index, "invalid PEM encoding", 0);
            br_pem_decoder_init(&pc);
            in_obj = in_cert = false;
            break;
        default:
            break;
        }
    }
    if (in_obj)
        skip(ctx, source, index, "truncated PEM object (no END banner)", 0);
    free(der.data);
    if (ctx->nanchors == 0) {
        log_error("tls_ca_empty", "%s: no usable CA certificate (%zu skipped)", source,
                  ctx->info.skipped);
        tls_ctx_free(ctx);
        *err = -ENOKEY;
        return NULL;
    }
    log_info("tls_ca_loaded", "%s: %zu trust anchors loaded, %zu skipped", source,
             ctx->info.anchors, ctx->info.skipped);
    return ctx;
}

tls_ctx_t *tls_ctx_new(const char *ca_file, int *err)
{
    if (ca_file == NULL)
        ca_file = TLS_DEFAULT_CA_FILE;
    /* Nonblocking open, so that a FIFO in the way cannot hang the start. */
    int fd = open(ca_file, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        *err = -errno;
        log_error("tls_ca_unreadable", "%s: %s", ca_file, strerror(-*err));
        return NULL;
    }
    struct stat st;
    char *buf = NULL;
    size_t got = 0;
    int e = 0;
    if (fstat(fd, &st) != 0) {
        e = -errno;
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        e = -EINVAL;
        goto fail;
    }
    if ((uint64_t)st.st_size > TLS_MAX_CA_FILE) {
        e = -EFBIG;
        goto fail;
    }
    buf = xmalloc((size_t)st.st_size + 1);
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            e = -errno;
            goto fail;
        }
        if (r == 0)
            break; /* the file shrank: use what is there */
        got += (size_t)r;
    }
    close(fd);
    tls_ctx_t *ctx = tls_ctx_new_pem(buf, got, ca_file, err);
    free(buf);
    return ctx;

fail:
    close(fd);
    free(buf);
    *err = e;
    log_error("tls_ca_unreadable", "%s: %s", ca_file,
              e == -EINVAL ? "not a regular file" : strerror(-e));
    return NULL;
}

tls_ctx_info_t tls_ctx_info(const tls_ctx_t *ctx)
{
    return ctx->info;
}

void tls_ctx_free(tls_ctx_t *ctx)
{
    if (ctx == NULL)
        return;
    for (size_t i = 0; i < ctx->nanchors; i++)
        anchor_dispose(&ctx->anchors[i]);
    free(ctx->anchors);
    tls_ctx_flush_sessions(ctx);
    free(ctx);
}
