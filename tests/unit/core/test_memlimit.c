/* SPDX-License-Identifier: MIT */
/*
 * test_memlimit.c - sizes with a unit (TGRING_MEMORY_LIMIT), the text of cgroup memory limit
 * files, and the search for the limit under a cgroup mount laid out in a temporary directory.
 */
#include "core.h"
#include "tap.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void size_ok(const char *s, uint64_t want)
{
    uint64_t v = 12345;
    int r = core_parse_size(s, &v);
    tap_ok(r == 0 && v == want, "size \"%s\" = %llu (got %d, %llu)", s, (unsigned long long)want, r,
           (unsigned long long)v);
}

static void size_bad(const char *s)
{
    uint64_t v = 12345;
    int r = core_parse_size(s, &v);
    tap_ok(r == -EINVAL && v == 12345, "size \"%s\" refused, output untouched", s);
}

static void max_ok(const char *s, uint64_t want)
{
    uint64_t v = 12345;
    int r = core_parse_memory_max(s, &v);
    tap_ok(r == 0 && v == want, "memory file \"%.*s\" = %llu (got %d, %llu)",
           (int)strcspn(s, "\n"), s, (unsigned long long)want, r, (unsigned long long)v);
}

static void put(const char *dir, const char *rel, const char *text)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    for (char *p = path + strlen(dir) + 1; (p = strchr(p, '/')) != NULL; p++) {
        *p = '\0';
        mkdir(path, 0700);
        *p = '/';
    }
    FILE *f = fopen(path, "w");
    if (f == NULL)
        tap_bail("cannot write the fake cgroup tree");
    fputs(text, f);
    fclose(f);
}

int main(void)
{
    size_ok("0", 0);
    size_ok("1048576", 1048576);
    size_ok("512b", 512);
    size_ok("64k", 64 << 10);
    size_ok("256m", 256u << 20);
    size_ok("256M", 256u << 20);
    size_ok("2g", UINT64_C(2) << 30);
    size_bad("");
    size_bad("m");
    size_bad("-1m");
    size_bad("+1m");
    size_bad(" 1m");
    size_bad("1m ");
    size_bad("1mb");
    size_bad("1t");
    size_bad("1.5g");
    size_bad("99999999999999999999");
    size_bad("4294967296g");

    max_ok("max\n", 0);
    max_ok("max", 0);
    max_ok("268435456\n", 268435456);
    max_ok("9223372036854771712\n", 0); /* cgroup v1: no limit */
    uint64_t v = 7;
    tap_ok(core_parse_memory_max("", &v) == -EINVAL && v == 7, "empty file refused");
    tap_ok(core_parse_memory_max("12 MB\n", &v) == -EINVAL && v == 7, "a unit refused");

    /* A mount with nothing in it: no limit. */
    char dir[] = "/tmp/tgring-memlimit-XXXXXX";
    if (mkdtemp(dir) == NULL)
        tap_bail("mkdtemp");
    const char *from = NULL;
    v = 7;
    core_memory_limit(dir, &v, &from);
    tap_ok(v == 0 && strcmp(from, "none") == 0, "no files: no limit (%s)", from);

    /* What a container sees: its own group at the mount's root, v2 and v1 (the smaller wins). */
    put(dir, "memory.max", "max\n");
    core_memory_limit(dir, &v, &from);
    tap_ok(v == 0, "v2 \"max\" at the root: no limit");
    put(dir, "memory.max", "268435456\n");
    core_memory_limit(dir, &v, &from);
    tap_ok(v == 268435456 && strstr(from, "v2") != NULL, "v2 memory.max 256 MiB (%s)", from);
    put(dir, "memory/memory.limit_in_bytes", "134217728\n");
    core_memory_limit(dir, &v, &from);
    tap_ok(v == 134217728 && strstr(from, "v1") != NULL, "v1 limit below v2's wins (%s)", from);
    put(dir, "memory/memory.limit_in_bytes", "9223372036854771712\n");
    core_memory_limit(dir, &v, &from);
    tap_ok(v == 268435456, "v1 \"unlimited\" leaves v2's limit");

    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        tap_diag("could not remove %s", dir);
    return tap_done();
}
