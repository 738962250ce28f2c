/* SPDX-License-Identifier: MIT */
/*
 * test_setup.c - how tls.c sets up each connection's engine: with the
 * implementations its context looked up once, without BearSSL's
 * CPU-probing helpers or its system seeder, and to the same effect as
 * BearSSL's full client profile narrowed to TLS 1.2 and the six suites (the
 * configuration tls.c used before): the same implementations in every slot
 * a handshake with those suites uses, and the same ClientHello byte for
 * byte apart from the client random, fresh and with a session to resume.
 *
 * Includes tls.c and anchors.c to look inside the engine. BearSSL's probing
 * helpers and its seeder are wrapped here: libbearssl calls them through
 * its PLT, so the definitions below take the calls made from inside the
 * library as well, count them and pass them on.
 */
#include "../../../src/tls/anchors.c"
#include "../../../src/tls/tls.c"
#include "tap.h"

#include <dlfcn.h>

/* ---- counting wrappers ---- */

static int n_probe;  /* calls of the CPU-probing getters */
static int n_seeder; /* calls of br_prng_seeder_system() */

#define REAL(name) ((__typeof__(&name))dlsym(RTLD_NEXT, #name))

const br_block_ctr_class *br_aes_x86ni_ctr_get_vtable(void)
{
    n_probe++;
    return REAL(br_aes_x86ni_ctr_get_vtable)();
}

br_ghash br_ghash_pclmul_get(void)
{
    n_probe++;
    return REAL(br_ghash_pclmul_get)();
}

br_chacha20_run br_chacha20_sse2_get(void)
{
    n_probe++;
    return REAL(br_chacha20_sse2_get)();
}

br_poly1305_run br_poly1305_ctmulq_get(void)
{
    n_probe++;
    return REAL(br_poly1305_ctmulq_get)();
}

br_prng_seeder br_prng_seeder_system(const char **name)
{
    n_seeder++;
    return REAL(br_prng_seeder_system)(name);
}

/* A CA certificate (EC P-256): the anchors only need to load, nothing is verified. */
static const char ca_pem[] = "-----BEGIN CERTIFICATE-----\n"
                             "MIIBlDCCATugAwIBAgIUNOl1L2P+NlGEO73x5VpkaBESfcgwCgYIKoZIzj0EAwIw\n"
                             "HzEdMBsGA1UEAwwUdGdyaW5nIHNldHVwIHRlc3QgQ0EwIBcNMjYxMTIyMDM0ODUz\n"
                             "WhgPMjEyNjEwMjkwMzQ4NTNaMB8xHTAbBgNVBAMMFHRncmluZyBzZXR1cCB0ZXN0\n"
                             "IENBMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEFNAmwRmgwto3YYIiYDxl6dW6\n"
                             "sgsVmE+gY92eJ0P0safpZBk7Yz/rv5I+MF6QZ0HXfhiw+IvLhmjOn3cib+aLSKNT\n"
                             "MFEwHQYDVR0OBBYEFC40m3mMi+khGBQSEtMXw1mSp2S+MB8GA1UdIwQYMBaAFC40\n"
                             "m3mMi+khGBQSEtMXw1mSp2S+MA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwID\n"
                             "RwAwRAIgDcEb4zXwpGoS3qRBG4TOQzf0pgrGQiwir49UPmaYliQCIHTiQXBOP+iD\n"
                             "RjL7xX1DUwS+1tehAVfxllmIVp1T8Rbi\n"
                             "-----END CERTIFICATE-----\n";

/* ---- the configuration tls.c used to make, as the reference ---- */

typedef struct ref {
    br_ssl_client_context cc;
    br_x509_minimal_context xc;
    unsigned char buf[BR_SSL_BUFSIZE_BIDI];
} ref_t;

