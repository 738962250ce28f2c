/* SPDX-License-Identifier: MIT */
/*
 * default_app.c - the application of the tgring binary for now: no
 * handlers, so every stored update is marked processed with no reply. The
 * example bot (examples/echo/) shows what an application registers.
 */
#include "bot.h"

bot_app_t *bot_main_app(const cfg_t *cfg)
{
    return bot_app_new("tgring");
}
