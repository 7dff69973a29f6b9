-- Recall, edit, delete for me, reactions and read receipts (docs/API.md "Recall", "Edit",
-- "Delete for me", "Reactions", "Read receipts").

-- A recalled message keeps its row and seq (history shows a recall notice there, and
-- unread counts stay seq arithmetic); its content, preview and mentions are erased and
-- these record who recalled it and when.
ALTER TABLE message ADD COLUMN recalled_at INTEGER;
ALTER TABLE message ADD COLUMN recalled_by INTEGER;

-- An edited message holds its current content; each earlier version is a row here.
ALTER TABLE message ADD COLUMN edited_at INTEGER;
ALTER TABLE message ADD COLUMN edit_count INTEGER NOT NULL DEFAULT 0;
CREATE TABLE message_version (
    message_id  INTEGER NOT NULL,
    -- 1 is the message as sent
    version     INTEGER NOT NULL,
    content     TEXT NOT NULL,
    mentions    TEXT NOT NULL,
    mention_all INTEGER NOT NULL,
    -- when this version was written (sent, or edited)
    written_at  INTEGER NOT NULL,
    PRIMARY KEY (message_id, version)
);

-- A recall erases the content of the message's edit events in the log too; only edit
-- events are in this index, so sends pay nothing for it.
CREATE INDEX outbox_message_edited ON outbox (json_extract(payload, '$.messageId')) WHERE event_type = 'message.edited';

-- Messages a member deleted for themselves: left out of their history, and their
-- conversation's preview shows the last message they kept.
-- The newest of them per conversation, on the write side's row of the member's
-- conversation: a preview needs to look for them only when the last message is not newer.
ALTER TABLE conversation_setting ADD COLUMN max_deleted_seq INTEGER NOT NULL DEFAULT 0;
CREATE TABLE message_hidden (
    user_id    INTEGER NOT NULL,
    channel_id INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    message_id INTEGER NOT NULL,
    hidden_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, channel_id, seq)
);

-- Reactions: one row per (message, reaction, member). History reads a page's counts by
-- the primary key's leading column.
CREATE TABLE message_reaction (
    message_id INTEGER NOT NULL,
    emoji      TEXT NOT NULL,
    user_id    INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (message_id, emoji, user_id)
);

-- Read receipts of one-to-one chats: each row carries the peer's read position (0 in
-- groups), set here for the rows that exist.
ALTER TABLE user_conversation_view ADD COLUMN peer_read_seq INTEGER NOT NULL DEFAULT 0;
UPDATE user_conversation_view SET peer_read_seq = COALESCE((SELECT r.last_read_seq FROM channel_read_record r
    WHERE r.channel_id = user_conversation_view.channel_id AND r.user_id = user_conversation_view.peer_user_id), 0)
WHERE conversation_type = 'single';
