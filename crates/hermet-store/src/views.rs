//! The read models defined as functions of the write side, in SQL shared by both
//! drivers. A driver supplies a `keys` CTE (which rows) and the `{now}` placeholder;
//! the rest is identical text. (SQLite gets `greatest`/`least` as registered functions,
//! so the bodies need no dialect switch.)
//!
//! `refresh` statements upsert the computed rows and write only rows that differ, bumping
//! their `version`; the checker reads the same computed rows and compares them with the
//! stored ones field by field.

use std::sync::LazyLock;

/// Columns of `user_conversation_view` computed from the write side, in order.
pub const CONVERSATION_COLUMNS: &[&str] = &[
    "user_id",
    "channel_id",
    "conversation_type",
    "conversation_name",
    "conversation_avatar",
    "conversation_info_ver",
    "peer_user_id",
    "peer_nickname",
    "peer_avatar",
    "remark_name",
    "is_muted",
    "is_pinned",
    "is_hidden",
    "last_message_id",
    "last_message_seq",
    "last_message_type",
    "last_message_content",
    "last_message_sender_id",
    "last_message_sender_name",
    "last_message_time",
    "last_active_at",
    "unread_count",
    "mention_count",
    "opened_at",
    "closed_at",
    "read_diffusion",
    "peer_read_seq",
];

/// Columns of `user_contact_view` computed from the write side, in order.
pub const CONTACT_COLUMNS: &[&str] = &[
    "user_id",
    "contact_id",
    "contact_nickname",
    "contact_avatar",
    "contact_info_ver",
    "remark_name",
    "sort_name",
    "initial",
    "group_name",
    "tags",
    "is_starred",
    "is_blocked",
    "source",
    "added_at",
    "deleted_at",
];

/// What each conversation row of the `keys(user_id, channel_id)` CTE that precedes it is
/// computed from (`base0`); the rules of the rows built on it:
///
/// - history visible to a member is seq in (join_seq, left_seq or last_seq];
/// - unread = visible last seq − max(read seq, join seq): exact because seqs are
///   gap-free and a member's own message advances their read position;
/// - mentions = mention rows plus @all messages of others after the read position;
/// - a one-to-one row carries the peer's read position (`peer_read_seq`, read receipts;
///   0 in groups), so a read refreshes the peer's row too;
/// - the last message shown is the last visible one the member did not delete for
///   themselves ([`SHOWN_SEQ`]); unread and mentions count by seq regardless;
/// - a recalled message stays at its seq as a recall notice (it counts as unread like
///   any item of history; its preview is empty, its type reads `recalled`); a recall
///   deletes its mention rows and clears its @all, so it no longer counts as a mention;
/// - hidden/closed hold until a message newer than the seq recorded when hiding/closing;
///   leaving or a dismissed group closes the conversation for good;
/// - a former member sees the group's name, avatar and info version as they were when
///   they left (`left_name`, …): nothing the group changes later reaches them;
/// - an active member of a read-diffusion (large) group has `read_diffusion`: `expected_full`
///   is the row as readers see it, `expected` the row as stored, whose message-derived
///   columns are neutral (see [`READ_DIFFUSION_NEUTRAL`]); other rows are the same in both.
const CONVERSATION_BASE: &str = "
, base0 AS (
    SELECT m.user_id, m.channel_id, c.channel_type,
           CASE WHEN m.left_at IS NULL THEN c.name ELSE COALESCE(m.left_name, c.name) END AS c_name,
           CASE WHEN m.left_at IS NULL THEN c.avatar ELSE COALESCE(m.left_avatar, c.avatar) END AS c_avatar,
           CASE WHEN m.left_at IS NULL THEN c.channel_info_ver ELSE COALESCE(m.left_info_ver, c.channel_info_ver) END AS c_ver,
           c.archived_at, m.joined_at, m.left_at, m.join_seq,
           CASE WHEN m.left_seq IS NULL THEN c.last_seq ELSE least(c.last_seq, m.left_seq) END AS vis_seq,
           greatest(COALESCE(r.last_read_seq, 0), m.join_seq) AS read_seq,
           COALESCE(s.is_pinned, FALSE) AS is_pinned, COALESCE(s.is_muted, FALSE) AS is_muted,
           COALESCE(s.is_hidden, FALSE) AS s_hidden, COALESCE(s.hidden_seq, 0) AS hidden_seq,
           s.closed_at AS s_closed_at, COALESCE(s.closed_seq, 0) AS closed_seq,
           COALESCE(s.max_deleted_seq, 0) AS max_deleted_seq,
           (c.read_diffusion AND m.left_at IS NULL AND c.archived_at IS NULL) AS rd,
           CASE WHEN c.channel_type = 'single' THEN
               (SELECT pm.user_id FROM channel_member pm WHERE pm.channel_id = m.channel_id AND pm.user_id <> m.user_id LIMIT 1)
           END AS peer_id,
           CASE WHEN c.channel_type = 'single' THEN
               COALESCE((SELECT pr.last_read_seq FROM channel_member pm
                         JOIN channel_read_record pr ON pr.user_id = pm.user_id AND pr.channel_id = pm.channel_id
                         WHERE pm.channel_id = m.channel_id AND pm.user_id <> m.user_id LIMIT 1), 0)
               ELSE 0 END AS peer_read_seq
    FROM keys k
    JOIN channel_member m ON m.user_id = k.user_id AND m.channel_id = k.channel_id
    JOIN channel c ON c.id = m.channel_id
    LEFT JOIN channel_read_record r ON r.user_id = m.user_id AND r.channel_id = m.channel_id
    LEFT JOIN conversation_setting s ON s.user_id = m.user_id AND s.channel_id = m.channel_id
)";

