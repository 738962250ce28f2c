/* SPDX-License-Identifier: MIT */
/*
 * replay.c - runs a libFuzzer target over files, without libFuzzer.
 *
 * The normal test run links each fuzz target with this driver and replays its
 * corpus (and kept crashers) under the sanitizers, as TAP: one test per file.
 * Usage: replay DIR_OR_FILE...
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int n;

static void run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        printf("not ok %d - %s: cannot open\n", ++n, path);
        return;
    }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    /* An exact-size heap copy, so that ASan catches a read one past the end. */
    uint8_t *buf = malloc(len > 0 ? (size_t)len : 1);
    if (buf == NULL || (len > 0 && fread(buf, 1, (size_t)len, f) != (size_t)len)) {
        printf("not ok %d - %s: cannot read\n", ++n, path);
        free(buf);
        fclose(f);
        return;
    }
    fclose(f);
    LLVMFuzzerTestOneInput(buf, (size_t)len);
    free(buf);
    printf("ok %d - %s\n", ++n, path);
}

static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void run_path(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        printf("not ok %d - %s: missing\n", ++n, path);
        return;
    }
    if (!S_ISDIR(st.st_mode)) {
        run_file(path);
        return;
    }
    DIR *d = opendir(path);
    if (d == NULL) {
        printf("not ok %d - %s: cannot open\n", ++n, path);
        return;
    }
    char **names = NULL;
    size_t count = 0, cap = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.')
            continue;
        if (count == cap) {
            cap = cap ? cap * 2 : 64;
            names = realloc(names, cap * sizeof(*names));
            if (names == NULL)
                abort();
        }
        size_t l = strlen(path) + strlen(e->d_name) + 2;
        names[count] = malloc(l);
        if (names[count] == NULL)
            abort();
        snprintf(names[count++], l, "%s/%s", path, e->d_name);
    }
    closedir(d);
    qsort(names, count, sizeof(*names), cmp);
    for (size_t i = 0; i < count; i++) {
        run_path(names[i]);
        free(names[i]);
    }
    free(names);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        run_path(argv[i]);
    if (n == 0) {
        printf("not ok 1 - no corpus files\n");
        n = 1;
    }
    printf("1..%d\n", n);
    return 0;
}
