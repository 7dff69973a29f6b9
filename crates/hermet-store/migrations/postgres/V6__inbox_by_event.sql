-- An event is in a user's inbox at most once (docs/PROTOCOL.md "Cursor, delivery and
-- catch-up"): the notifier looks an event up by (user, event) before numbering it, so a
-- replay of the notifier or a redelivered batch never gives a device the same event
-- again under a new cursor.
CREATE INDEX user_inbox_event ON user_inbox (user_id, event_id);
