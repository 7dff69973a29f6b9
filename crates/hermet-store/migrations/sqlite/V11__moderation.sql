-- Moderation (docs/API.md "Moderation"): everyone muted but the managers, slow mode,
-- members muted until a time, bans.
ALTER TABLE channel ADD COLUMN mute_all INTEGER NOT NULL DEFAULT 0;
ALTER TABLE channel ADD COLUMN slow_mode_secs INTEGER NOT NULL DEFAULT 0;

-- `muted_until`: the member may not send before then. `slow_sent_at`: when the member
-- last sent while the group was in slow mode (written only then, so other sends pay
-- nothing for it).
ALTER TABLE channel_member ADD COLUMN muted_until INTEGER;
ALTER TABLE channel_member ADD COLUMN slow_sent_at INTEGER;

-- Users banned from a group: removed, and refused as members and applicants until
-- unbanned.
CREATE TABLE channel_ban (
    channel_id INTEGER NOT NULL,
    user_id    INTEGER NOT NULL,
    banned_by  INTEGER NOT NULL,
    banned_at  INTEGER NOT NULL,
    PRIMARY KEY (channel_id, user_id)
);
