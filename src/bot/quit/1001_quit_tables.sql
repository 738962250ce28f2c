-- SPDX-License-Identifier: MIT
-- 1001_quit_tables: the quit-smoking bot's tables (src/bot/quit/, docs/quit-bot.md).
-- Applications number their migrations from 1000; tgring's own are below.

-- One row per Telegram user who wrote to the bot. chat_id is the private
-- chat the bot writes to (for a user that is the user id). active goes false
-- when the Bot API answers 403 to a message for that chat (the user blocked
-- the bot, see the trigger below) and true again with the user's next
-- message; notifications and broadcasts skip inactive users.
CREATE TABLE users (
    user_id            bigint      PRIMARY KEY,
    chat_id            bigint      NOT NULL,
    language_code      text        NOT NULL DEFAULT '',
    quit_date          date,
    cigarettes_per_day integer     NOT NULL DEFAULT 20 CHECK (cigarettes_per_day BETWEEN 1 AND 200),
    pack_price_cents   integer     CHECK (pack_price_cents BETWEEN 1 AND 100000),
    notify             boolean     NOT NULL DEFAULT true,
    active             boolean     NOT NULL DEFAULT true,
    last_notified_on   date,       -- local date (BOT_TIMEZONE) of the last daily reminder
    quotes_shown       bigint      NOT NULL DEFAULT 0, -- picks the next quote (quit_quote)
    created_at         timestamptz NOT NULL
);
CREATE INDEX users_chat_idx ON users (chat_id);
-- The reminder's batches look only at users who may be due.
CREATE INDEX users_notify_idx ON users (user_id) WHERE active AND notify;

-- Admins added with /addadmin (BOT_ADMIN_IDS are admins as well, from the configuration).
CREATE TABLE admins (
    user_id  bigint      PRIMARY KEY,
    added_by bigint      NOT NULL,
    added_at timestamptz NOT NULL
);

-- Motivational quotes, picked in id order by quit_quote(k).
CREATE TABLE quotes (
    id   integer PRIMARY KEY,
    body text    NOT NULL CHECK (body <> '')
);

-- Messages the bot received per local day (BOT_TIMEZONE), for /stats.
CREATE TABLE daily_stats (
    day      date   PRIMARY KEY,
    messages bigint NOT NULL
);

-- One row per /broadcast: its messages are outbox rows with this update_id.
CREATE TABLE broadcasts (
    update_id  bigint      PRIMARY KEY,
    admin_id   bigint      NOT NULL,
    body       text        NOT NULL,
    total      integer     NOT NULL, -- messages queued
    created_at timestamptz NOT NULL
);

-- The local date of a time given in ms since the epoch, in time zone tz.
CREATE FUNCTION quit_local_date(ms bigint, tz text) RETURNS date
LANGUAGE sql STABLE AS $$
    SELECT (to_timestamp(ms / 1000.0) AT TIME ZONE tz)::date
$$;

-- Quote number k modulo their count, in id order: callers make k from the
-- user, the day and a counter, so that the choice is the same on every run.
CREATE FUNCTION quit_quote(k bigint) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT body FROM quotes ORDER BY id
    OFFSET (SELECT mod(abs(k), greatest(count(*), 1)) FROM quotes) LIMIT 1
$$;

-- A message the Bot API refused with 403 (the user blocked the bot, or the
-- account is gone): the sender marks its outbox row failed with last_error
-- "403 ..."; the user of that chat is marked inactive in the same
-- transaction. Their next message marks them active again.
CREATE FUNCTION quit_outbox_blocked() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE users SET active = false WHERE chat_id = NEW.chat_id AND active;
    RETURN NULL;
END
$$;

CREATE TRIGGER outbox_blocked AFTER UPDATE OF failed_at ON outbox FOR EACH ROW
    WHEN (OLD.failed_at IS NULL AND NEW.failed_at IS NOT NULL AND NEW.last_error LIKE '403 %')
    EXECUTE FUNCTION quit_outbox_blocked();