/// The peer's profile and my remark for them, on top of [`CONVERSATION_BASE`].
///
/// `base` is `MATERIALIZED` (here and in [`MESSAGE_BODY_SQL`]) so that its columns are
/// plain columns to the join of [`FROM_BASE`]: PostgreSQL does not use an expression of
/// two tables (`vis_seq` is one of the member's and the channel's) as an index key of
/// that join, so it found each row's last message by scanning all of the channel's
/// messages, a cost that grew with the channel's history on every send (5.0 ms for a
/// group of 100 with 200 messages, 1.5 ms with the CTE materialized).
const CONVERSATION_PROFILE: &str = ",
base AS MATERIALIZED (
    SELECT b0.*, {SHOWN_SEQ}, pu.nickname AS peer_nickname, pu.avatar AS peer_avatar, pu.profile_ver AS peer_ver,
           COALESCE(f.remark_name, '') AS remark
    FROM base0 b0
    LEFT JOIN users pu ON pu.id = b0.peer_id
    LEFT JOIN friendship f ON f.user_id = b0.user_id AND f.friend_id = b0.peer_id AND f.deleted_at IS NULL
)";

/// The seq of the last message a member keeps in view (`base0 b0`): the last visible one,
/// or when they deleted it for themselves (`message_hidden`), the last before it they did
/// not. The common case (nothing deleted at or after the last message, known from the
/// setting row already joined) costs a comparison; a probe of `message_hidden` only
/// when the newest deleted one is not older (measured: a probe on every row made a
/// 100-member group's message refresh 14% slower).
const SHOWN_SEQ: &str = "CASE WHEN b0.max_deleted_seq < b0.vis_seq THEN b0.vis_seq
           WHEN EXISTS (SELECT 1 FROM message_hidden h
               WHERE h.user_id = b0.user_id AND h.channel_id = b0.channel_id AND h.seq = b0.vis_seq)
           THEN (SELECT MAX(x.seq) FROM message x WHERE x.channel_id = b0.channel_id AND x.seq < b0.vis_seq
                   AND NOT EXISTS (SELECT 1 FROM message_hidden h
                     WHERE h.user_id = b0.user_id AND h.channel_id = b0.channel_id AND h.seq = x.seq))
           ELSE b0.vis_seq END AS shown_seq";

/// The message-derived columns (those of [`READ_DIFFUSION_NEUTRAL`]), `opened_at` and
/// `read_diffusion`, from `base b` and its last visible message `lm` ([`FROM_BASE`]).
const MESSAGE_DERIVED: &str = "(b.s_hidden AND b.vis_seq <= b.hidden_seq) AS is_hidden,
           lm.id AS last_message_id, COALESCE(lm.seq, 0) AS last_message_seq,
           CASE WHEN lm.recalled_at IS NULL THEN lm.msg_type ELSE 'recalled' END AS last_message_type,
           lm.preview AS last_message_content, lm.sender_id AS last_message_sender_id,
           lm.sender_name AS last_message_sender_name, lm.created_at AS last_message_time,
           greatest(b.joined_at, COALESCE(lm.created_at, 0)) AS last_active_at,
           greatest(b.vis_seq - b.read_seq, 0) AS unread_count,
           (SELECT COUNT(*) FROM message_mention mm
             WHERE mm.user_id = b.user_id AND mm.channel_id = b.channel_id AND mm.seq > b.read_seq AND mm.seq <= b.vis_seq)
           + (SELECT COUNT(*) FROM message x
             WHERE x.channel_id = b.channel_id AND x.mention_all AND x.seq > b.read_seq AND x.seq <= b.vis_seq
               AND x.sender_id <> b.user_id) AS mention_count,
           b.joined_at AS opened_at,
           CASE WHEN b.left_at IS NOT NULL THEN b.left_at
                WHEN b.archived_at IS NOT NULL THEN b.archived_at
                WHEN b.s_closed_at IS NOT NULL AND b.vis_seq <= b.closed_seq THEN b.s_closed_at
                ELSE NULL END AS closed_at,
           b.rd AS read_diffusion, b.peer_read_seq";

