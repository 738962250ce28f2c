/* SPDX-License-Identifier: MIT */
/*
 * http1.h - the HTTP/1 lexer that the server (http) and the client (httpc)
 * share: character classes (RFC 9110 5.6.2 tchar, 5.5 field-value bytes),
 * one header type and its lookup, comma-list elements, decimal digits
 * (Content-Length), the chunked decoder, and one body reader that frames a
 * message body by Content-Length, chunked or the end of the connection,
 * with how input buffers grow.
 *
 * Pure functions over bytes: no I/O, no allocation, no reactor. The bottom
 * of the http module; http_parse.h (requests) and httpc_parse.h (responses)
 * build on it. Depends on nothing of the project's.
 */
#ifndef TGRING_HTTP1_H
#define TGRING_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- characters --------------------------------------------------------- */

#define HTTP_CT_TCHAR 0x01 /* tchar: methods, field names, codings, list tokens */
#define HTTP_CT_VCHAR 0x02 /* visible ASCII, 0x21..0x7e */
#define HTTP_CT_FIELD 0x04 /* field-value byte: VCHAR, obs-text, SP, HTAB (no CTL, no DEL) */

/* The class bits of every byte. */
extern const uint8_t http_ctype[256];

static inline bool http_is_tchar(char c)
{
    return (http_ctype[(unsigned char)c] & HTTP_CT_TCHAR) != 0;
}

static inline bool http_is_vchar(char c)
{
    return (http_ctype[(unsigned char)c] & HTTP_CT_VCHAR) != 0;
}

static inline bool http_is_field_char(char c)
{
    return (http_ctype[(unsigned char)c] & HTTP_CT_FIELD) != 0;
}

/* OWS, RFC 9110 5.6.3: SP or HTAB. */
static inline bool http_is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static inline bool http_is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Case-insensitive comparison of a (ptr, len) view with a NUL-terminated
 * literal; only ASCII letters are folded. */
bool http_token_eq(const char *s, size_t len, const char *lit);

/* ---- header fields ------------------------------------------------------ */

#define HTTP_MAX_HEADERS 64 /* fields a request or response head may have */

/* A field line: views into the parsed buffer, never NUL-terminated. */
typedef struct http_header {
    const char *name;
    size_t name_len;
    const char *value; /* leading and trailing OWS stripped */
    size_t value_len;
} http_header_t;

/* The first of headers[0..n) named `name` (case-insensitive); NULL when absent. */
const http_header_t *http_header_find(const http_header_t *headers, size_t n, const char *name);

/* How a list element goes on after its leading token. */
enum {
    HTTP_LIST_BARE,   /* nothing but OWS: the element is exactly the token */
    HTTP_LIST_PARAMS, /* OWS, then ';' and parameters */
    HTTP_LIST_OTHER,  /* anything else: the element is not a token */
};

/* One element of a comma-separated list (RFC 9110 5.6.1). */
typedef struct http_list_item {
    const char *token; /* the tchars the element starts with; may be empty */
    size_t token_len;
    int rest; /* HTTP_LIST_BARE, _PARAMS or _OTHER */
} http_list_item_t;

/*
 * Steps through the list at *pp..end: skips empty elements (commas and OWS)
 * and describes the next element in *item, leaving *pp at the comma after it
 * (or end). Returns false when no element is left.
 */
bool http_list_next(const char **pp, const char *end, http_list_item_t *item);

/* True when the list s[0..len) has an element that is exactly `tok` (any case). */
bool http_list_has(const char *s, size_t len, const char *tok);

/* Digits of a decimal field value accepted: 18 always fit in int64_t. */
#define HTTP_MAX_DIGITS 18

/* The value of s[0..len) when it is 1 to HTTP_MAX_DIGITS decimal digits
 * (Content-Length, Retry-After); -1 otherwise. */
int64_t http_parse_digits(const char *s, size_t len);

/* ---- bodies ------------------------------------------------------------- */

/* Incremental decoder for the chunked transfer coding; keep one per message. */
typedef struct http_chunked {
    int state;          /* internal */
    uint64_t remaining; /* bytes left in the current chunk */
    uint64_t total;     /* decoded bytes so far */
    uint64_t max_body;  /* cap on total (413 past it) */
    size_t aux;         /* internal: bytes of size line/extension/trailer seen */
} http_chunked_t;

void http_chunked_init(http_chunked_t *d, uint64_t max_body);

/*
 * Decodes chunked data in place. On entry buf[0..*len) holds raw bytes that
 * follow what earlier calls consumed. On return the decoded bytes of this
 * call are at buf[0..*len) (the caller appends them to the body).
 * Returns >= 0 when the body is complete: the number of bytes after the
 * terminating CRLF, which are left at buf + *len .. buf + *len + ret (the next
 * message, moved down); -EAGAIN when more input is needed (all input
 * was consumed); -EBADMSG on malformed input (400); -EMSGSIZE when the body
 * exceeds max_body (413); on an error *len is what this call decoded, to be
 * discarded. Chunk extensions and trailer fields are accepted and discarded,
 * each capped in size. Once the body is complete, a further call leaves all
 * its input as following bytes.
 */
long http_chunked_decode(http_chunked_t *d, char *buf, size_t *len);

/* How a message body is framed (RFC 9112 6.3). */
typedef enum http_body_mode {
    HTTP_BODY_NONE,    /* no body: a HEAD response, 204, 304 */
    HTTP_BODY_LENGTH,  /* Content-Length bytes (0 for a request without a body) */
    HTTP_BODY_CHUNKED, /* the chunked transfer coding */
    HTTP_BODY_EOF,     /* a response with neither: up to the end of the connection */
} http_body_mode_t;

/* The body reader of one message: framing, cap and progress. */
typedef struct http_body {
    http_body_mode_t mode;
    uint64_t length;        /* HTTP_BODY_LENGTH: the Content-Length, bytes */
    uint64_t max;           /* cap on the (decoded) body, bytes */
    size_t len;             /* body bytes so far (decoded), at the start of the buffer */
    http_chunked_t chunked; /* HTTP_BODY_CHUNKED: the decoder */
} http_body_t;

void http_body_init(http_body_t *b, http_body_mode_t mode, uint64_t length, uint64_t max);

/*
 * Reads the body from buf[0..*len): the bytes after the head, of which the
 * first b->len are the body as earlier calls left it and the rest is new.
 * A chunked body is decoded in place. Afterwards buf[0..b->len) is the body
 * so far and *len counts the bytes still in buf (less than before when
 * chunked framing was removed).
 * Returns >= 0 when the body is complete: the number of bytes that follow
 * it, at buf + b->len (the next message, or bytes that should not be there);
 * -EAGAIN when more bytes are needed (HTTP_BODY_EOF: until the connection
 * ends, when the body is buf[0..b->len)); -EBADMSG for a malformed chunked
 * body; -EMSGSIZE when the body is over b->max (for Content-Length at once,
 * before its bytes arrive). After an error the buffer's contents are to be
 * discarded.
 */
long http_body_read(http_body_t *b, char *buf, size_t *len);

/*
 * The capacity a message buffer of `cap` bytes (0: none yet, then `min`)
 * grows to by doubling so that `need` bytes fit. Both sides grow their
 * input buffers so; each applies its own cap or budget to the result.
 */
static inline size_t http_buf_grow(size_t cap, size_t need, size_t min)
{
    if (cap == 0)
        cap = min;
    while (cap < need)
        cap *= 2;
    return cap;
}

#endif
