-- Recall (docs/API.md "Recall"): a recalled message keeps its row and seq (history shows
-- a recall notice there, and unread counts stay seq arithmetic); its content, preview
-- and mentions are erased and these record who recalled it and when.
ALTER TABLE message ADD COLUMN recalled_at INTEGER;
ALTER TABLE message ADD COLUMN recalled_by INTEGER;