/// The rows of `base`, each with the last message its member may see.
const FROM_BASE: &str = "FROM base b
    LEFT JOIN message lm ON lm.channel_id = b.channel_id AND lm.seq = b.shown_seq AND b.shown_seq > b.join_seq";

/// The stored form of a computed column: neutral in a read-diffusion row.
fn stored(c: &str) -> String {
    match READ_DIFFUSION_NEUTRAL.iter().find(|(n, _)| *n == c) {
        Some((_, v)) => format!("CASE WHEN read_diffusion THEN {v} ELSE {c} END AS {c}"),
        None => c.to_owned(),
    }
}

/// The columns a read-diffusion row stores as fixed neutral values (they follow every
/// message, so they are computed when read instead), with those values.
pub const READ_DIFFUSION_NEUTRAL: &[(&str, &str)] = &[
    ("is_hidden", "FALSE"),
    ("last_message_id", "NULL"),
    ("last_message_seq", "0"),
    ("last_message_type", "NULL"),
    ("last_message_content", "NULL"),
    ("last_message_sender_id", "NULL"),
    ("last_message_sender_name", "NULL"),
    ("last_message_time", "NULL"),
    ("last_active_at", "opened_at"),
    ("unread_count", "0"),
    ("mention_count", "0"),
    ("closed_at", "NULL"),
    ("peer_read_seq", "0"),
];

/// Expected conversation rows, whole: `expected_full` as readers see them, `expected`
/// as stored (see [`CONVERSATION_BASE`] for the rules).
static CONVERSATION_BODY_SQL: LazyLock<String> = LazyLock::new(|| {
    let stored: Vec<String> = CONVERSATION_COLUMNS.iter().map(|c| stored(c)).collect();
    let profile = CONVERSATION_PROFILE.replace("{SHOWN_SEQ}", SHOWN_SEQ);
    format!(
        "{CONVERSATION_BASE}{profile},
expected_full AS (
    SELECT b.user_id, b.channel_id, b.channel_type AS conversation_type,
           CASE WHEN b.channel_type = 'single' THEN COALESCE(NULLIF(b.remark, ''), b.peer_nickname, '') ELSE b.c_name END
               AS conversation_name,
           CASE WHEN b.channel_type = 'single' THEN COALESCE(b.peer_avatar, '') ELSE b.c_avatar END AS conversation_avatar,
           CASE WHEN b.channel_type = 'single' THEN COALESCE(b.peer_ver, 1) ELSE b.c_ver END AS conversation_info_ver,
           b.peer_id AS peer_user_id, COALESCE(b.peer_nickname, '') AS peer_nickname,
           COALESCE(b.peer_avatar, '') AS peer_avatar, b.remark AS remark_name,
           b.is_muted, b.is_pinned, {MESSAGE_DERIVED}
    {FROM_BASE}
),
expected AS (
    SELECT {} FROM expected_full
)",
        stored.join(", ")
    )
});

/// Expected message-derived columns only (`expected` has the keys and
/// [`message_columns`]): the same definitions, without the peer's profile.
static MESSAGE_BODY_SQL: LazyLock<String> = LazyLock::new(|| {
    let stored: Vec<String> = message_columns().into_iter().map(stored).collect();
    format!(
        "{CONVERSATION_BASE},
base AS MATERIALIZED (
    SELECT b0.user_id, b0.channel_id, b0.joined_at, b0.left_at, b0.join_seq, b0.vis_seq, {SHOWN_SEQ}, b0.read_seq,
           b0.s_hidden, b0.hidden_seq, b0.s_closed_at, b0.closed_seq, b0.archived_at, b0.rd, b0.peer_read_seq
    FROM base0 b0
),
expected_full AS (
    SELECT b.user_id, b.channel_id, {MESSAGE_DERIVED}
    {FROM_BASE}
),
expected AS (
    SELECT user_id, channel_id, {} FROM expected_full
)",
        stored.join(", ")
    )
});

