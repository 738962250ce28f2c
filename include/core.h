/* SPDX-License-Identifier: MIT */
/*
 * core.h - the toolkit every module shares: container_of, ARRAY_SIZE,
 * allocation that aborts with a message, a hex digit's value, one UTF-8
 * decoder, one intrusive singly linked FIFO queue, sizes with a unit and the memory limit of the
 * process's cgroup, a monotonic clock in ns. The bottom of the include graph: it includes nothing of the project's.
 */
#ifndef TGRING_CORE_H
#define TGRING_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* The struct of `type` whose member `member` is at `p`. */
#define container_of(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))

/* Elements in a true array (not a pointer). */
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/*
 * malloc, calloc, realloc and strdup that never return NULL: on failure they
 * print one line naming the size to stderr and abort (internal allocation
 * failure is not recoverable; sizes a peer controls are capped before they
 * get here). xmalloc(0) and xcalloc(0, ..) return a unique pointer.
 */
void *xmalloc(size_t size);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t size);
char *xstrdup(const char *s);
/* Copy of s[0..len) with a NUL after it. */
char *xstrndup(const char *s, size_t len);

/* CLOCK_MONOTONIC in ns, read now (a vDSO call): for durations finer than the loop's ms. */
static inline uint64_t core_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The value of one hexadecimal digit (either case), or -1 for any other byte. */
static inline int core_hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Replacement character, which ill-formed UTF-8 decodes to. */
#define CORE_UTF8_BAD 0xFFFDu

/*
 * Decodes the UTF-8 sequence at s[0..len), len > 0 (RFC 3629: no overlong
 * forms, no surrogates, nothing above U+10FFFF). A well-formed sequence puts
 * its code point in *cp and returns its length, 1..4. An ill-formed one puts
 * CORE_UTF8_BAD in *cp and returns minus the length of its maximal subpart
 * (Unicode 15, 3.9, "U+FFFD substitution of maximal subparts"), -1..-3: skip
 * that many bytes and decode on. A NUL byte decodes as U+0000.
 */
int core_utf8_decode(const char *s, size_t len, uint32_t *cp);

/* True when s[0..len) is entirely well-formed UTF-8. */
int core_utf8_valid(const char *s, size_t len);

/*
 * Copies the longest prefix of NUL-terminated `s` that fits in `max` bytes as
 * valid UTF-8 (for a text column, which refuses anything else): each
 * ill-formed sequence becomes '?', a character that does not fit whole is
 * left out. OUT: dst (max bytes; no NUL is added). Returns the bytes copied.
 */
size_t core_utf8_copy(char *dst, size_t max, const char *s);

/*
 * Strict decimal s[0..len): digits only, no sign or spaces, no overflow. OUT: out (untouched
 * on failure). Returns 0 or -EINVAL.
 */
int core_parse_u64(const char *s, size_t len, uint64_t *out);

/*
 * Parses a size as compose writes mem_limit: decimal digits, then optionally one unit, b, k, m
 * or g (either case; k = 1024 bytes). OUT: out (untouched on failure). Returns 0, or -EINVAL
 * for anything else (empty, a sign, spaces, another unit) and for sizes past 2^62.
 */
int core_parse_size(const char *s, uint64_t *out);

/*
 * Reads a cgroup memory limit file's text: cgroup v2's memory.max ("max" or a number) or v1's
 * memory.limit_in_bytes (a number), with or without a trailing newline. "max" and numbers of
 * 2^62 or more (what v1 writes for no limit, rounded to its page size) mean no limit. OUT: out,
 * the limit in bytes, 0 for none. Returns 0, or -EINVAL when the text is neither.
 */
int core_parse_memory_max(const char *text, uint64_t *out);

/*
 * The memory limit of this process's cgroup: the smallest of cgroup v2's memory.max and
 * v1's memory.limit_in_bytes over the process's own group (from /proc/self/cgroup) and its
 * ancestors, and of the files at the mount's root (what a container sees of its own group).
 * `root` is where the hierarchies are mounted, "/sys/fs/cgroup" outside tests. OUT: out (0 when
 * no group sets a limit), from (a static description of the file the limit came from, or
 * "none"). Returns 0; files that are missing or unreadable count as no limit.
 */
int core_memory_limit(const char *root, uint64_t *out, const char **from);

/*
 * One intrusive FIFO queue: the element embeds a `core_qlink_t`, the owner a
 * `core_queue_t`; O(1) push at the tail, push at the head and pop at the
 * head. An element is in at most one queue through one link at a time.
 * Use container_of to get from a link back to its element.
 */
typedef struct core_qlink {
    struct core_qlink *next;
} core_qlink_t;

typedef struct core_queue {
    core_qlink_t *head; /* oldest, NULL when empty */
    core_qlink_t *tail; /* newest; meaningless when head is NULL */
} core_queue_t;

static inline void core_queue_init(core_queue_t *q)
{
    q->head = NULL;
    q->tail = NULL;
}

static inline int core_queue_empty(const core_queue_t *q)
{
    return q->head == NULL;
}

static inline void core_queue_push(core_queue_t *q, core_qlink_t *l)
{
    l->next = NULL;
    if (q->head == NULL)
        q->head = l;
    else
        q->tail->next = l;
    q->tail = l;
}

static inline void core_queue_push_head(core_queue_t *q, core_qlink_t *l)
{
    l->next = q->head;
    if (q->head == NULL)
        q->tail = l;
    q->head = l;
}

/* Removes and returns the oldest link, or NULL when empty. */
static inline core_qlink_t *core_queue_pop(core_queue_t *q)
{
    core_qlink_t *l = q->head;
    if (l != NULL) {
        q->head = l->next;
        l->next = NULL;
    }
    return l;
}

/*
 * Removes `l`, whose predecessor in the queue is `prev` (NULL: l is the
 * head). For removal during a walk that keeps the predecessor.
 */
static inline void core_queue_remove_after(core_queue_t *q, core_qlink_t *prev, core_qlink_t *l)
{
    if (prev == NULL)
        q->head = l->next;
    else
        prev->next = l->next;
    if (q->tail == l)
        q->tail = prev;
    l->next = NULL;
}

#endif
