/* SPDX-License-Identifier: MIT */
/*
 * tap.h - what the C unit tests and the fuzz corpus replay share: TAP output
 * (one "ok N - ..." line per check, the plan printed last), copies of input
 * that sit against an inaccessible page so that a stray read faults, and
 * sorted walks over corpus directories.
 *
 * Header only: a test program is one translation unit and gets its own
 * counters. Every line is flushed as it is printed, because several tests
 * fork and a child must not print the parent's buffered lines again.
 */
#ifndef TGRING_TESTS_TAP_H
#define TGRING_TESTS_TAP_H

#include <dirent.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- TAP ---------------------------------------------------------------------------- */

static int tap_n;      /* checks printed so far */
static int tap_failed; /* checks that printed "not ok" */

static inline bool tap_vok(bool cond, const char *fmt, va_list ap)
{
    printf("%sok %d - ", cond ? "" : "not ", ++tap_n);
    vprintf(fmt, ap);
    printf("\n");
    fflush(stdout);
    if (!cond)
        tap_failed++;
    return cond;
}

/* Prints one check, described by fmt (printf), and returns cond. */
static inline bool tap_ok(bool cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline bool tap_ok(bool cond, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tap_vok(cond, fmt, ap);
    va_end(ap);
    return cond;
}

/* Prints text as diagnostics, one "# " line for each of its lines. */
static inline void tap_diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void tap_diag(const char *fmt, ...)
{
    va_list ap;
    char *text;
    va_start(ap, fmt);
    int n = vasprintf(&text, fmt, ap);
    va_end(ap);
    if (n < 0)
        abort();
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n');
        int len = nl ? (int)(nl - p) : (int)strlen(p);
        printf("# %.*s\n", len, p);
        p += len + (nl != NULL);
    }
    fflush(stdout);
    free(text);
}

/* Like tap_ok(got == want, ...), and on failure a diagnostic line with both values. */
static inline bool tap_eq_int(long long got, long long want, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline bool tap_eq_int(long long got, long long want, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bool ok = tap_vok(got == want, fmt, ap);
    va_end(ap);
    if (!ok)
        tap_diag("got %lld, want %lld", got, want);
    return ok;
}

/* Prints the plan after the checks; returns the exit status: 0, or 1 if any check failed. */
static inline int tap_done(void)
{
    printf("1..%d\n", tap_n);
    fflush(stdout);
    return tap_failed ? 1 : 0;
}

/* Prints an empty plan that says why the whole program is skipped; returns 77 (skip). */
static inline int tap_skip_all(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline int tap_skip_all(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("1..0 # SKIP ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
    return 77;
}

/* Stops the program: the harness counts the run as failed whatever came before. */
static inline void tap_bail(const char *why) __attribute__((noreturn));
static inline void tap_bail(const char *why)
{
    printf("Bail out! %s\n", why);
    fflush(stdout);
    exit(1);
}

/* ---- guard pages -------------------------------------------------------------------- */

/*
 * A mapping of read-write pages between two PROT_NONE pages, kept from one
 * copy to the next and grown as needed. Zero-initialize; free with
 * tap_guard_free().
 */
typedef struct tap_guard {
    char *map; /* guard page, rw bytes, guard page; NULL before the first copy */
    size_t rw; /* bytes between the guard pages, a whole number of pages */
    bool ro;   /* the rw bytes are read-only now */
} tap_guard_t;

#define TAP_GUARD_END 0u   /* the copy ends where the upper guard page begins */
#define TAP_GUARD_START 1u /* the copy starts where the lower guard page ends */
#define TAP_GUARD_RO 2u    /* the copy is read-only, so that a write faults too */

static inline void tap_guard_free(tap_guard_t *g)
{
    if (g->map != NULL)
        munmap(g->map, g->rw + 2 * (size_t)sysconf(_SC_PAGESIZE));
    g->map = NULL;
    g->rw = 0;
    g->ro = false;
}

/*
 * Copies data[0..n) against a guard page, at the end or the start as flags
 * say. Returns the copy, valid until the next copy into g. Exits on failure.
 */
static inline char *tap_guard_copy(tap_guard_t *g, const void *data, size_t n, unsigned flags)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t rw = n == 0 ? page : (n + page - 1) / page * page;
    if (g->map == NULL || rw > g->rw) {
        tap_guard_free(g);
        char *m = mmap(NULL, rw + 2 * page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) {
            perror("mmap");
            exit(1);
        }
        g->map = m;
        g->rw = rw;
        g->ro = true;
    }
    char *lo = g->map + page;
    if (g->ro && mprotect(lo, g->rw, PROT_READ | PROT_WRITE) != 0) {
        perror("mprotect");
        exit(1);
    }
    g->ro = false;
    char *p = (flags & TAP_GUARD_START) ? lo : lo + g->rw - n;
    if (n > 0)
        memcpy(p, data, n);
    if (flags & TAP_GUARD_RO) {
        if (mprotect(lo, g->rw, PROT_READ) != 0) {
            perror("mprotect");
            exit(1);
        }
        g->ro = true;
    }
    return p;
}

/* ---- files -------------------------------------------------------------------------- */

/*
 * Reads a whole file into a heap copy of exactly its size, so that the
 * address sanitizer catches a read one past the end. OUT: len. Returns the
 * copy (the caller frees it), or NULL when the file cannot be read.
 */
static inline char *tap_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0)
        n = ftell(f);
    char *buf = n >= 0 && fseek(f, 0, SEEK_SET) == 0 ? malloc(n > 0 ? (size_t)n : 1) : NULL;
    if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static inline int tap_cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * The entries of directory dir whose names do not start with '.', as
 * "dir/name" paths in strcmp order, so that runs are repeatable. OUT: count.
 * Returns the list (free it with tap_free_list), or NULL when dir cannot be
 * opened.
 */
static inline char **tap_list_dir(const char *dir, size_t *count)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return NULL;
    char **names = NULL;
    size_t n = 0, cap = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            names = realloc(names, cap * sizeof(*names));
            if (names == NULL)
                abort();
        }
        if (asprintf(&names[n++], "%s/%s", dir, e->d_name) < 0)
            abort();
    }
    closedir(d);
    if (names == NULL && (names = malloc(sizeof(*names))) == NULL)
        abort();
    qsort(names, n, sizeof(*names), tap_cmp_str);
    *count = n;
    return names;
}