/// Expected contact rows for the `keys(user_id, contact_id)` CTE that precedes it.
const CONTACT_BODY: &str = "
, base AS (
    SELECT f.*, u.nickname, u.avatar, u.profile_ver,
           CASE WHEN f.remark_name <> '' THEN f.remark_key ELSE u.search_name END AS sn
    FROM keys k
    JOIN friendship f ON f.user_id = k.user_id AND f.friend_id = k.contact_id
    JOIN users u ON u.id = f.friend_id
),
expected AS (
    SELECT b.user_id, b.friend_id AS contact_id, b.nickname AS contact_nickname, b.avatar AS contact_avatar,
           b.profile_ver AS contact_info_ver, b.remark_name, b.sn AS sort_name,
           CASE WHEN substr(b.sn, 1, 1) BETWEEN 'a' AND 'z' THEN upper(substr(b.sn, 1, 1)) ELSE '#' END AS initial,
           b.group_name, b.tags, b.is_starred, b.is_blocked, b.source, b.added_at, b.deleted_at
    FROM base b
)";

fn upsert(table: &str, key: &str, columns: &[&str], body: &str) -> String {
    let cols = columns.join(", ");
    let keys: Vec<&str> = key.split(", ").collect();
    let updates: Vec<String> =
        columns.iter().filter(|c| !keys.contains(c)).map(|c| format!("{c} = excluded.{c}")).collect();
    let differs: Vec<String> = columns
        .iter()
        .filter(|c| !keys.contains(c))
        .map(|c| format!("{table}.{c} IS DISTINCT FROM excluded.{c}"))
        .collect();
    format!(
        "{body}
INSERT INTO {table} ({cols}, version, created_at, updated_at)
SELECT {cols}, 1, {{now}}, {{now}} FROM expected WHERE TRUE
ON CONFLICT ({key}) DO UPDATE SET {updates}, version = {table}.version + 1, updated_at = excluded.updated_at
WHERE {differs}
RETURNING user_id",
        updates = updates.join(", "),
        differs = differs.join(" OR "),
    )
}

/// A profile change, on the rows that show the user (found through the reverse
/// indexes): only the profile-derived columns, set to what the refresh would compute
/// (no other column of these rows depends on the profile; the consistency checker holds
/// the two to one definition). Close to the hand-written fan-out UPDATE, where
/// recomputing whole rows cost twice as much (BENCHMARKS.md, "Profile fan-out").
/// Prefix with `WITH p(user_id) AS (…)`; returns the owners of the rows changed.
/// (SQLite's form; PostgreSQL runs `PEER_PROFILE_*_ONE`.)
pub const PEER_PROFILE_CONVERSATIONS: &str = "
UPDATE user_conversation_view
SET peer_nickname = u.nickname, peer_avatar = u.avatar,
    conversation_name = CASE WHEN user_conversation_view.remark_name <> '' THEN user_conversation_view.remark_name
                             ELSE u.nickname END,
    conversation_avatar = u.avatar, conversation_info_ver = u.profile_ver,
    version = user_conversation_view.version + 1, updated_at = {now}
FROM p
JOIN conversation_reverse_index r ON r.peer_user_id = p.user_id
JOIN users u ON u.id = p.user_id
WHERE user_conversation_view.user_id = r.owner_user_id AND user_conversation_view.channel_id = r.channel_id
  AND (user_conversation_view.peer_nickname IS DISTINCT FROM u.nickname
       OR user_conversation_view.peer_avatar IS DISTINCT FROM u.avatar
       OR user_conversation_view.conversation_info_ver IS DISTINCT FROM u.profile_ver)
RETURNING user_conversation_view.user_id";

/// The same for the contact rows listing the user (a remark, where set, keeps deciding
/// the sort name and initial).
pub const PEER_PROFILE_CONTACTS: &str = "
UPDATE user_contact_view
SET contact_nickname = u.nickname, contact_avatar = u.avatar, contact_info_ver = u.profile_ver,
    sort_name = CASE WHEN user_contact_view.remark_name <> '' THEN user_contact_view.sort_name ELSE u.search_name END,
    initial = CASE WHEN user_contact_view.remark_name <> '' THEN user_contact_view.initial
                   WHEN substr(u.search_name, 1, 1) BETWEEN 'a' AND 'z' THEN upper(substr(u.search_name, 1, 1))
                   ELSE '#' END,
    version = user_contact_view.version + 1, updated_at = {now}
FROM p
JOIN contact_reverse_index r ON r.contact_user_id = p.user_id
JOIN users u ON u.id = p.user_id
WHERE user_contact_view.user_id = r.owner_user_id AND user_contact_view.contact_id = p.user_id
  AND (user_contact_view.contact_nickname IS DISTINCT FROM u.nickname
       OR user_contact_view.contact_avatar IS DISTINCT FROM u.avatar
       OR user_contact_view.contact_info_ver IS DISTINCT FROM u.profile_ver
       OR (user_contact_view.remark_name = '' AND user_contact_view.sort_name IS DISTINCT FROM u.search_name))";

