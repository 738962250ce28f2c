/* SPDX-License-Identifier: MIT */
/*
 * api.c - the handler API (bot.h) over the processor: the application's
 * registry, the dispatch of an update to its handler, the update's fields
 * read out of its tokens, and the context's calls, which go to the
 * processor's context (tg_proc_*). Bot API request bodies are written with
 * tg's JSON writer.
 */
#include "bot.h"

#include "bot_private.h"
#include "core.h"
#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* Longest command name Telegram allows. */
#define BOT_COMMAND_MAX 32

typedef struct bot_route {
    char *key; /* command name (lowercase) or update type */
    bot_handler_cb fn;
} bot_route_t;

struct bot_app {
    const char *name;
    bot_route_t *commands;
    unsigned ncommands;
    bot_route_t *types;
    unsigned ntypes;
    bot_handler_cb fallback;
    db_stmt_t *stmts; /* name and sql are heap copies */
    unsigned nstmts;
    int64_t (*clock)(void *arg);
    void *clock_arg;
    void *data; /* bot_app_set_data() */
    void (*data_free)(void *data);
    bot_job_def_t *jobs; /* bot_every() */
    unsigned njobs;
};

/* The application's part of a processor context. */
struct bot_ctx {
    bot_app_t *app;
    bot_update_t u;
    char *strings; /* the update's unescaped strings, back to back */
    size_t used, cap;
};

/* ---- the registry ---- */

bot_param_t bot_text(const char *s)
{
    return db_param_text(s, s != NULL ? strlen(s) : 0);
}

bot_app_t *bot_app_new(const char *name)
{
    bot_app_t *app = xcalloc(1, sizeof(*app));
    app->name = name != NULL ? name : "app";
    return app;
}

static void bot_routes_free(bot_route_t *r, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        free(r[i].key);
    free(r);
}

void bot_app_free(bot_app_t *app)
{
    if (app == NULL)
        return;
    bot_routes_free(app->commands, app->ncommands);
    bot_routes_free(app->types, app->ntypes);
    for (unsigned i = 0; i < app->nstmts; i++) {
        free((char *)app->stmts[i].name);
        free((char *)app->stmts[i].sql);
    }
    free(app->stmts);
    free(app->jobs);
    if (app->data_free != NULL)
        app->data_free(app->data);
    free(app);
}

const char *bot_app_name(const bot_app_t *app)
{
    return app->name;
}

static bot_handler_cb bot_route_find(const bot_route_t *r, unsigned n, const char *key)
{
    for (unsigned i = 0; i < n; i++)
        if (strcmp(r[i].key, key) == 0)
            return r[i].fn;
    return NULL;
}

static int bot_route_add(bot_route_t **r, unsigned *n, char *key, bot_handler_cb fn)
{
    if (bot_route_find(*r, *n, key) != NULL) {
        free(key);
        return -EEXIST;
    }
    *r = xrealloc(*r, (*n + 1) * sizeof(**r));
    (*r)[(*n)++] = (bot_route_t){key, fn};
    return 0;
}

static bool bot_command_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

int bot_on_command(bot_app_t *app, const char *name, bot_handler_cb fn)
{
    size_t len = name != NULL ? strlen(name) : 0;
    if (fn == NULL || len == 0 || len > BOT_COMMAND_MAX)
        return -EINVAL;
    for (size_t i = 0; i < len; i++)
        if (!bot_command_char(name[i]))
            return -EINVAL;
    char *key = xstrdup(name);
    for (size_t i = 0; i < len; i++)
        key[i] = (char)tolower((unsigned char)key[i]);
    return bot_route_add(&app->commands, &app->ncommands, key, fn);
}

int bot_on_type(bot_app_t *app, const char *type, bot_handler_cb fn)
{
    if (fn == NULL || type == NULL || type[0] == '\0')
        return -EINVAL;
    return bot_route_add(&app->types, &app->ntypes, xstrdup(type), fn);
}

void bot_on_fallback(bot_app_t *app, bot_handler_cb fn)
{
    app->fallback = fn;
}

int bot_stmt(bot_app_t *app, const char *name, const char *sql, int nparams)
{
    if (name == NULL || name[0] == '\0' || sql == NULL || nparams < 0 || nparams > DB_PARAMS_MAX ||
        strncmp(name, "tgring_", 7) == 0)
        return -EINVAL;
    for (unsigned i = 0; i < app->nstmts; i++)
        if (strcmp(app->stmts[i].name, name) == 0)
            return -EEXIST;
    app->stmts = xrealloc(app->stmts, (app->nstmts + 1) * sizeof(*app->stmts));
    app->stmts[app->nstmts++] = (db_stmt_t){xstrdup(name), xstrdup(sql), nparams, NULL};
    return 0;
}

