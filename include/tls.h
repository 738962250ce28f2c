/* SPDX-License-Identifier: MIT */
/*
 * tls.h - TLS 1.2 client connections over BearSSL, driven by the caller's
 * ring reads and writes (never by BearSSL's blocking br_sslio helpers), and
 * the trust anchors they are checked against.
 *
 * A tls_conn_t is BearSSL's engine plus its full-size bidirectional record
 * buffer: the caller (httpc) receives from the socket straight into the
 * window tls_conn_recvrec_buf() gives, sends straight from the window
 * tls_conn_sendrec_buf() gives, and moves plaintext through the
 * sendapp/recvapp windows; after every completion it asks tls_conn_state()
 * what the engine wants next. The input and output halves of the buffer are
 * separate, so one recv and one send may be in flight at the same time.
 *
 * Only TLS 1.2 with ECDHE and an AEAD cipher (AES-128/256-GCM or
 * ChaCha20-Poly1305, ECDSA or RSA certificates) is offered; a server that
 * wants anything else fails the handshake. The server's name is sent as SNI
 * and checked against its certificate. Sessions are cached per server name
 * and port in the tls_ctx_t and offered again on the next connection to the
 * same server (resumption).
 *
 * Memory per connection: BR_SSL_BUFSIZE_BIDI (33178) bytes of record buffer
 * plus about 7 KB of engine and X.509 state, allocated by tls_conn_new() and
 * released by tls_conn_free(): about 40 KB while connected, nothing after.
 *
 * Depends on core.
 */
#ifndef TGRING_TLS_H
#define TGRING_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tls_ctx tls_ctx_t;
typedef struct tls_conn tls_conn_t;

/* The default trust store when TELEGRAM_CA_FILE is not set. */
#define TLS_DEFAULT_CA_FILE "/etc/ssl/certs/ca-certificates.crt"

/* CA bundles larger than this are refused (the Debian bundle is about 200 KB). */
#define TLS_MAX_CA_FILE (16u << 20)

/* Servers (name and port) kept in a context's session cache (oldest replaced). */
#define TLS_SESSION_CACHE 8

/* What loading a bundle found. */
typedef struct tls_ctx_info {
    size_t anchors; /* certificates turned into trust anchors */
    size_t skipped; /* PEM objects that did not decode as a usable certificate */
} tls_ctx_info_t;

/*
 * Loads the trust anchors from the PEM bundle at `ca_file` (NULL: the system
 * bundle, TLS_DEFAULT_CA_FILE). Every "CERTIFICATE" object is decoded with
 * BearSSL's X.509 decoder; its subject DN and RSA or EC public key are
 * copied into a trust anchor (flagged as a CA when the certificate says so).
 * A certificate that fails to decode, or whose base64 is broken, is skipped
 * with a warning in the log and counted; the others still load.
 * Returns the context, or NULL with *err: -ENOENT/-EACCES/... (cannot read
 * the file), -EFBIG (over TLS_MAX_CA_FILE), -ENOKEY (no usable certificate
 * at all). Reads the file with ordinary blocking I/O: call it at start.
 */
tls_ctx_t *tls_ctx_new(const char *ca_file, int *err);

/* The same from a bundle in memory, pem[0..len). `source` names it in log lines. */
tls_ctx_t *tls_ctx_new_pem(const char *pem, size_t len, const char *source, int *err);

/* What tls_ctx_new() loaded. */
tls_ctx_info_t tls_ctx_info(const tls_ctx_t *ctx);

/* Frees the anchors and wipes the session cache. No connection may still use `ctx`. */
void tls_ctx_free(tls_ctx_t *ctx);

/* Forgets every cached session (the next handshakes are full ones). */
void tls_ctx_flush_sessions(tls_ctx_t *ctx);

/* Engine states, as in BearSSL's br_ssl_engine_current_state(). */
enum {
    TLS_CLOSED = 0x0001,  /* the engine is finished: see tls_conn_error() */
    TLS_SENDREC = 0x0002, /* record bytes are waiting to be sent */
    TLS_RECVREC = 0x0004, /* the engine wants record bytes from the peer */
    TLS_SENDAPP = 0x0008, /* plaintext can be written */
    TLS_RECVAPP = 0x0010, /* plaintext can be read */
};

