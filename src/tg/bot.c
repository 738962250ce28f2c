/* SPDX-License-Identifier: MIT */
/*
 * bot.c - the per-bot structure (tg.h) filled from the configuration. The
 * only place where tg reads cfg's rate numbers; core knows nothing of tg.
 */
#include "tg.h"

#include <string.h>

void tg_bot_init(tg_bot_t *bot, const cfg_t *cfg)
{
    memset(bot, 0, sizeof(*bot));
    bot->token = cfg->bot_token;
    bot->webhook_secret = cfg->webhook_secret;
    bot->webhook_secret_len = cfg->webhook_secret ? strlen(cfg->webhook_secret) : 0;
    bot->webhook_path = cfg->webhook_path;
    bot->webhook_path_len = cfg->webhook_path ? strlen(cfg->webhook_path) : 0;
    /* The table size stays the limiter's default; the buckets are the operator's. */
    tg_rate_config_default(&bot->rate);
    bot->rate.global = cfg->rate_global;
    bot->rate.chat = cfg->rate_chat;
    bot->rate.group = cfg->rate_group;
}