void bot_app_set_clock(bot_app_t *app, int64_t (*clock)(void *arg), void *arg)
{
    app->clock = clock;
    app->clock_arg = arg;
}

void bot_app_set_data(bot_app_t *app, void *data, void (*free_fn)(void *data))
{
    app->data = data;
    app->data_free = free_fn;
}

void *bot_app_data(const bot_app_t *app)
{
    return app->data;
}

int64_t bot_app_now(const bot_app_t *app)
{
    if (app->clock != NULL)
        return app->clock(app->clock_arg);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *bot_app_stmt_name(const bot_app_t *app, const char *name)
{
    for (unsigned i = 0; i < app->nstmts; i++)
        if (strcmp(app->stmts[i].name, name) == 0)
            return app->stmts[i].name;
    return NULL;
}

bool bot_app_has_stmt(const bot_app_t *app, const char *name, int *nparams)
{
    for (unsigned i = 0; i < app->nstmts; i++)
        if (strcmp(app->stmts[i].name, name) == 0) {
            *nparams = app->stmts[i].nparams;
            return true;
        }
    return false;
}

int bot_every(bot_app_t *app, const char *name, unsigned every_ms, bot_job_cb fn, void *arg)
{
    if (fn == NULL || every_ms == 0)
        return -EINVAL;
    app->jobs = xrealloc(app->jobs, (app->njobs + 1) * sizeof(*app->jobs));
    app->jobs[app->njobs++] = (bot_job_def_t){name != NULL ? name : "job", every_ms, fn, arg};
    return 0;
}

const bot_job_def_t *bot_app_jobs(const bot_app_t *app, unsigned *n)
{
    *n = app->njobs;
    return app->jobs;
}

/* ---- reading an update ---- */

/* Room for a string of up to n bytes, with its NUL. */
static char *bot_str_room(bot_ctx_t *c, size_t n)
{
    /* The strings are unescaped parts of the body, never longer than it: cap covers them. */
    if (c->cap - c->used < n + 1)
        return NULL;
    return c->strings + c->used;
}

/* String token i of the update, unescaped into the context's strings; "" when not a string. */
static const char *bot_str(bot_ctx_t *c, int i)
{
    const bot_update_t *u = &c->u;
    if (i < 0 || u->tok[i].type != JSMN_STRING)
        return "";
    size_t raw = (size_t)(u->tok[i].end - u->tok[i].start);
    char *dst = bot_str_room(c, raw);
    if (dst == NULL)
        return "";
    int n = tg_json_tok_string(u->body, u->tok, i, dst, raw + 1);
    if (n < 0 || (size_t)n > raw)
        return "";
    c->used += (size_t)n + 1;
    return dst;
}

static int bot_member(const bot_update_t *u, int obj, const char *key)
{
    return obj < 0 ? -1 : tg_json_find(u->body, u->tok, u->ntok, obj, key);
}

static const char *bot_copy(bot_ctx_t *c, const char *s, size_t len)
{
    char *dst = bot_str_room(c, len);
    if (dst == NULL)
        return "";
    memcpy(dst, s, len);
    dst[len] = '\0';
    c->used += len + 1;
    return dst;
}

/*
 * Splits "/name[@bot][ args]" in u->text into command and args. Returns
 * false when the command is addressed to another bot (or to a bot while our
 * own name is not known).
 */
static bool bot_split_command(bot_ctx_t *c, const char *username)
{
    bot_update_t *u = &c->u;
    const char *t = u->text;
    size_t n = 1;

    if (t[0] != '/')
        return true;
    while (n <= BOT_COMMAND_MAX && bot_command_char(t[n]))
        n++;
    if (n == 1 || bot_command_char(t[n]))
        return true; /* "/" alone, or a name too long: plain text */
    size_t name_len = n - 1;
    if (t[n] == '@') {
        size_t at = ++n;
        while (bot_command_char(t[n]))
            n++;
        if (username[0] == '\0' || strlen(username) != n - at ||
            strncasecmp(t + at, username, n - at) != 0)
            return false;
    }
    if (t[n] != '\0' && t[n] != ' ' && t[n] != '\n' && t[n] != '\t')
        return true; /* "/start-x" is no command */
    while (t[n] == ' ' || t[n] == '\n' || t[n] == '\t')
        n++;
    char *cmd = (char *)bot_copy(c, t + 1, name_len);
    for (char *p = cmd; *p != '\0'; p++)
        *p = (char)tolower((unsigned char)*p);
    u->command = cmd;
    u->args = t + n;
    return true;
}

/* Fills c->u from the processor's update. Returns false for a command to another bot. */
static bool bot_read(bot_ctx_t *c, const tg_proc_update_t *pu, const char *username)
{
    bot_update_t *u = &c->u;
    const tg_update_info_t *in = &pu->info;

    u->update_id = pu->update_id;
    u->type = in->type;
    u->body = pu->body;
    u->body_len = pu->len;
    u->tok = pu->tok;
    u->ntok = pu->ntok;
    u->has_chat = in->has_chat;
    u->chat_id = in->chat_id;
    u->has_from = in->has_from;
    u->from_id = in->from_id;
    u->type_name = u->chat_type = u->language_code = u->text = "";
    u->command = u->args = u->callback_id = u->callback_data = "";
    /* Every string below is a part of the body; a few NULs on top. */
    c->cap = pu->len + 16 * 2 + in->type_name_len + in->chat_type_len + BOT_COMMAND_MAX;
    c->strings = xmalloc(c->cap);
    u->type_name = bot_copy(c, in->type_name != NULL ? in->type_name : "", in->type_name_len);
    if (in->chat_type != NULL)
        u->chat_type = bot_copy(c, in->chat_type, in->chat_type_len);

    int payload = bot_member(u, 0, u->type_name);
    int from = bot_member(
        u, payload,
        in->type == TG_UPDATE_POLL_ANSWER || in->type == TG_UPDATE_MESSAGE_REACTION ? "user"
                                                                                    : "from");
    u->language_code = bot_str(c, bot_member(u, from, "language_code"));
    int msg = payload;
    if (in->type == TG_UPDATE_CALLBACK_QUERY) {
        u->callback_id = bot_str(c, bot_member(u, payload, "id"));
        u->callback_data = bot_str(c, bot_member(u, payload, "data"));
        msg = bot_member(u, payload, "message");
    }
    int mid = bot_member(u, msg, "message_id");
    if (mid >= 0)
        tg_json_tok_int(u->body, u->tok, mid, &u->message_id);
    if (in->type == TG_UPDATE_MESSAGE || in->type == TG_UPDATE_EDITED_MESSAGE ||
        in->type == TG_UPDATE_CHANNEL_POST || in->type == TG_UPDATE_EDITED_CHANNEL_POST ||
        in->type == TG_UPDATE_BUSINESS_MESSAGE) {
        int text = bot_member(u, payload, "text");
        u->text = bot_str(c, text >= 0 ? text : bot_member(u, payload, "caption"));
    }
    if (in->type == TG_UPDATE_MESSAGE)
        return bot_split_command(c, username);
    return true;
}

/* The processor's entry: reads the update and runs the handler that matches it. */
static void bot_dispatch(void *arg, tg_proc_ctx_t *pctx, const tg_proc_update_t *pu)
{
    bot_app_t *app = arg;
    bot_ctx_t *c = tg_proc_ctx_data(pctx);
    bot_handler_cb fn = NULL;

    c->app = app;
    if (!bot_read(c, pu, tg_proc_username(pctx))) {
        log_debug("command_not_ours", "update %lld: a command for another bot; ignored",
                  (long long)pu->update_id);
        tg_proc_done(pctx);
        return;
    }
    if (c->u.command[0] != '\0')
        fn = bot_route_find(app->commands, app->ncommands, c->u.command);
    if (fn == NULL)
        fn = bot_route_find(app->types, app->ntypes, c->u.type_name);
    if (fn == NULL)
        fn = app->fallback;
    if (fn == NULL) {
        tg_proc_done(pctx);
        return;
    }
    fn(c, &c->u);
}

/* The processor frees the context: our strings go with it. */
static void bot_release(void *app, tg_proc_ctx_t *pctx)
{
    bot_ctx_t *c = tg_proc_ctx_data(pctx);
    free(c->strings);
}

void bot_app_proc_options(bot_app_t *app, tg_proc_options_t *opt)
{
    opt->stmts = app->stmts;
    opt->nstmts = app->nstmts;
    opt->handler = bot_dispatch;
    opt->release = bot_release;
    opt->app = app;
    opt->ctx_size = sizeof(bot_ctx_t);
    opt->clock = app->clock;
    opt->clock_arg = app->clock_arg;
}

/* ---- the context ---- */

static tg_proc_ctx_t *bot_pctx(const bot_ctx_t *ctx)
{
    return tg_proc_ctx_of((void *)ctx);
}

typedef struct bot_read_op {
    bot_query_cb cb;
    void *arg;
} bot_read_op_t;

static void bot_on_query(tg_proc_ctx_t *pctx, int err, const db_result_t *res, void *arg)
{
    bot_read_op_t op = *(bot_read_op_t *)arg;
    free(arg);
    if (err != -ECANCELED)
        op.cb(tg_proc_ctx_data(pctx), err, res, op.arg);
}

int bot_query(bot_ctx_t *ctx, const char *stmt, const bot_param_t *params, unsigned n,
              bot_query_cb cb, void *arg)
{
    bot_read_op_t *op = xmalloc(sizeof(*op));
    op->cb = cb;
    op->arg = arg;
    int r = tg_proc_query(bot_pctx(ctx), stmt, params, n, bot_on_query, op);
    if (r < 0)
        free(op);
    return r;
}

int bot_exec(bot_ctx_t *ctx, const char *stmt, const bot_param_t *params, unsigned n)
{
    return tg_proc_exec(bot_pctx(ctx), stmt, params, n);
}

/* The chat an update's calls are queued to: its chat, else its sender. */
static int64_t bot_default_chat(const bot_ctx_t *ctx)
{
    return ctx->u.has_chat ? ctx->u.chat_id : ctx->u.has_from ? ctx->u.from_id : 0;
}

int bot_call_chat(bot_ctx_t *ctx, int64_t chat_id, const char *method, const char *json)
{
    if (json == NULL)
        return -EINVAL;
    return tg_proc_send(bot_pctx(ctx), chat_id, method, json, strlen(json));
}

int bot_call(bot_ctx_t *ctx, const char *method, const char *json)
{
    return bot_call_chat(ctx, bot_default_chat(ctx), method, json);
}

/* Bytes enough for a body with `text` escaped (6 per byte at worst) and `markup`. */
static size_t bot_body_cap(const char *text, const char *markup)
{
    return 6 * (text != NULL ? strlen(text) : 0) + (markup != NULL ? strlen(markup) : 0) + 256;
}

/* Finishes w and queues it as `method` to chat_id. */
static int bot_call_jw(bot_ctx_t *ctx, int64_t chat_id, const char *method, tg_jw_t *w)
{
    int len = tg_jw_finish(w);
    int r = len < 0 ? -EINVAL : tg_proc_send(bot_pctx(ctx), chat_id, method, w->buf, (size_t)len);
    free(w->buf);
    return r;
}

static void bot_jw_markup(tg_jw_t *w, const char *markup)
{
    if (markup == NULL)
        return;
    tg_jw_key(w, "reply_markup");
    tg_jw_raw(w, markup, strlen(markup));
}

/* sendMessage (message_id 0) or editMessageText: chat_id, [message_id,] text, [reply_markup]. */
static int bot_text_call(bot_ctx_t *ctx, const char *method, int64_t chat_id, int64_t message_id,
                         const char *text, const char *markup)
{
    tg_jw_t w;
    size_t cap = bot_body_cap(text, markup);
    tg_jw_init(&w, xmalloc(cap), cap);
    tg_jw_obj_begin(&w);
    tg_jw_key(&w, "chat_id");
    tg_jw_int(&w, chat_id);
    if (message_id != 0) {
        tg_jw_key(&w, "message_id");
        tg_jw_int(&w, message_id);
    }
    tg_jw_key(&w, "text");
    tg_jw_str(&w, text != NULL ? text : "", text != NULL ? strlen(text) : 0);
    bot_jw_markup(&w, markup);
    tg_jw_obj_end(&w);
    return bot_call_jw(ctx, chat_id, method, &w);
}

int bot_send_message(bot_ctx_t *ctx, int64_t chat_id, const char *text, const char *markup)
{
    return bot_text_call(ctx, "sendMessage", chat_id, 0, text, markup);
}

int bot_answer_callback(bot_ctx_t *ctx, const char *id, const char *text)
{
    tg_jw_t w;
    size_t cap = bot_body_cap(text, id);
    tg_jw_init(&w, xmalloc(cap), cap);
    tg_jw_obj_begin(&w);
    tg_jw_key(&w, "callback_query_id");
    tg_jw_str(&w, id != NULL ? id : "", id != NULL ? strlen(id) : 0);
    if (text != NULL) {
        tg_jw_key(&w, "text");
        tg_jw_str(&w, text, strlen(text));
    }
    tg_jw_obj_end(&w);
    return bot_call_jw(ctx, bot_default_chat(ctx), "answerCallbackQuery", &w);
}

int bot_edit_message_text(bot_ctx_t *ctx, int64_t chat_id, int64_t message_id, const char *text,
                          const char *markup)
{
    return bot_text_call(ctx, "editMessageText", chat_id, message_id, text, markup);
}

void bot_done(bot_ctx_t *ctx)
{
    tg_proc_done(bot_pctx(ctx));
}

void bot_fail(bot_ctx_t *ctx, const char *why)
{
    tg_proc_fail(bot_pctx(ctx), why);
}

int64_t bot_now(const bot_ctx_t *ctx)
{
    return tg_proc_now(bot_pctx(ctx));
}

void *bot_data(const bot_ctx_t *ctx)
{
    return ctx->app->data;
}

const char *bot_username(const bot_ctx_t *ctx)
{
    return tg_proc_username(bot_pctx(ctx));
}

const bot_update_t *bot_update(const bot_ctx_t *ctx)
{
    return &ctx->u;
}
