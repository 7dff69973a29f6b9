-- Message search (docs/API.md "Search"): substring search of text messages in any
-- script, Chinese, Japanese and Korean included (no word spaces to split on), by
-- trigrams. pg_trgm is a trusted extension: the database's owner may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- A recall or an edit rewrites `content`, so the index follows them.
CREATE INDEX message_text_trgm ON message USING gin ((content ->> 'text') gin_trgm_ops);
