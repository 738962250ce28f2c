/* SPDX-License-Identifier: MIT */
/*
 * memlimit.c - sizes with a unit, and the memory limit of the process's cgroup (v2
 * memory.max, v1 memory.limit_in_bytes). The worker sizes its request buffers to it; see
 * worker_plan() and docs/deploy.md.
 */
#include "core.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Past this a limit means "none" (v1 writes 2^63 - 4096 for no limit). */
#define MEM_NONE_FROM (UINT64_C(1) << 62)

int core_parse_u64(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0)
        return -EINVAL;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -EINVAL;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int core_parse_size(const char *s, uint64_t *out)
{
    size_t len = strlen(s);
    unsigned shift = 0;
    if (len > 0) {
        switch (s[len - 1]) {
        case 'b':
        case 'B':
            shift = 0;
            len--;
            break;
        case 'k':
        case 'K':
            shift = 10;
            len--;
            break;
        case 'm':
        case 'M':
            shift = 20;
            len--;
            break;
        case 'g':
        case 'G':
            shift = 30;
            len--;
            break;
        default:
            break;
        }
    }
    uint64_t v;
    if (core_parse_u64(s, len, &v) < 0 || v > (MEM_NONE_FROM >> shift))
        return -EINVAL;
    v <<= shift;
    if (v >= MEM_NONE_FROM)
        return -EINVAL;
    *out = v;
    return 0;
}

int core_parse_memory_max(const char *text, uint64_t *out)
{
    size_t len = strlen(text);
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == ' '))
        len--;
    if (len == 3 && memcmp(text, "max", 3) == 0) {
        *out = 0;
        return 0;
    }
    uint64_t v;
    if (core_parse_u64(text, len, &v) < 0)
        return -EINVAL;
    *out = v >= MEM_NONE_FROM ? 0 : v;
    return 0;
}

/* The limit in `path`, 0 when none, missing or unreadable. */
static uint64_t read_limit(const char *path)
{
    char buf[64];
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    uint64_t v;
    return core_parse_memory_max(buf, &v) == 0 ? v : 0;
}

/* Lowers *best to the limit of `dir`/`file` and its ancestors up to `root` (exclusive). */
static void walk_up(const char *root, const char *group, const char *file, uint64_t *best,
                    const char **from, const char *what)
{
    char path[4096];
    char rel[4096];
    snprintf(rel, sizeof(rel), "%s", group);
    for (;;) {
        size_t len = strlen(rel);
        while (len > 0 && rel[len - 1] == '/')
            rel[--len] = '\0';
        if (snprintf(path, sizeof(path), "%s%s/%s", root, rel, file) < (int)sizeof(path)) {
            uint64_t v = read_limit(path);
            if (v != 0 && (*best == 0 || v < *best)) {
                *best = v;
                *from = what;
            }
        }
        if (len == 0)
            return;
        char *slash = strrchr(rel, '/');
        if (slash == NULL)
            return;
        *slash = '\0';
    }
}

int core_memory_limit(const char *root, uint64_t *out, const char **from)
{
    char v2root[512], v1root[512];
    uint64_t best = 0;
    *from = "none";
    snprintf(v2root, sizeof(v2root), "%s", root);
    snprintf(v1root, sizeof(v1root), "%s/memory", root);
    /* The mount's root: a container with its own cgroup namespace (or v1's usual mount)
     * sees its own group there. */
    walk_up(v2root, "", "memory.max", &best, from, "cgroup v2 memory.max");
    walk_up(v1root, "", "memory.limit_in_bytes", &best, from, "cgroup v1 memory.limit_in_bytes");
    FILE *f = fopen("/proc/self/cgroup", "re");
    if (f != NULL) {
        char line[4096];
        while (fgets(line, sizeof(line), f) != NULL) {
            line[strcspn(line, "\n")] = '\0';
            char *c1 = strchr(line, ':');
            char *c2 = c1 != NULL ? strchr(c1 + 1, ':') : NULL;
            if (c2 == NULL || c2[1] != '/')
                continue;
            *c2 = '\0';
            const char *ctrl = c1 + 1, *group = c2 + 1;
            if (strcmp(line, "0") == 0 && ctrl[0] == '\0') {
                walk_up(v2root, group, "memory.max", &best, from, "cgroup v2 memory.max");
                continue;
            }
            /* v1: "N:memory:/path" or a comma list holding "memory". */
            char ctrls[256];
            snprintf(ctrls, sizeof(ctrls), ",%s,", ctrl);
            if (strstr(ctrls, ",memory,") != NULL)
                walk_up(v1root, group, "memory.limit_in_bytes", &best, from,
                        "cgroup v1 memory.limit_in_bytes");
        }
        fclose(f);
    }
    *out = best;
    return 0;
}
