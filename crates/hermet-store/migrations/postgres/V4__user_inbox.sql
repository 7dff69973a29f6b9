-- The realtime gateway's per-user event cursor (docs/PROTOCOL.md "Cursor, delivery and
-- catch-up"). Every event the notifier delivers to a user gets the next number of that
-- user's cursor; the inbox maps (user, cursor) to the event, whose payload stays in the
-- outbox. A client that reconnects with its cursor is sent every entry after it, in
-- order; entries are kept for `gateway.inbox_retention_secs` and at most
-- `gateway.inbox_max_per_user` per user.

-- The last cursor number handed out per user (one row per user who was ever notified).
CREATE TABLE user_inbox_head (
    user_id BIGINT PRIMARY KEY,
    seq     BIGINT NOT NULL
);

CREATE TABLE user_inbox (
    user_id    BIGINT NOT NULL,
    seq        BIGINT NOT NULL,
    event_id   BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, seq)
);
-- Retention pruning by age.
CREATE INDEX user_inbox_created ON user_inbox (created_at);