/// PostgreSQL's form of the two above, for one user whose profile values are given
/// (read just before): the same shape as the hand-written fan-out UPDATE, which plans a
/// bitmap scan of the reverse index where the join to a set of users planned an index
/// scan and a lookup of the user per row (27 ms against 19 for 5,000 rows). A row
/// already at the user's `profile_ver` shows this profile (every profile change bumps
/// it), so a replayed event rewrites nothing. `$1` user, `$2` nickname, `$3` avatar,
/// `$4` profile_ver, `$5` now; contacts also `$6` search name.
pub const PEER_PROFILE_CONVERSATIONS_ONE: &str = "
UPDATE user_conversation_view v
SET peer_nickname = $2, peer_avatar = $3,
    conversation_name = CASE WHEN v.remark_name <> '' THEN v.remark_name ELSE $2 END,
    conversation_avatar = $3, conversation_info_ver = $4, version = v.version + 1, updated_at = $5
FROM conversation_reverse_index r
WHERE r.peer_user_id = $1 AND v.user_id = r.owner_user_id AND v.channel_id = r.channel_id
  AND v.conversation_info_ver IS DISTINCT FROM $4
RETURNING v.user_id";
pub const PEER_PROFILE_CONTACTS_ONE: &str = "
UPDATE user_contact_view v
SET contact_nickname = $2, contact_avatar = $3, contact_info_ver = $4,
    sort_name = CASE WHEN v.remark_name <> '' THEN v.sort_name ELSE $6 END,
    initial = CASE WHEN v.remark_name <> '' THEN v.initial
                   WHEN substr($6::text COLLATE \"C\", 1, 1) BETWEEN 'a' AND 'z' THEN upper(substr($6, 1, 1))
                   ELSE '#' END,
    version = v.version + 1, updated_at = $5
FROM contact_reverse_index r
WHERE r.contact_user_id = $1 AND v.user_id = r.owner_user_id AND v.contact_id = $1
  AND v.contact_info_ver IS DISTINCT FROM $4";

/// Sets `columns` of the existing rows to their expected values (`body` defines
/// `expected`), writing only rows that differ; `RETURNING user_id` like [`upsert`]. An
/// `UPDATE` of a dozen columns skips the upsert's insert attempt and its comparison of
/// every column.
fn update_columns(table: &str, key: &str, columns: &[&str], body: &str) -> String {
    // The target unaliased and named in full: SQLite's RETURNING takes no alias.
    let keys: Vec<&str> = key.split(", ").collect();
    let sets: Vec<String> = columns.iter().map(|c| format!("{c} = e.{c}")).collect();
    let differs: Vec<String> = columns.iter().map(|c| format!("{table}.{c} IS DISTINCT FROM e.{c}")).collect();
    let on: Vec<String> = keys.iter().map(|k| format!("{table}.{k} = e.{k}")).collect();
    format!(
        "{body}
UPDATE {table} SET {sets}, version = {table}.version + 1, updated_at = {{now}}
FROM expected e
WHERE {on} AND ({differs})
RETURNING {table}.user_id",
        sets = sets.join(", "),
        on = on.join(" AND "),
        differs = differs.join(" OR "),
    )
}

/// The columns of a conversation row that a message changes (and a read, which moves the
/// read position): the same columns a read-diffusion row keeps neutral.
pub fn message_columns() -> Vec<&'static str> {
    READ_DIFFUSION_NEUTRAL.iter().map(|(c, _)| *c).collect()
}

/// The message-derived columns of the existing conversation rows of the `keys` CTE that
/// precedes it (`{now}` as for the refresh), from the same definitions as
/// [`CONVERSATION_REFRESH`] without the peer's profile and remark, which no message
/// changes. Rows that do not exist are not created: the caller checks for them
/// ([`MISSING_CONVERSATIONS`]).
pub static MESSAGE_REFRESH: LazyLock<String> = LazyLock::new(|| {
    update_columns("user_conversation_view", "user_id, channel_id", &message_columns(), &MESSAGE_BODY_SQL)
});

/// Channels (of `keys`) with a member whose conversation row is missing: a message step
/// that finds one refreshes those channels whole.
pub const MISSING_CONVERSATIONS: &str = "
SELECT DISTINCT k.channel_id FROM keys k
WHERE NOT EXISTS (SELECT 1 FROM user_conversation_view v WHERE v.user_id = k.user_id AND v.channel_id = k.channel_id)";

/// Upserts the expected conversation rows (prefix with a `WITH keys(…) AS (…)` CTE).
pub static CONVERSATION_REFRESH: LazyLock<String> = LazyLock::new(|| {
    upsert("user_conversation_view", "user_id, channel_id", CONVERSATION_COLUMNS, &CONVERSATION_BODY_SQL)
});

