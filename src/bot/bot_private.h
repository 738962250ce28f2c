/* SPDX-License-Identifier: MIT */
/*
 * bot_private.h - what the handler API's files share: the application's
 * registry of periodic jobs (api.c) as the job runner (jobs.c) reads it.
 */
#ifndef TGRING_BOT_PRIVATE_H
#define TGRING_BOT_PRIVATE_H

#include "bot.h"

/* A job as bot_every() registered it. */
typedef struct bot_job_def {
    const char *name;  /* for logs */
    unsigned every_ms; /* from the end of a run to the next, ms */
    bot_job_cb fn;
    void *arg;
} bot_job_def_t;

/* The registered jobs. OUT: *n. */
const bot_job_def_t *bot_app_jobs(const bot_app_t *app, unsigned *n);

/* The app's data (bot_app_set_data()). */
void *bot_app_data(const bot_app_t *app);

/* The app's clock now, ms since the epoch. */
int64_t bot_app_now(const bot_app_t *app);

/* True when the app registered statement `name`. OUT: *nparams. */
bool bot_app_has_stmt(const bot_app_t *app, const char *name, int *nparams);

/* The app's own copy of statement name `name` (lives as long as the app), NULL if none. */
const char *bot_app_stmt_name(const bot_app_t *app, const char *name);

#endif
