-- Conversation rows are found by owner (the primary key, the list and unread indexes)
-- or through channel_member; nothing reads them by channel alone any more, and every
-- update of a row that moves it in the list also had to add an entry to this index
-- (docs/ARCHITECTURE.md "The message hot path").
DROP INDEX IF EXISTS user_conversation_view_channel;
