-- Replies, forwards and pinned messages (docs/API.md "Replies", "Forward", "Pinned
-- messages").

-- A reply names the message it quotes; the quote (sender, type, preview) is read from
-- that message whenever the reply is read, so it follows the quoted message's edits and
-- recall. A forwarded message carries where it came from: the original's id, sender,
-- sender's name and time (JSON, absent on other messages).
ALTER TABLE message ADD COLUMN reply_to BIGINT, ADD COLUMN forwarded_from JSONB;

-- A reply's `message.sent` event carries the quote as it was; a recall of the quoted
-- message erases it there too. Only sends that reply are in this index.
CREATE INDEX outbox_message_reply ON outbox ((payload -> 'replyTo' ->> 'messageId'))
    WHERE event_type = 'message.sent' AND payload ? 'replyTo';

-- Pinned messages of a channel, listed newest pin first.
CREATE TABLE channel_pin (
    channel_id BIGINT NOT NULL,
    message_id BIGINT NOT NULL,
    seq        BIGINT NOT NULL,
    pinned_by  BIGINT NOT NULL,
    pinned_at  BIGINT NOT NULL,
    PRIMARY KEY (channel_id, message_id)
);