/// Upserts the expected contact rows (prefix with a `WITH keys(…) AS (…)` CTE).
pub static CONTACT_REFRESH: LazyLock<String> =
    LazyLock::new(|| upsert("user_contact_view", "user_id, contact_id", CONTACT_COLUMNS, CONTACT_BODY));
// (Both return the owners of the rows they wrote: conversation owners feed cache
// invalidation; the contact refresh's are not used.)

/// Selects the expected conversation rows, integers as BIGINT (prefix with the keys CTE).
pub static CONVERSATION_EXPECTED: LazyLock<String> =
    LazyLock::new(|| format!("{}\nSELECT {} FROM expected", &*CONVERSATION_BODY_SQL, conversation_select("")));

/// Selects the expected contact rows (prefix with the keys CTE).
pub static CONTACT_EXPECTED: LazyLock<String> =
    LazyLock::new(|| format!("{CONTACT_BODY}\nSELECT {} FROM expected", contact_select("")));

const INT_COLUMNS: &[&str] = &["unread_count", "mention_count"];

/// The conversation columns as a select list with `prefix` (e.g. `v.`), integers widened.
pub fn conversation_select(prefix: &str) -> String {
    CONVERSATION_COLUMNS
        .iter()
        .map(|c| if INT_COLUMNS.contains(c) { format!("CAST({prefix}{c} AS BIGINT)") } else { format!("{prefix}{c}") })
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn contact_select(prefix: &str) -> String {
    CONTACT_COLUMNS.iter().map(|c| format!("{prefix}{c}")).collect::<Vec<_>>().join(", ")
}

/// Rebuilds the conversation reverse index of the channels in `rchannels(channel_id)`:
/// for each member of a single channel, (peer, owner, channel).
pub const REVERSE_CHANNELS_DELETE: &str =
    "DELETE FROM conversation_reverse_index WHERE channel_id IN (SELECT channel_id FROM rchannels)";
pub const REVERSE_CHANNELS_INSERT: &str = "
INSERT INTO conversation_reverse_index (peer_user_id, owner_user_id, channel_id, created_at)
SELECT pm.user_id, m.user_id, m.channel_id, {now}
FROM rchannels rc
JOIN channel c ON c.id = rc.channel_id AND c.channel_type = 'single'
JOIN channel_member m ON m.channel_id = c.id
JOIN channel_member pm ON pm.channel_id = c.id AND pm.user_id <> m.user_id
WHERE TRUE
ON CONFLICT DO NOTHING";

/// Contact reverse-index rows of the pairs in `rpairs(user_id, contact_id)`: present
/// when the friendship row exists (live or deleted: its view exists either way).
pub const REVERSE_CONTACTS_DELETE: &str = "
DELETE FROM contact_reverse_index
WHERE EXISTS (SELECT 1 FROM rpairs p WHERE p.user_id = contact_reverse_index.owner_user_id AND p.contact_id = contact_reverse_index.contact_user_id)
  AND NOT EXISTS (SELECT 1 FROM friendship f WHERE f.user_id = contact_reverse_index.owner_user_id AND f.friend_id = contact_reverse_index.contact_user_id)";
pub const REVERSE_CONTACTS_INSERT: &str = "
INSERT INTO contact_reverse_index (contact_user_id, owner_user_id, created_at)
SELECT f.friend_id, f.user_id, {now}
FROM rpairs p JOIN friendship f ON f.user_id = p.user_id AND f.friend_id = p.contact_id
WHERE TRUE
ON CONFLICT DO NOTHING";

/// Reverse-index rows owned by a set of owners (rebuild and repair). `{in_owners}` is
/// the driver's test that a user id is one of the owners given in `$1`
/// ([`for_owners`]), `{now}` its placeholder for `$2`.
pub const OWNER_REVERSE_CONVERSATIONS: &str = "
INSERT INTO conversation_reverse_index (peer_user_id, owner_user_id, channel_id, created_at)
SELECT pm.user_id, m.user_id, m.channel_id, {now} FROM channel_member m
JOIN channel c ON c.id = m.channel_id AND c.channel_type = 'single'
JOIN channel_member pm ON pm.channel_id = m.channel_id AND pm.user_id <> m.user_id
WHERE m.user_id {in_owners} ON CONFLICT DO NOTHING";
pub const OWNER_REVERSE_CONTACTS: &str = "
INSERT INTO contact_reverse_index (contact_user_id, owner_user_id, created_at)
SELECT f.friend_id, f.user_id, {now} FROM friendship f WHERE f.user_id {in_owners} ON CONFLICT DO NOTHING";

/// The read-model rows of a set of owners that the write side no longer backs
/// (`delete_orphans`): conversation rows without a membership, contact rows without a
/// friendship, and the reverse-index rows of either ([`for_owners`]).
pub const ORPHAN_DELETES: [&str; 4] = [
    "DELETE FROM user_conversation_view WHERE user_conversation_view.user_id {in_owners}
     AND NOT EXISTS (SELECT 1 FROM channel_member m
                     WHERE m.user_id = user_conversation_view.user_id AND m.channel_id = user_conversation_view.channel_id)",
    "DELETE FROM user_contact_view WHERE user_contact_view.user_id {in_owners}
     AND NOT EXISTS (SELECT 1 FROM friendship f
                     WHERE f.user_id = user_contact_view.user_id AND f.friend_id = user_contact_view.contact_id)",
    "DELETE FROM conversation_reverse_index WHERE conversation_reverse_index.owner_user_id {in_owners}
     AND NOT EXISTS (SELECT 1 FROM channel_member m JOIN channel ch ON ch.id = m.channel_id AND ch.channel_type = 'single'
                     JOIN channel_member pm ON pm.channel_id = m.channel_id AND pm.user_id = conversation_reverse_index.peer_user_id
                     WHERE m.user_id = conversation_reverse_index.owner_user_id
                       AND m.channel_id = conversation_reverse_index.channel_id AND pm.user_id <> m.user_id)",
    "DELETE FROM contact_reverse_index WHERE contact_reverse_index.owner_user_id {in_owners}
     AND NOT EXISTS (SELECT 1 FROM friendship f
                     WHERE f.user_id = contact_reverse_index.owner_user_id AND f.friend_id = contact_reverse_index.contact_user_id)",
];

/// What the consistency checker compares for the reverse indexes of a set of owners
/// ([`for_owners`]): (peer, owner, channel) and (contact, owner) rows as the write side
/// implies them, and as stored.
pub const REVERSE_CONVERSATIONS_EXPECTED: &str = "SELECT pm.user_id, m.user_id, m.channel_id FROM channel_member m
     JOIN channel ch ON ch.id = m.channel_id AND ch.channel_type = 'single'
     JOIN channel_member pm ON pm.channel_id = m.channel_id AND pm.user_id <> m.user_id
     WHERE m.user_id {in_owners}";
pub const REVERSE_CONVERSATIONS_STORED: &str =
    "SELECT peer_user_id, owner_user_id, channel_id FROM conversation_reverse_index WHERE owner_user_id {in_owners}";
pub const REVERSE_CONTACTS_EXPECTED: &str = "SELECT friend_id, user_id FROM friendship WHERE user_id {in_owners}";
pub const REVERSE_CONTACTS_STORED: &str =
    "SELECT contact_user_id, owner_user_id FROM contact_reverse_index WHERE owner_user_id {in_owners}";

/// The stored read-model rows of a set of owners ([`for_owners`]).
pub static CONVERSATIONS_STORED: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {} FROM user_conversation_view WHERE user_id {{in_owners}}", conversation_select(""))
});
pub static CONTACTS_STORED: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {} FROM user_contact_view WHERE user_id {{in_owners}}", contact_select("")));