static inline void tap_free_list(char **names, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
}

/*
 * Calls fn(file, arg) for path if it is a file, or for every file below it if
 * it is a directory, in tap_list_dir order. A path that does not exist and a
 * directory that cannot be opened are failed checks.
 */
static inline void tap_walk(const char *path, void (*fn)(const char *file, void *arg), void *arg)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        tap_ok(false, "%s: missing", path);
        return;
    }
    if (!S_ISDIR(st.st_mode)) {
        fn(path, arg);
        return;
    }
    size_t count;
    char **names = tap_list_dir(path, &count);
    if (names == NULL) {
        tap_ok(false, "%s: cannot open", path);
        return;
    }
    for (size_t i = 0; i < count; i++)
        tap_walk(names[i], fn, arg);
    tap_free_list(names, count);
}

/* What a corpus test does with each file: its path and an exact-size copy of its bytes. */
typedef void tap_corpus_fn(const char *path, const char *data, size_t len);

static inline void tap_corpus_file(const char *path, void *arg)
{
    tap_corpus_fn *const *fn = arg;
    size_t len;
    char *data = tap_read_file(path, &len);
    if (data == NULL) {
        tap_ok(false, "%s: cannot read", path);
        return;
    }
    (*fn)(path, data, len);
    free(data);
}

/*
 * Runs fn over every file named in argv[1..argc) or found below a directory
 * named there (see tap_walk). A file that cannot be read, and no file at all,
 * are failed checks; fn prints the checks of the others. Returns tap_done().
 */
static inline int tap_corpus(int argc, char **argv, tap_corpus_fn *fn)
{
    for (int i = 1; i < argc; i++)
        tap_walk(argv[i], tap_corpus_file, &fn);
    if (tap_n == 0)
        tap_ok(false, "no corpus files");
    return tap_done();
}

#endif
