-- Message search (docs/API.md "Search"): substring search of text messages in any
-- script, Chinese, Japanese and Korean included (no word spaces to split on), by FTS5's
-- trigram tokenizer (case-insensitive). Each text message has a row whose rowid is the
-- message's id; triggers keep it in step with sends, edits, recalls and deletions.
CREATE VIRTUAL TABLE message_search USING fts5(body, tokenize = 'trigram');
INSERT INTO message_search (rowid, body)
    SELECT id, json_extract(content, '$.text') FROM message
    WHERE json_type(content, '$.text') = 'text';
CREATE TRIGGER message_search_insert AFTER INSERT ON message
    WHEN json_type(new.content, '$.text') = 'text'
BEGIN
    INSERT INTO message_search (rowid, body) VALUES (new.id, json_extract(new.content, '$.text'));
END;
CREATE TRIGGER message_search_update AFTER UPDATE OF content ON message
BEGIN
    DELETE FROM message_search WHERE rowid = old.id;
    INSERT INTO message_search (rowid, body)
        SELECT new.id, json_extract(new.content, '$.text') WHERE json_type(new.content, '$.text') = 'text';
END;
CREATE TRIGGER message_search_delete AFTER DELETE ON message
BEGIN
    DELETE FROM message_search WHERE rowid = old.id;
END;
