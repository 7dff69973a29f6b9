-- Replies, forwards and pinned messages (docs/API.md "Replies", "Forward", "Pinned
-- messages").

-- A reply names the message it quotes; the quote (sender, type, preview) is read from
-- that message whenever the reply is read, so it follows the quoted message's edits and
-- recall. A forwarded message carries where it came from: the original's id, sender,
-- sender's name and time (JSON, absent on other messages).
ALTER TABLE message ADD COLUMN reply_to INTEGER;
ALTER TABLE message ADD COLUMN forwarded_from TEXT;

-- A reply's `message.sent` event carries the quote as it was; a recall of the quoted
-- message erases it there too. Only sends that reply are in this index.
CREATE INDEX outbox_message_reply ON outbox (json_extract(payload, '$.replyTo.messageId'))
    WHERE event_type = 'message.sent' AND json_extract(payload, '$.replyTo') IS NOT NULL;

-- Pinned messages of a channel, listed newest pin first.
CREATE TABLE channel_pin (
    channel_id INTEGER NOT NULL,
    message_id INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    pinned_by  INTEGER NOT NULL,
    pinned_at  INTEGER NOT NULL,
    PRIMARY KEY (channel_id, message_id)
);
