/* SPDX-License-Identifier: MIT */
/*
 * jobs.c - the application's periodic jobs (bot_every() in bot.h): a timer
 * per job on the housekeeping worker's loop, and one transaction per run
 * through a db client of their own. The client registers no statements: a
 * job runs the application's, which the processor's client prepares on
 * every connection.
 */
#include "bot_private.h"

#include "core.h"
#include "log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* A run whose statement found the database not ready tries again this soon, ms. */
#define BOT_JOB_RETRY_MS 1000
/* A job's transaction gets this long, ms. */
#define BOT_JOB_TIMEOUT_MS 30000

struct bot_job {
    bot_jobs_t *jobs;
    const bot_job_def_t *def;
    rx_timer_t timer;
    bool in_flight;    /* its statement is out */
    bool again;        /* bot_job_again(): the next run at once */
    bool submitted;    /* this run has its statement */
    int64_t now_ms;    /* the app's clock at the start of the run */
    uint64_t retry_ms; /* the next run's delay when this one ends without a statement */
    bot_job_result_cb cb;
};

struct bot_jobs {
    bot_app_t *app;
    rx_loop_t *loop;
    db_client_t *client;
    bool stopped;
    unsigned n;
    bot_job_t job[]; /* [n] */
};

static void bot_job_run(rx_loop_t *loop, rx_timer_t *t);

/* The run is over: arm the next unless stopping. */
static void bot_job_next(bot_job_t *job, uint64_t after_ms)
{
    if (job->jobs->stopped)
        return;
    rx_timer_start(job->jobs->loop, &job->timer, after_ms, bot_job_run);
}

static void bot_job_on_result(void *arg, int err, const db_result_t *const *res, unsigned n)
{
    bot_job_t *job = arg;
    job->in_flight = false;
    job->again = false;
    /* One statement: its result, or its error. */
    job->cb(job, err, (err == 0 || err == -EBADMSG) && res != NULL ? res[0] : NULL, job->def->arg);
    bot_job_next(job, job->again ? 0 : job->def->every_ms);
}

static void bot_job_run(rx_loop_t *loop, rx_timer_t *t)
{
    bot_job_t *job = container_of(t, bot_job_t, timer);
    job->submitted = false;
    job->retry_ms = job->def->every_ms;
    job->now_ms = bot_app_now(job->jobs->app);
    job->def->fn(job, job->def->arg);
    if (!job->in_flight)
        bot_job_next(job, job->retry_ms);
}

int bot_job_exec(bot_job_t *job, const char *stmt, const bot_param_t *params, unsigned n,
                 bot_job_result_cb cb)
{
    int nparams;
    if (job->submitted)
        return -EALREADY;
    if (!bot_app_has_stmt(job->jobs->app, stmt, &nparams))
        return -ENOENT;
    if (cb == NULL || (int)n != nparams || n > DB_PARAMS_MAX)
        return -EINVAL;
    db_query_t q;
    memset(&q, 0, sizeof(q));
    q.stmt = bot_app_stmt_name(job->jobs->app, stmt); /* the app's copy outlives the db */
    q.nparams = n;
    memcpy(q.params, params, n * sizeof(*params));
    job->cb = cb;
    int r = db_txn_submit(job->jobs->client, &q, 1, bot_job_on_result, job);
    if (r < 0) {
        job->retry_ms =
            BOT_JOB_RETRY_MS < job->def->every_ms ? BOT_JOB_RETRY_MS : job->def->every_ms;
        return r;
    }
    job->submitted = true;
    job->in_flight = true;
    return 0;
}

void bot_job_again(bot_job_t *job)
{
    job->again = true;
}

int64_t bot_job_now(const bot_job_t *job)
{
    return job->now_ms;
}

void *bot_job_data(const bot_job_t *job)
{
    return bot_app_data(job->jobs->app);
}

bot_jobs_t *bot_jobs_start(bot_app_t *app, rx_loop_t *loop, db_t *db)
{
    unsigned n;
    const bot_job_def_t *defs = bot_app_jobs(app, &n);
    if (n == 0)
        return NULL;
    bot_jobs_t *jobs = xcalloc(1, sizeof(*jobs) + n * sizeof(jobs->job[0]));
    jobs->app = app;
    jobs->loop = loop;
    jobs->n = n;
    db_client_options_t co = {
        .name = "jobs",
        .max_pending = 2 * n,
        .timeout_ms = BOT_JOB_TIMEOUT_MS,
    };
    jobs->client = db_client_new(db, &co);
    for (unsigned i = 0; i < n; i++) {
        jobs->job[i].jobs = jobs;
        jobs->job[i].def = &defs[i];
        bot_job_next(&jobs->job[i], 0);
    }
    return jobs;
}

void bot_jobs_stop(bot_jobs_t *jobs)
{
    if (jobs == NULL)
        return;
    jobs->stopped = true;
    for (unsigned i = 0; i < jobs->n; i++)
        rx_timer_stop(jobs->loop, &jobs->job[i].timer);
}

void bot_jobs_free(bot_jobs_t *jobs)
{
    if (jobs == NULL)
        return;
    bot_jobs_stop(jobs);
    free(jobs);
}
