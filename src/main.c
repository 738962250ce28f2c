/* SPDX-License-Identifier: MIT */
/*
 * main.c - tgring's entry point: the command table, the configuration each
 * command needs, and the wiring of `serve` (one worker, or a supervisor of
 * several). The work is elsewhere: worker.c runs one reactor, tg_commands.h
 * has the Bot API subcommands, supervisor.h the parent of N workers. Each
 * binary links its application (bot_main_app, bot.h): tgring the
 * quit-smoking bot (src/bot/quit/), tgring-example the example bot.
 */
#include "bot.h"
#include "cfg.h"
#include "db.h"
#include "log.h"
#include "met.h"
#include "supervisor.h"
#include "tg.h"
#include "tg_commands.h"
#include "worker.h"

#include "core.h"

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#ifndef TGRING_VERSION
#define TGRING_VERSION "0.1.0"
#endif

/* What a command needs beside the CFG_NEED_* variables. */
enum {
    NEED_NO_CONFIG = 1u << 16, /* runs without loading the configuration */
    TAKES_DROP = 1u << 17,     /* accepts --drop-pending-updates */
};

/* What a command is given. cfg, bot and app are NULL for NEED_NO_CONFIG commands. */
typedef struct args {
    const cfg_t *cfg;
    const tg_bot_t *bot;
    bot_app_t *app;    /* the application this binary runs (bot_main_app) */
    bool drop_pending; /* --drop-pending-updates */
} args_t;

typedef struct command {
    const char *name;
    unsigned needs; /* CFG_NEED_* the configuration must have, NEED_*, TAKES_* */
    int (*fn)(const args_t *a);
} command_t;

/* The parent's signals, and what each worker runs with. */
typedef struct serve_ctx {
    const args_t *a;
    const worker_plan_t *plan;
    const sigset_t *sigs;
} serve_ctx_t;

static int run_worker(unsigned index, void *arg)
{
    const serve_ctx_t *s = arg;
    return worker_run(s->a->cfg, s->plan, s->a->bot, s->a->app, index, s->sigs);
}

static int cmd_serve(const args_t *a)
{
    const cfg_t *cfg = a->cfg;
    /* Once, before the workers: a limit they cannot fit in stops the start with one line. */
    worker_plan_t plan;
    if (worker_plan(cfg, &plan) < 0)
        return 1;
    int s = db_check_schema(cfg->database_url);
    if (s == 0) {
        fprintf(stderr, "tgring: the database schema is not migrated: run `tgring migrate` "
                        "first\n");
        return 1;
    }
    if (s < 0)
        log_warn("database_unreachable", "cannot check the schema now; serving 503 until the "
                                         "database is reachable and migrated");

    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGUSR1); /* a supervisor's "stop now" to its workers */
    sigprocmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (met_init(cfg->workers) < 0) {
        log_error("metrics_failed", "cannot map the metrics area");
        return 1;
    }
    serve_ctx_t ctx = {a, &plan, &sigs};
    if (cfg->workers == 1)
        return run_worker(0, &ctx);
    return sup_run(cfg->workers, &sigs, run_worker, &ctx);
}

static int cmd_migrate(const args_t *a)
{
    return db_migrate(a->cfg->database_url) < 0 ? 1 : 0;
}

static int cmd_set_webhook(const args_t *a)
{
    return tg_cmd_set_webhook(a->bot, a->cfg, a->drop_pending);
}

static int cmd_delete_webhook(const args_t *a)
{
    return tg_cmd_delete_webhook(a->bot, a->cfg, a->drop_pending);
}

static int cmd_webhook_info(const args_t *a)
{
    return tg_cmd_webhook_info(a->bot, a->cfg);
}