/* The full profile narrowed to TLS 1.2 and the six suites; NULL if the engine refused to start. */
static ref_t *ref_new(const tls_ctx_t *ctx, const br_ssl_session_parameters *resume)
{
    ref_t *r = calloc(1, sizeof(*r));
    br_ssl_engine_context *eng = &r->cc.eng;
    br_ssl_client_init_full(&r->cc, &r->xc, ctx->anchors, ctx->nanchors);
    br_ssl_engine_set_versions(eng, BR_TLS12, BR_TLS12);
    br_ssl_engine_set_suites(eng, tls_suites, sizeof(tls_suites) / sizeof(tls_suites[0]));
    br_ssl_engine_set_default_ec(eng);
    br_ssl_engine_set_default_ecdsa(eng);
    br_ssl_engine_set_default_rsavrfy(eng);
    br_ssl_engine_set_default_aes_gcm(eng);
    br_ssl_engine_set_default_chapol(eng);
    br_ssl_engine_add_flags(eng, BR_OPT_NO_RENEGOTIATION);
    br_ssl_engine_set_buffer(eng, r->buf, sizeof(r->buf), 1);
    static const unsigned char seed[32] = {1};
    br_ssl_engine_inject_entropy(eng, seed, sizeof(seed));
    if (resume != NULL)
        br_ssl_engine_set_session_parameters(eng, resume);
    if (!br_ssl_client_reset(&r->cc, "localhost", resume != NULL)) {
        free(r);
        return NULL;
    }
    return r;
}

/* The engine slots a TLS 1.2 handshake with the six suites reads. */
static bool same_engine(const br_ssl_engine_context *a, const br_ssl_engine_context *b)
{
    bool ok = a->version_min == b->version_min && a->version_max == b->version_max &&
              a->suites_num == b->suites_num &&
              memcmp(a->suites_buf, b->suites_buf, a->suites_num * sizeof(a->suites_buf[0])) == 0 &&
              a->flags == b->flags && a->prf_sha256 == b->prf_sha256 &&
              a->prf_sha384 == b->prf_sha384 && a->iaes_ctr == b->iaes_ctr &&
              a->ighash == b->ighash && a->ichacha == b->ichacha && a->ipoly == b->ipoly &&
              a->igcm_in == b->igcm_in && a->igcm_out == b->igcm_out &&
              a->ichapol_in == b->ichapol_in && a->ichapol_out == b->ichapol_out &&
              a->iec == b->iec && a->irsavrfy == b->irsavrfy && a->iecdsa == b->iecdsa &&
              a->ibuf_len == b->ibuf_len && a->obuf_len == b->obuf_len;
    for (int id = br_md5_ID; id <= br_sha512_ID; id++)
        ok = ok && br_multihash_getimpl(&a->mhash, id) == br_multihash_getimpl(&b->mhash, id);
    return ok;
}

static bool same_x509(const br_x509_minimal_context *a, const br_x509_minimal_context *b)
{
    bool ok = a->irsa == b->irsa && a->iecdsa == b->iecdsa && a->iec == b->iec &&
              a->dn_hash_impl == b->dn_hash_impl && a->trust_anchors == b->trust_anchors &&
              a->trust_anchors_num == b->trust_anchors_num;
    for (int id = br_md5_ID; id <= br_sha512_ID; id++)
        ok = ok && br_multihash_getimpl(&a->mhash, id) == br_multihash_getimpl(&b->mhash, id);
    return ok;
}

/*
 * The ClientHello records waiting in two engines are equal apart from the
 * 32-byte client random (after the 5-byte record header, the 4-byte
 * handshake header and the 2-byte version). *len is the record's length.
 */
static bool same_hello(const br_ssl_engine_context *a, const br_ssl_engine_context *b, size_t *len)
{
    size_t la, lb;
    const unsigned char *ha = br_ssl_engine_sendrec_buf(a, &la);
    const unsigned char *hb = br_ssl_engine_sendrec_buf(b, &lb);
    *len = la;
    if (ha == NULL || hb == NULL || la != lb || la < 43)
        return false;
    return ha[0] == 22 /* handshake record */ && ha[5] == 1 /* client_hello */ &&
           memcmp(ha, hb, 11) == 0 && memcmp(ha + 43, hb + 43, la - 43) == 0 &&
           memcmp(ha + 11, hb + 11, 32) != 0;
}

