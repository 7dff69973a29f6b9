-- What a former member last saw of a group (docs/ARCHITECTURE.md "Read models"): its
-- name, avatar and info version when the member left or was removed. A former member's
-- conversation row shows these, so later changes of the group (a rename, a new avatar)
-- reach no one outside it, in pushes or in sync.done. NULL for active members and for
-- members who left before this was recorded (their rows show the group as it is).
ALTER TABLE channel_member ADD COLUMN left_name TEXT;
ALTER TABLE channel_member ADD COLUMN left_avatar TEXT;
ALTER TABLE channel_member ADD COLUMN left_info_ver BIGINT;