static int cmd_healthcheck(const args_t *a)
{
    return worker_healthcheck(a->cfg);
}

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: tgring [COMMAND]\n"
            "\n"
            "A Telegram bot server: takes webhook updates, commits each to PostgreSQL\n"
            "before answering 200, runs the bot's handlers on them in order per chat,\n"
            "sends the outbox to the Bot API within Telegram's rate limits, and serves\n"
            "health and metrics endpoints.\n"
            "\n"
            "Commands:\n"
            "  serve         run the server (the default)\n"
            "  migrate       apply pending database migrations, then exit\n"
            "  healthcheck   exit 0 if GET /health/ready on TGRING_LISTEN answers 200, else 1\n"
            "  set-webhook [--drop-pending-updates]\n"
            "                point Telegram at TELEGRAM_WEBHOOK_URL with the secret,\n"
            "                TELEGRAM_WEBHOOK_MAX_CONNECTIONS and TELEGRAM_ALLOWED_UPDATES\n"
            "  delete-webhook [--drop-pending-updates]\n"
            "                stop webhook delivery\n"
            "  webhook-info  print the webhook's URL, pending update count and last error\n"
            "  version       print the version\n"
            "  help          print this help (also -h, --help)\n"
            "\n"
            "Endpoints: POST TGRING_WEBHOOK_PATH (200 committed, 401 secret, 400 malformed,\n"
            "413 too big, 503 not stored + Retry-After), GET /health/live, GET /health/ready,\n"
            "GET /metrics (Prometheus text).\n"
            "\n"
            "Signals: SIGTERM or SIGINT stops accepting and drains for up to\n"
            "TGRING_SHUTDOWN_TIMEOUT_MS, then exits 0; a second one during the drain\n"
            "stops at once and exits 128 + its number (143 SIGTERM, 130 SIGINT).\n"
            "\n"
            "Environment (secrets also as NAME_FILE):\n");
    cfg_print_help(out);
}

static int cmd_help(const args_t *a)
{
    usage(stdout);
    return 0;
}

static int cmd_version(const args_t *a)
{
    printf("tgring %s\n", TGRING_VERSION);
    return 0;
}

static const command_t commands[] = {
    {"serve", CFG_NEED_DB | CFG_NEED_SECRET, cmd_serve},
    {"migrate", CFG_NEED_DB, cmd_migrate},
    {"healthcheck", 0, cmd_healthcheck},
    {"set-webhook", CFG_NEED_TOKEN | CFG_NEED_SECRET | CFG_NEED_WEBHOOK_URL | TAKES_DROP,
     cmd_set_webhook},
    {"delete-webhook", CFG_NEED_TOKEN | TAKES_DROP, cmd_delete_webhook},
    {"webhook-info", CFG_NEED_TOKEN, cmd_webhook_info},
    {"version", NEED_NO_CONFIG, cmd_version},
    {"--version", NEED_NO_CONFIG, cmd_version},
    {"help", NEED_NO_CONFIG, cmd_help},
    {"-h", NEED_NO_CONFIG, cmd_help},
    {"--help", NEED_NO_CONFIG, cmd_help},
};

int main(int argc, char **argv)
{
    const char *name = argc > 1 ? argv[1] : "serve";
    const command_t *cmd = NULL;
    for (size_t i = 0; i < ARRAY_SIZE(commands) && cmd == NULL; i++)
        if (strcmp(name, commands[i].name) == 0)
            cmd = &commands[i];
    args_t a = {0};
    for (int i = 2; i < argc; i++) {
        if (cmd != NULL && (cmd->needs & TAKES_DROP) &&
            !strcmp(argv[i], "--drop-pending-updates")) {
            a.drop_pending = true;
            continue;
        }
        fprintf(stderr, "tgring: unexpected argument \"%s\"; see `tgring --help`\n", argv[i]);
        return 2;
    }
    if (cmd == NULL) {
        fprintf(stderr, "tgring: unknown command \"%s\"; see `tgring --help`\n", name);
        return 2;
    }
    if (cmd->needs & NEED_NO_CONFIG)
        return cmd->fn(&a);

    cfg_t cfg;
    int problems = cfg_load(&cfg, cmd->needs & (NEED_NO_CONFIG - 1), stderr);
    if ((cmd->needs & CFG_NEED_DB) && cfg.database_url != NULL && cfg.database_url[0] != '\0')
        problems += db_conninfo_check(cfg.database_url, stderr);
    if (problems > 0) {
        fprintf(stderr, "tgring: %d configuration problem%s; not starting\n", problems,
                problems == 1 ? "" : "s");
        cfg_dispose(&cfg);
        return 1;
    }
    log_setup(cfg.log_level, cfg.log_format);
    tg_bot_t bot;
    tg_bot_init(&bot, &cfg);
    a.cfg = &cfg;
    a.bot = &bot;
    a.app = bot_main_app(&cfg);
    int status = cmd->fn(&a);
    bot_app_free(a.app);
    cfg_dispose(&cfg);
    return status;
}
