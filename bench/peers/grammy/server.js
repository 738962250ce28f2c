// SPDX-License-Identifier: MIT
//
// bench/peers/grammy/server.js - a grammY webhook bot doing tgring's ingestion:
// POST /webhook/telegram with X-Telegram-Bot-Api-Secret-Token (checked by
// grammY's webhookCallback, secretToken option), the update parsed, its type,
// chat id and sender id taken from grammY's context, the row inserted into
// peer_updates (ON CONFLICT (update_id) DO NOTHING) through a pg Pool, and the
// 200 sent only once the INSERT resolved (autocommit: committed).
//
// Started by ./run PORT DATABASE_URL SECRET [POOL]; the environment carries them
// as PEER_PORT, DATABASE_URL, PEER_SECRET and PEER_POOL. Prints
// "listening PORT" once it accepts connections; SIGTERM stops it.
"use strict";

const fs = require("node:fs");
const http = require("node:http");
const path = require("node:path");
const { Bot, webhookCallback } = require("grammy");
const { Pool } = require("pg");

const PATH = "/webhook/telegram";
const port = Number(process.env.PEER_PORT);
const secret = process.env.PEER_SECRET;
const poolSize = Number(process.env.PEER_POOL || 10);
if (!Number.isInteger(port) || !process.env.DATABASE_URL || !secret || !(poolSize > 0)) {
    console.error("grammy peer: PEER_PORT, DATABASE_URL, PEER_SECRET and PEER_POOL are required");
    process.exit(2);
}

const pool = new Pool({ connectionString: process.env.DATABASE_URL, max: poolSize });

// The raw request bodies, by the update object parsed from them: the row keeps
// the bytes as received, as tgring's does, not a re-serialisation.
const rawBodies = new WeakMap();

// grammY's adapter for node's http module, except that it keeps the body's
// bytes and reads (and drops) the body of a refused request too, so that the
// connection stays usable.
function adapter(req, res) {
    const header = req.headers["x-telegram-bot-api-secret-token"];
    return {
        get update() {
            return new Promise((resolve, reject) => {
                const chunks = [];
                req.on("data", (c) => chunks.push(c))
                    .once("end", () => {
                        const raw = Buffer.concat(chunks);
                        try {
                            const update = JSON.parse(raw.toString("utf-8"));
                            if (update === null || typeof update !== "object" ||
                                !Number.isSafeInteger(update.update_id) || update.update_id < 0) {
                                throw new SyntaxError("not an update");
                            }
                            rawBodies.set(update, raw);
                            resolve(update);
                        } catch (err) {
                            err.badRequest = true;
                            reject(err);
                        }
                    })
                    .once("error", reject);
            });
        },
        header: Array.isArray(header) ? header[0] : header,
        end: () => res.end(),
        respond: (json) => res.writeHead(200, { "Content-Type": "application/json" }).end(json),
        unauthorized: () => {
            req.resume();
            res.writeHead(401).end("secret token is wrong");
        },
    };
}

// A bot that never calls the Bot API: its identity is given, not fetched.
const bot = new Bot("0:peer", {
    botInfo: {
        id: 1, is_bot: true, first_name: "peer", username: "peer_bot", can_join_groups: false,
        can_read_all_group_messages: false, supports_inline_queries: false,
        can_connect_to_business: false, has_main_web_app: false,
    },
});

const INSERT = "INSERT INTO peer_updates (update_id, update_type, chat_id, from_id, body) " +
    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (update_id) DO NOTHING";

bot.use(async (ctx) => {
    const u = ctx.update;
    // The type is the first member besides update_id that holds an object.
    const type = Object.keys(u).find((k) => k !== "update_id" && u[k] !== null &&
        typeof u[k] === "object") ?? null;
    // grammY's ctx.chat and ctx.from find the chat and the sender where tgring
    // does, except a poll answer's sender (its user), which ctx.from leaves out.
    const from = ctx.from ?? ctx.pollAnswer?.user;
    await pool.query(INSERT, [u.update_id, type, ctx.chat?.id ?? null, from?.id ?? null,
        rawBodies.get(u)]);
});

const handle = webhookCallback(bot, adapter, { secretToken: secret, onTimeout: "throw" });

const server = http.createServer((req, res) => {
    if (req.url !== PATH || req.method !== "POST") {
        req.resume();
        res.writeHead(req.url === PATH ? 405 : 404).end();
        return;
    }
    handle(req, res).catch((err) => {
        if (!err.badRequest) {
            console.error("grammy peer:", err.error ?? err);
        }
        if (!res.headersSent) {
            res.writeHead(err.badRequest ? 400 : 500).end();
        }
    });
});
server.keepAliveTimeout = 65000;

async function main() {
    await pool.query(fs.readFileSync(path.join(__dirname, "..", "peer_updates.sql"), "utf-8"));
    server.listen(port, "127.0.0.1", () => console.log(`listening ${port}`));
}

function stop() {
    server.close();
    server.closeAllConnections();
    pool.end().finally(() => process.exit(0));
}
process.once("SIGTERM", stop);
process.once("SIGINT", stop);

main().catch((err) => {
    console.error("grammy peer:", err.message ?? err);
    process.exit(1);
});