static void test_setup(void)
{
    int err = 0;
    n_probe = n_seeder = 0;
    tls_ctx_t *ctx = tls_ctx_new_pem(ca_pem, sizeof(ca_pem) - 1, "test", &err);
    if (!tap_ok(ctx != NULL && ctx->nanchors == 1, "context with one anchor"))
        return;
    tap_ok(n_probe == 4, "making the context looks the four probed implementations up (%d)",
           n_probe);

    /* The wrappers see the calls made inside libbearssl, or the zeros below would prove nothing. */
    n_probe = n_seeder = 0;
    ref_t *ref = ref_new(ctx, NULL);
    if (!tap_ok(ref != NULL, "reference engine starts"))
        return;
    tap_ok(n_probe >= 4 && n_seeder == 1,
           "the full profile probes the CPU on every engine (%d) and runs the system seeder (%d)",
           n_probe, n_seeder);

    n_probe = n_seeder = 0;
    tls_conn_t *c = tls_conn_new(ctx, "localhost", 443, &err);
    if (!tap_ok(c != NULL, "connection starts"))
        return;
    tap_ok(n_probe == 0, "a connection probes nothing (%d calls)", n_probe);
    tap_ok(n_seeder == 0, "a connection does not run BearSSL's system seeder (%d calls)", n_seeder);
    tap_ok(c->cc.eng.rng_init_done == 2 && c->cc.eng.err == BR_ERR_OK,
           "the engine's generator counts as seeded (getrandom) and the engine is running");

    const tls_impl_t *im = &ctx->impl;
    tap_ok(im->aes_ctr != NULL && im->ghash != 0 && im->chacha20 != 0 && im->poly1305 != 0 &&
               im->ec != NULL && im->ecdsa != 0 && im->rsavrfy != 0,
           "every implementation slot of the context is filled");
    tap_ok(same_engine(&c->cc.eng, &ref->cc.eng),
           "engine: versions, suites, flags, hashes, PRFs, AEAD, EC and RSA as the full profile");
    tap_ok(same_x509(&c->xc, &ref->xc),
           "X.509 engine: anchors, hashes, RSA, EC as the full profile");
    tap_ok(c->cc.eng.x509ctx == &c->xw.vtable && c->xw.inner == &c->xc,
           "the chain goes through the watcher to the minimal engine");
    size_t len = 0;
    bool same = same_hello(&c->cc.eng, &ref->cc.eng, &len);
    tap_ok(same, "ClientHello: the same %zu bytes apart from the random", len);
    tap_ok(memcmp(c->cc.eng.server_name, "localhost", 10) == 0, "SNI: the server name is set");
    tls_conn_free(c);
    free(ref);

    /* With a session in the cache, both offer it: the same ClientHello again. */
    br_ssl_session_parameters p = {0};
    p.session_id_len = 32;
    for (size_t i = 0; i < 32; i++)
        p.session_id[i] = (unsigned char)(i + 1);
    p.version = BR_TLS12;
    p.cipher_suite = BR_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256;
    memset(p.master_secret, 0x5a, sizeof(p.master_secret));
    session_store(ctx, "localhost", 443, &p);
    ref = ref_new(ctx, &p);
    n_probe = n_seeder = 0;
    c = tls_conn_new(ctx, "localhost", 443, &err);
    if (tap_ok(c != NULL && ref != NULL, "resuming connection and reference start")) {
        tap_ok(n_probe == 0 && n_seeder == 0, "resuming: no probe, no seeder");
        same = same_hello(&c->cc.eng, &ref->cc.eng, &len);
        size_t hlen;
        const unsigned char *hello = br_ssl_engine_sendrec_buf(&c->cc.eng, &hlen);
        tap_ok(same && hello[43] == 32 && memcmp(hello + 44, p.session_id, 32) == 0,
               "resuming ClientHello: the same %zu bytes, with the session ID", len);
    }
    tls_conn_free(c);
    free(ref);
    tls_ctx_free(ctx);
}

int main(void)
{
    log_setup(LOG_WARN, LOG_FORMAT_TEXT);
    test_setup();
    return tap_done();
}