/// A statement over a set of owners in a driver's terms: `in_owners` tests a user id
/// against the owners bound as `$1`, `now` is the placeholder of `$2`.
pub fn for_owners(sql: &str, in_owners: &str, now: &str) -> String {
    sql.replace("{in_owners}", in_owners).replace("{now}", now)
}

/// The statements over a set of owners, in one driver's terms ([`for_owners`]); each
/// driver builds them once.
pub(crate) struct OwnerStatements {
    pub reverse_conversations: String,
    pub reverse_contacts: String,
    pub orphan_deletes: [String; 4],
    pub conversations_stored: String,
    pub contacts_stored: String,
    pub reverse_conversations_expected: String,
    pub reverse_conversations_stored: String,
    pub reverse_contacts_expected: String,
    pub reverse_contacts_stored: String,
}

impl OwnerStatements {
    pub(crate) fn new(in_owners: &str, now: &str) -> Self {
        let f = |sql: &str| for_owners(sql, in_owners, now);
        Self {
            reverse_conversations: f(OWNER_REVERSE_CONVERSATIONS),
            reverse_contacts: f(OWNER_REVERSE_CONTACTS),
            orphan_deletes: ORPHAN_DELETES.map(f),
            conversations_stored: f(&CONVERSATIONS_STORED),
            contacts_stored: f(&CONTACTS_STORED),
            reverse_conversations_expected: f(REVERSE_CONVERSATIONS_EXPECTED),
            reverse_conversations_stored: f(REVERSE_CONVERSATIONS_STORED),
            reverse_contacts_expected: f(REVERSE_CONTACTS_EXPECTED),
            reverse_contacts_stored: f(REVERSE_CONTACTS_STORED),
        }
    }
}