/*
 * Starts a client connection to `server_name` (a DNS name: SNI and the name
 * the certificate must carry; copied) on `port` (only a cache key here). The
 * RNG is seeded with 32 bytes from getrandom(). If `ctx` holds a session for
 * this name and port, resumption is offered.
 * The ClientHello is ready in the sendrec window on return.
 * Returns the connection, or NULL with *err: -EINVAL (name empty or longer
 * than 255 bytes), -EIO (getrandom failed or the engine refused to start).
 */
tls_conn_t *tls_conn_new(tls_ctx_t *ctx, const char *server_name, uint16_t port, int *err);

/* Wipes the keys and frees the connection and its buffer. Nothing may point into them. */
void tls_conn_free(tls_conn_t *c);

/* Bytes one connection allocates (engine, X.509 state and record buffer), for sizing. */
size_t tls_conn_memory(void);

/*
 * The engine's state, a mask of TLS_*. When it first finds the handshake
 * complete it records the session in the context for later resumption and
 * notes whether this handshake was a resumed one (tls_conn_resumed()).
 * Call it after every ack and every completion.
 */
unsigned tls_conn_state(tls_conn_t *c);

/*
 * Zero-copy windows, as BearSSL's br_ssl_engine_*_buf/_ack: the _buf call
 * returns where the bytes go or come from and how many (*len), or NULL when
 * the direction is not available now; _ack says how many were used. A
 * window stays valid until it is acked, and the recvrec and sendrec windows
 * stay put while other calls are made, so a ring recv and a ring send may
 * point into them while in flight.
 */
unsigned char *tls_conn_sendrec_buf(tls_conn_t *c, size_t *len);
void tls_conn_sendrec_ack(tls_conn_t *c, size_t len);
unsigned char *tls_conn_recvrec_buf(tls_conn_t *c, size_t *len);
void tls_conn_recvrec_ack(tls_conn_t *c, size_t len);
unsigned char *tls_conn_sendapp_buf(tls_conn_t *c, size_t *len);
void tls_conn_sendapp_ack(tls_conn_t *c, size_t len);
unsigned char *tls_conn_recvapp_buf(tls_conn_t *c, size_t *len);
void tls_conn_recvapp_ack(tls_conn_t *c, size_t len);

/* Turns the plaintext written so far into a record to send now. */
void tls_conn_flush(tls_conn_t *c);

/* Starts a clean close: a close_notify alert is queued for sending. */
void tls_conn_close(tls_conn_t *c);

/* True once the handshake has completed (application data may flow). */
bool tls_conn_ready(const tls_conn_t *c);

/* True if the completed handshake resumed a cached session (no certificate was sent). */
bool tls_conn_resumed(const tls_conn_t *c);

/*
 * BearSSL's error code: 0 while nothing failed, and also after a clean close
 * (the peer's close_notify); BR_ERR_* or BR_ERR_X509_* otherwise, or
 * 256 + alert (alert received) / 512 + alert (alert sent).
 */
int tls_conn_error(const tls_conn_t *c);

/* The name a connection was started for. */
const char *tls_conn_server_name(const tls_conn_t *c);

/*
 * BearSSL's name of an error code ("BR_ERR_X509_NOT_TRUSTED"); for alerts
 * "BR_ERR_RECV_FATAL_ALERT" or "BR_ERR_SEND_FATAL_ALERT"; "BR_ERR_UNKNOWN"
 * for codes BearSSL does not define.
 */
const char *tls_error_name(int err);

/* A short explanation of an error code ("certificate not trusted"). */
const char *tls_error_text(int err);

/*
 * Writes "NAME (code): text" into buf[0..cap) (NUL-terminated, cut to fit),
 * with the alert's number and name for alert codes. Returns buf.
 */
char *tls_strerror(int err, char *buf, size_t cap);

/* True for errors that say the certificate chain was rejected (BR_ERR_X509_*). */
bool tls_error_is_certificate(int err);

#endif