/// The start of a query over *effective* conversation rows (as readers see them): a
/// `keys` CTE of the read-diffusion rows of `user_conversation_view` matching `read_keys`,
/// then the body, so `expected_full` holds those rows computed now. The query unions them
/// with the stored rows that are not read-diffusion (`read_diffusion = FALSE`).
pub fn effective_prefix(read_keys: &str) -> String {
    format!(
        "WITH keys(user_id, channel_id) AS (
    SELECT user_id, channel_id FROM user_conversation_view WHERE {read_keys} AND read_diffusion = TRUE
){}",
        &*CONVERSATION_BODY_SQL
    )
}

/// Filters of `GET /conversations` on a row source (stored or computed), `$2`…`$7`.
const LIST_FILTER: &str = "closed_at IS NULL AND NOT is_hidden
       AND ($2 = '' OR conversation_type = $2)
       AND ($3 = FALSE OR unread_count > 0)
       AND ($4 = FALSE OR (is_pinned, last_active_at, channel_id) < ($5, $6, $7))";
const LIST_ORDER: &str = "ORDER BY is_pinned DESC, last_active_at DESC, channel_id DESC LIMIT $8";

/// `GET /conversations` (`$1` user, filters `$2`…`$7`, `$8` limit): the stored list
/// (through `user_conversation_view_list`) merged with the user's read-diffusion rows,
/// computed now, in one order. The read-diffusion rows come from their partial index:
/// a user's large groups, never a large group's members.
pub static CONVERSATION_LIST: LazyLock<String> = LazyLock::new(|| {
    let sel = conversation_select("");
    format!(
        "{prefix}
SELECT * FROM (
    SELECT * FROM (
        SELECT {sel} FROM user_conversation_view
        WHERE user_id = $1 AND read_diffusion = FALSE AND {LIST_FILTER}
        {LIST_ORDER}
    ) stored
    UNION ALL
    SELECT {sel} FROM expected_full WHERE {LIST_FILTER}
) x {LIST_ORDER}",
        prefix = effective_prefix("user_id = $1"),
    )
});

/// One effective conversation row (`$1` user, `$2` channel).
pub static CONVERSATION_ONE: LazyLock<String> = LazyLock::new(|| {
    let sel = conversation_select("");
    format!(
        "{prefix}
SELECT {sel} FROM user_conversation_view WHERE user_id = $1 AND channel_id = $2 AND read_diffusion = FALSE
UNION ALL
SELECT {sel} FROM expected_full",
        prefix = effective_prefix("user_id = $1 AND channel_id = $2"),
    )
});

/// Sum of the unread counts of the user's open, unmuted, visible conversations (`$1`).
pub static TOTAL_UNREAD: LazyLock<String> = LazyLock::new(|| {
    const OPEN: &str = "closed_at IS NULL AND NOT is_hidden AND NOT is_muted";
    format!(
        "{prefix}
SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) FROM (
    SELECT unread_count AS n FROM user_conversation_view
    WHERE user_id = $1 AND unread_count > 0 AND read_diffusion = FALSE AND {OPEN}
    UNION ALL
    SELECT unread_count FROM expected_full WHERE {OPEN}
) t",
        prefix = effective_prefix("user_id = $1"),
    )
});

/// The effective rows of (owner, channel) pairs; `pairs` is the driver's predicate on
/// `(user_id, channel_id)` (arrays or a JSON list of pairs in `$1`).
pub fn pair_conversations(pairs: &str) -> String {
    let sel = conversation_select("");
    format!(
        "{prefix}
SELECT {sel} FROM user_conversation_view WHERE {pairs} AND read_diffusion = FALSE
UNION ALL
SELECT {sel} FROM expected_full",
        prefix = effective_prefix(pairs),
    )
}

/// The user's (`$1`) conversation rows changed at or after `$2` (at most `$3`, oldest
/// change first), then every read-diffusion row of the user, computed now: those change
/// with every message of their group, which their stored row does not record.
pub static CONVERSATIONS_CHANGED: LazyLock<String> = LazyLock::new(|| {
    let sel = conversation_select("");
    format!(
        "{prefix}
SELECT * FROM (
    SELECT * FROM (
        SELECT {sel}, 0 AS part, updated_at AS changed FROM user_conversation_view
        WHERE user_id = $1 AND updated_at >= $2 AND read_diffusion = FALSE
        ORDER BY updated_at, channel_id LIMIT $3
    ) stored
    UNION ALL
    SELECT {sel}, 1, 0 FROM expected_full
) x ORDER BY part, changed, channel_id",
        prefix = effective_prefix("user_id = $1"),
    )
});
