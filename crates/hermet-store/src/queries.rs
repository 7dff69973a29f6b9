//! SQL shared by both drivers, written with PostgreSQL's `$n` placeholders; the SQLite
//! driver rewrites them to `?n` ([`sqlite_placeholders`]). Statements that differ
//! (arrays, row locks) live in the drivers.

use std::borrow::Cow;

use crate::rows::{
    CHANNEL_APPLICATION_COLUMNS, CHANNEL_COLUMNS, CONTACT_APPLICATION_COLUMNS, FRIENDSHIP_COLUMNS, MEMBER_COLUMNS,
    MESSAGE_COLUMNS, MESSAGE_VERSION_COLUMNS, PIN_COLUMNS, SETTING_COLUMNS,
};
use std::sync::LazyLock;

/// `$1` → `?1` (SQLite's numbered parameters).
pub(crate) fn sqlite_placeholders(sql: &str) -> Cow<'_, str> {
    if !sql.contains('$') {
        return Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(|n| n.is_ascii_digit()) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A status filter as bound to the application queries (`''` is any status).
pub(crate) fn status_text(s: Option<hermet_domain::contact::ApplicationStatus>) -> &'static str {
    s.map(|s| s.as_str()).unwrap_or("")
}

/// [`CONVERSATIONS`]' parameters after the user (`$2`…`$8`), from the query.
pub(crate) struct ConversationArgs {
    /// The conversation type, `''` for any.
    pub kind: &'static str,
    pub unread_only: bool,
    /// Whether a keyset position follows.
    pub has_after: bool,
    pub pinned: bool,
    pub last_active: i64,
    pub channel: i64,
    pub limit: i64,
}

impl ConversationArgs {
    pub(crate) fn of(q: &crate::ports::ConversationQuery) -> Self {
        let (has_after, (pinned, last_active, channel)) = match q.after {
            Some(k) => (true, k),
            None => (false, (false, 0, 0)),
        };
        Self {
            kind: q.conversation_type.map(|t| t.as_str()).unwrap_or(""),
            unread_only: q.unread_only,
            has_after,
            pinned,
            last_active,
            channel,
            limit: q.limit as i64,
        }
    }
}

/// [`CONTACTS`]' parameters after the user (`$2`…`$8`), from the query.
pub(crate) struct ContactArgs<'a> {
    /// The group and the initial, `''` for any.
    pub group: &'a str,
    pub initial: &'a str,
    /// Whether a keyset position follows.
    pub has_after: bool,
    pub starred: bool,
    pub sort_name: &'a str,
    pub contact: i64,
    pub limit: i64,
}

impl<'a> ContactArgs<'a> {
    pub(crate) fn of(q: &'a crate::ports::ContactQuery) -> Self {
        let (has_after, (starred, sort_name, contact)) = match &q.after {
            Some((s, n, id)) => (true, (*s, n.as_str(), *id)),
            None => (false, (false, "", 0)),
        };
        Self {
            group: q.group.as_deref().unwrap_or(""),
            initial: q.initial.as_deref().unwrap_or(""),
            has_after,
            starred,
            sort_name,
            contact,
            limit: q.limit as i64,
        }
    }
}

macro_rules! sql {
    ($name:ident, $($arg:tt)*) => {
        pub(crate) static $name: LazyLock<String> = LazyLock::new(|| format!($($arg)*));
    };
}

/// `%text%` for `LIKE`/`ILIKE` with `\\` as the escape: the text's own `%`, `_` and `\\`
/// match themselves.
pub(crate) fn like_pattern(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('%');
    for ch in text.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push('%');
    out
}

/// A search's conditions besides the text: `$1` the reader, `$3` channel (0: any), `$4`
/// sender (0: any), `$5`/`$6` sent after/before, `$7` ids below (`$8` is the limit).
pub(crate) const SEARCH_VISIBLE: &str = "recalled_at IS NULL
       AND EXISTS (SELECT 1 FROM channel_member cm WHERE cm.channel_id = message.channel_id AND cm.user_id = $1
                     AND cm.left_at IS NULL AND cm.join_seq < message.seq)
       AND (CAST($3 AS BIGINT) = 0 OR channel_id = $3) AND (CAST($4 AS BIGINT) = 0 OR sender_id = $4)
       AND created_at > $5 AND created_at < $6 AND id < $7
       AND NOT EXISTS (SELECT 1 FROM message_hidden h
                       WHERE h.user_id = $1 AND h.channel_id = message.channel_id AND h.seq = message.seq)";

/// History leaves out what the reader (`$5`) deleted for themselves.
const NOT_HIDDEN: &str = "NOT EXISTS (SELECT 1 FROM message_hidden h
       WHERE h.user_id = $5 AND h.channel_id = message.channel_id AND h.seq = message.seq)";
pub(crate) const REACT: &str = "INSERT INTO message_reaction (message_id, emoji, user_id, created_at)
     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";
pub(crate) const UNREACT: &str = "DELETE FROM message_reaction WHERE message_id = $1 AND emoji = $2 AND user_id = $3";
/// `$2`'s reactions on message `$1`: how many, and whether `$3` is one of them.
pub(crate) const REACTIONS_BY: &str = "SELECT COUNT(*), COALESCE(SUM(CASE WHEN emoji = $3 THEN 1 ELSE 0 END), 0)
     FROM message_reaction WHERE message_id = $1 AND user_id = $2";
pub(crate) const DELETE_REACTIONS_OF: &str = "DELETE FROM message_reaction WHERE message_id = $1";
/// A page's reaction counts (`messages` matches the messages of `$1`, `$2` is the
/// reader), each message's in the order its reactions were first given.
pub(crate) fn reaction_counts(messages: &str) -> String {
    format!(
        "SELECT message_id, emoji, COUNT(*), MAX(CASE WHEN user_id = $2 THEN 1 ELSE 0 END)
         FROM message_reaction WHERE {messages} GROUP BY message_id, emoji
         ORDER BY message_id, MIN(created_at), emoji"
    )
}
/// Who has read a message: `$1` channel, `$2` sender, `$3` seq (derived from read
/// positions, no row per reader).
const READERS: &str = "FROM channel_member m
     JOIN channel_read_record r ON r.user_id = m.user_id AND r.channel_id = m.channel_id
     WHERE m.channel_id = $1 AND m.left_at IS NULL AND m.user_id <> $2 AND m.join_seq < $3 AND r.last_read_seq >= $3";
sql!(READ_COUNT, "SELECT COUNT(*) {READERS}");
sql!(READERS_PAGE, "SELECT m.user_id {READERS} AND m.user_id > $4 ORDER BY m.user_id LIMIT $5");
pub(crate) const HIDE_MESSAGE: &str = "INSERT INTO message_hidden (user_id, channel_id, seq, message_id, hidden_at)
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING";
/// The newest message `$1` deleted for themselves in `$2` (`$3`), on their setting row.
pub(crate) const NOTE_DELETED: &str =
    "INSERT INTO conversation_setting (user_id, channel_id, max_deleted_seq, updated_at)
     VALUES ($1, $2, $3, $4)
     ON CONFLICT (user_id, channel_id) DO UPDATE
       SET max_deleted_seq = greatest(conversation_setting.max_deleted_seq, excluded.max_deleted_seq)";

sql!(
    CHANNELS_OF,
    "SELECT {CHANNEL_COLUMNS} FROM channel WHERE channel_type = $2 AND id > $3
       AND id IN (SELECT channel_id FROM channel_member WHERE user_id = $1 AND left_at IS NULL)
     ORDER BY id LIMIT $4"
);
sql!(CHANNEL_BY_ID, "SELECT {CHANNEL_COLUMNS} FROM channel WHERE id = $1");
sql!(CHANNEL_BY_PAIR, "SELECT {CHANNEL_COLUMNS} FROM channel WHERE single_pair = $1");
sql!(MEMBER, "SELECT {MEMBER_COLUMNS} FROM channel_member WHERE channel_id = $1 AND user_id = $2");
sql!(
    MEMBERS_PAGE,
    "SELECT {MEMBER_COLUMNS} FROM channel_member WHERE channel_id = $1 AND left_at IS NULL AND user_id > $2 ORDER BY user_id LIMIT $3"
);
sql!(
    MESSAGES_DESC,
    "SELECT {MESSAGE_COLUMNS} FROM message WHERE channel_id = $1 AND seq > $2 AND seq < $3 AND {NOT_HIDDEN}
     ORDER BY seq DESC LIMIT $4"
);
sql!(
    MESSAGES_ASC,
    "SELECT {MESSAGE_COLUMNS} FROM message WHERE channel_id = $1 AND seq > $2 AND seq < $3 AND {NOT_HIDDEN}
     ORDER BY seq ASC LIMIT $4"
);
sql!(MESSAGE_IN_CHANNEL, "SELECT {MESSAGE_COLUMNS} FROM message WHERE id = $2 AND channel_id = $1");
/// A recall's write: the row keeps its seq and type; see `MessageWrites::recall_message`.
pub(crate) const RECALL_MESSAGE: &str = "UPDATE message SET content = '{}', preview = '', mentions = '[]',
       mention_all = FALSE, recalled_at = $2, recalled_by = $3, edited_at = NULL, edit_count = 0 WHERE id = $1";
/// A recalled message leaves its channel's pins.
pub(crate) const DELETE_PINS_OF: &str = "DELETE FROM channel_pin WHERE message_id = $1";
pub(crate) const PIN: &str = "INSERT INTO channel_pin (channel_id, message_id, seq, pinned_by, pinned_at)
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING";
pub(crate) const UNPIN: &str = "DELETE FROM channel_pin WHERE channel_id = $1 AND message_id = $2";
/// How many messages of channel `$1` are pinned, and whether `$2` is one of them.
pub(crate) const PIN_COUNT: &str = "SELECT COUNT(*), COALESCE(SUM(CASE WHEN message_id = $2 THEN 1 ELSE 0 END), 0)
     FROM channel_pin WHERE channel_id = $1";
// A channel's pins sent after seq `$2` (the reader's join), newest pin first.
sql!(
    PINS,
    "SELECT {MESSAGE_COLUMNS}, {PIN_COLUMNS} FROM (SELECT m.*, p.pinned_by, p.pinned_at
       FROM channel_pin p JOIN message m ON m.id = p.message_id WHERE p.channel_id = $1 AND p.seq > $2) AS pinned
     ORDER BY pinned_at DESC, id DESC"
);
pub(crate) const DELETE_MENTIONS_OF: &str = "DELETE FROM message_mention WHERE message_id = $1";
pub(crate) const DELETE_VERSIONS_OF: &str = "DELETE FROM message_version WHERE message_id = $1";
sql!(MESSAGE_VERSIONS, "SELECT {MESSAGE_VERSION_COLUMNS} FROM message_version WHERE message_id = $1 ORDER BY version");
pub(crate) const INSERT_MESSAGE_VERSION: &str = "INSERT INTO message_version
       (message_id, version, content, mentions, mention_all, written_at) VALUES ($1, $2, $3, $4, $5, $6)";
pub(crate) const EDIT_MESSAGE: &str = "UPDATE message SET content = $2, preview = $3, mentions = $4, mention_all = $5,
       edited_at = $6, edit_count = edit_count + 1 WHERE id = $1";
sql!(MESSAGE_BY_CLIENT_ID, "SELECT {MESSAGE_COLUMNS} FROM message WHERE sender_id = $1 AND client_msg_id = $2");
sql!(FRIENDSHIP, "SELECT {FRIENDSHIP_COLUMNS} FROM friendship WHERE user_id = $1 AND friend_id = $2");
sql!(
    CONTACT_APPS_INCOMING,
    "SELECT {CONTACT_APPLICATION_COLUMNS} FROM contact_application
     WHERE target_id = $1 AND ($2 = '' OR status = $2) AND id < $3 ORDER BY id DESC LIMIT $4"
);
sql!(
    CONTACT_APPS_OUTGOING,
    "SELECT {CONTACT_APPLICATION_COLUMNS} FROM contact_application
     WHERE applicant_id = $1 AND ($2 = '' OR status = $2) AND id < $3 ORDER BY id DESC LIMIT $4"
);
sql!(
    CONTACT_APP_PENDING,
    "SELECT {CONTACT_APPLICATION_COLUMNS} FROM contact_application WHERE applicant_id = $1 AND target_id = $2 AND status = 'pending'"
);
sql!(CONTACT_APP_BY_ID, "SELECT {CONTACT_APPLICATION_COLUMNS} FROM contact_application WHERE id = $1");
sql!(
    CHANNEL_APPS,
    "SELECT {CHANNEL_APPLICATION_COLUMNS} FROM channel_application
     WHERE channel_id = $1 AND ($2 = '' OR status = $2) AND id < $3 ORDER BY id DESC LIMIT $4"
);
sql!(
    CHANNEL_APP_PENDING,
    "SELECT {CHANNEL_APPLICATION_COLUMNS} FROM channel_application WHERE channel_id = $1 AND applicant_id = $2 AND status = 'pending'"
);
sql!(CHANNEL_APP_BY_ID, "SELECT {CHANNEL_APPLICATION_COLUMNS} FROM channel_application WHERE id = $1");

pub(crate) const INSERT_CHANNEL: &str = "INSERT INTO channel (id, channel_type, name, avatar, status, channel_info_ver, member_count, last_seq, single_pair, creator_id, created_at, updated_at, read_diffusion)
     VALUES ($1, $2, $3, $4, 'active', 1, $8, 0, $5, $6, $7, $7, $9)";
/// What a member leaving keeps of the group (`$1`): its name, avatar and info version
/// then, which a former member's conversation row shows from then on.
macro_rules! left_snapshot {
    () => {
        "left_name = (SELECT name FROM channel WHERE id = $1), left_avatar = (SELECT avatar FROM channel WHERE id = $1),
         left_info_ver = (SELECT channel_info_ver FROM channel WHERE id = $1)"
    };
}
pub(crate) use left_snapshot;
pub(crate) const REMOVE_MEMBER: &str = concat!(
    "UPDATE channel_member SET left_at = $3, left_seq = $4, updated_at = $3, ",
    left_snapshot!(),
    " WHERE channel_id = $1 AND user_id = $2 AND left_at IS NULL"
);
pub(crate) const SET_ROLE: &str =
    "UPDATE channel_member SET role = $3, updated_at = $4 WHERE channel_id = $1 AND user_id = $2";
pub(crate) const SET_MODERATION: &str =
    "UPDATE channel SET mute_all = $2, slow_mode_secs = $3, updated_at = $4 WHERE id = $1";
pub(crate) const SET_MUTED_UNTIL: &str =
    "UPDATE channel_member SET muted_until = $3, updated_at = $4 WHERE channel_id = $1 AND user_id = $2";
pub(crate) const BAN: &str = "INSERT INTO channel_ban (channel_id, user_id, banned_by, banned_at)
     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";
pub(crate) const UNBAN: &str = "DELETE FROM channel_ban WHERE channel_id = $1 AND user_id = $2";
pub(crate) const OWNER_OF: &str =
    "SELECT user_id FROM channel_member WHERE channel_id = $1 AND role = 'owner' AND left_at IS NULL LIMIT 1";
pub(crate) const BANS_PAGE: &str = "SELECT user_id, banned_by, banned_at FROM channel_ban
     WHERE channel_id = $1 AND user_id > $2 ORDER BY user_id LIMIT $3";
pub(crate) const SET_GROUP_NICKNAME: &str =
    "UPDATE channel_member SET group_nickname = $3, updated_at = $4 WHERE channel_id = $1 AND user_id = $2";
pub(crate) const RECOUNT_MEMBERS: &str = "UPDATE channel SET member_count = k.n,
       read_diffusion = CASE WHEN channel.channel_type <> 'group' THEN FALSE
                             WHEN k.n >= $3 THEN TRUE
                             WHEN k.n < $4 THEN FALSE
                             ELSE channel.read_diffusion END,
       updated_at = $2
     FROM (SELECT COUNT(*) AS n FROM channel_member m WHERE m.channel_id = $1 AND m.left_at IS NULL) k
     WHERE channel.id = $1 RETURNING member_count, read_diffusion";
pub(crate) const OLDEST_ADMIN: &str =
    "SELECT user_id FROM channel_member WHERE channel_id = $1 AND role = 'admin' AND left_at IS NULL AND user_id <> $2
     ORDER BY joined_at, id LIMIT 1";
pub(crate) const HEIR: &str =
    "SELECT user_id FROM channel_member WHERE channel_id = $1 AND left_at IS NULL AND user_id <> $2
     ORDER BY CASE role WHEN 'admin' THEN 0 ELSE 1 END, joined_at, id LIMIT 1";
pub(crate) const GROUPS_OF: &str = "SELECT m.channel_id FROM channel_member m JOIN channel c ON c.id = m.channel_id
     WHERE m.user_id = $1 AND m.left_at IS NULL AND c.channel_type = 'group' AND c.status = 'active'
     ORDER BY m.channel_id";
pub(crate) const UPDATE_CHANNEL_INFO: &str =
    "UPDATE channel SET name = $2, avatar = $3, channel_info_ver = channel_info_ver + 1, updated_at = $4 WHERE id = $1
     RETURNING channel_info_ver";
pub(crate) const ARCHIVE_CHANNEL: &str =
    "UPDATE channel SET status = 'archived', archived_at = $2, updated_at = $2 WHERE id = $1";
pub(crate) const SET_LAST_SEQ: &str =
    "UPDATE channel SET last_seq = $2, last_message_at = $3, updated_at = $3 WHERE id = $1";
pub(crate) const INSERT_MESSAGE: &str = "INSERT INTO message (id, channel_id, seq, sender_id, sender_name, msg_type, content, mentions, mention_all, preview, client_msg_id, created_at,
       reply_to, forwarded_from)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)";
pub(crate) const ADVANCE_READ: &str =
    "INSERT INTO channel_read_record (user_id, channel_id, last_read_seq, updated_at) VALUES ($1, $2, $3, $4)
     ON CONFLICT (user_id, channel_id) DO UPDATE
       SET last_read_seq = CASE WHEN excluded.last_read_seq > channel_read_record.last_read_seq
                                THEN excluded.last_read_seq ELSE channel_read_record.last_read_seq END,
           updated_at = excluded.updated_at
     RETURNING last_read_seq";
sql!(SETTING, "SELECT {SETTING_COLUMNS} FROM conversation_setting WHERE user_id = $1 AND channel_id = $2");
pub(crate) const SAVE_SETTING: &str = "INSERT INTO conversation_setting (user_id, channel_id, is_pinned, is_muted, is_hidden, hidden_seq, closed_at, closed_seq, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
     ON CONFLICT (user_id, channel_id) DO UPDATE SET is_pinned = excluded.is_pinned, is_muted = excluded.is_muted,
       is_hidden = excluded.is_hidden, hidden_seq = excluded.hidden_seq, closed_at = excluded.closed_at,
       closed_seq = excluded.closed_seq, updated_at = excluded.updated_at";
pub(crate) const INSERT_CHANNEL_APP: &str = "INSERT INTO channel_application (id, channel_id, applicant_id, message, status, reviewer_id, created_at, updated_at, reviewed_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
pub(crate) const UPDATE_CHANNEL_APP: &str = "UPDATE channel_application SET message = $2, status = $3, reviewer_id = $4, updated_at = $5, reviewed_at = $6 WHERE id = $1";
pub(crate) const INSERT_CONTACT_APP: &str = "INSERT INTO contact_application (id, applicant_id, target_id, message, source, status, created_at, updated_at, reviewed_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
pub(crate) const UPDATE_CONTACT_APP: &str = "UPDATE contact_application SET message = $2, source = $3, status = $4, updated_at = $5, reviewed_at = $6 WHERE id = $1";
pub(crate) const UPSERT_FRIENDSHIP: &str = "INSERT INTO friendship (user_id, friend_id, remark_name, remark_key, source, tags, group_name, is_starred, is_blocked, added_at, deleted_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
     ON CONFLICT (user_id, friend_id) DO UPDATE SET remark_name = excluded.remark_name, remark_key = excluded.remark_key,
       source = excluded.source, tags = excluded.tags, group_name = excluded.group_name, is_starred = excluded.is_starred,
       is_blocked = excluded.is_blocked, added_at = excluded.added_at, deleted_at = excluded.deleted_at,
       updated_at = excluded.updated_at";
pub(crate) const LARGE_GROUPS: &str =
    "SELECT channel_id FROM user_conversation_view WHERE user_id = $1 AND read_diffusion = TRUE";
pub(crate) const USER_IDS_AFTER: &str = "SELECT id FROM users WHERE id > $1 ORDER BY id LIMIT $2";

// Conversation reads see effective rows: stored ones merged with large groups' computed
// rows (crate::views).
pub(crate) use crate::views::{
    CONVERSATION_LIST as CONVERSATIONS, CONVERSATION_ONE as CONVERSATION, CONVERSATIONS_CHANGED, TOTAL_UNREAD,
};
sql!(
    CONTACT,
    "SELECT {} FROM user_contact_view WHERE user_id = $1 AND contact_id = $2",
    crate::views::contact_select("")
);
sql!(
    CONTACTS,
    "SELECT {} FROM user_contact_view
     WHERE user_id = $1 AND deleted_at IS NULL
       AND ($2 = '' OR group_name = $2)
       AND ($3 = '' OR initial = $3)
       AND ($4 = FALSE OR is_starred < $5 OR (is_starred = $5 AND (sort_name, contact_id) > ($6, $7)))
     ORDER BY is_starred DESC, sort_name, contact_id LIMIT $8",
    crate::views::contact_select("")
);

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders() {
        assert_eq!(super::sqlite_placeholders("a = $1 AND b = $12 AND c = '$'"), "a = ?1 AND b = ?12 AND c = '$'");
    }
}

// ── event pipeline ──

pub(crate) const UNPUBLISHED: &str =
    "SELECT position, event_id, event_type, schema_version, aggregate_key, payload, created_at
     FROM outbox WHERE published_at IS NULL ORDER BY position LIMIT $1";
pub(crate) const OUTBOX_BACKLOG: &str = "SELECT COUNT(*), MIN(created_at) FROM outbox WHERE published_at IS NULL";
pub(crate) const PUBLICATION: &str = "SELECT position, kafka_topic, kafka_partition, kafka_offset FROM outbox
     WHERE position = $1 AND kafka_topic IS NOT NULL";
/// Kafka consumers keep one offset row per partition, named `consumer@topic/partition`,
/// holding the next offset to read in `position`.
pub(crate) const UNDRAINED_ON_KAFKA: &str = "SELECT COUNT(*) FROM outbox o WHERE o.published_at IS NULL
     OR (o.kafka_topic IS NOT NULL AND NOT EXISTS (SELECT 1 FROM consumer_offset c
         WHERE c.consumer = $1 || '@' || o.kafka_topic || '/' || o.kafka_partition AND c.position > o.kafka_offset))";
pub(crate) const EVENTS_AFTER: &str = "SELECT COUNT(*) FROM outbox WHERE (tx_id, position) > ($1, $2)";
pub(crate) const DEAD_LETTER_COLUMNS: &str =
    "id, consumer, event_id, event_type, payload, source, error, attempts, status, created_at, updated_at";
sql!(
    DEAD_LETTERS,
    "SELECT {DEAD_LETTER_COLUMNS} FROM dead_letter WHERE ($1 = '' OR status = $1) AND id > $2 ORDER BY id LIMIT $3"
);
sql!(DEAD_LETTER, "SELECT {DEAD_LETTER_COLUMNS} FROM dead_letter WHERE id = $1");
pub(crate) const PENDING_DEAD_LETTERS: &str = "SELECT COUNT(*) FROM dead_letter WHERE status = 'pending'";
pub(crate) const GROUPS_WITHOUT_CREATED_EVENT: &str = "SELECT c.id FROM channel c
     WHERE c.channel_type = 'group' AND c.created_at >= $1 AND c.created_at < $2
       AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.event_type = 'channel.created' AND o.aggregate_key = CAST(c.id AS TEXT))
     ORDER BY c.id LIMIT $3";
pub(crate) const GROUPS_WITHOUT_VIEWS: &str = "SELECT DISTINCT c.id FROM channel c JOIN channel_member m ON m.channel_id = c.id
     WHERE c.channel_type = 'group' AND c.created_at >= $1 AND c.created_at < $2 AND m.left_at IS NULL
       AND NOT EXISTS (SELECT 1 FROM user_conversation_view v WHERE v.user_id = m.user_id AND v.channel_id = m.channel_id)
     ORDER BY c.id LIMIT $3";
pub(crate) const TAKE_LEASE: &str = "INSERT INTO relay_lease (name, holder, expires_at)
     VALUES ($1, $2, CAST($3 AS BIGINT) + CAST($4 AS BIGINT))
     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
     WHERE relay_lease.holder = excluded.holder OR relay_lease.expires_at < CAST($3 AS BIGINT)";
pub(crate) const RELEASE_LEASE: &str =
    "UPDATE relay_lease SET expires_at = 0 WHERE name = $1 AND holder = $2 AND expires_at > 0";
/// A letter from Kafka waits for the relay to copy it to `<topic>.dlq` (again when it
/// fails again); one from the embedded log never does (0).
pub(crate) const INSERT_DEAD_LETTER: &str = "INSERT INTO dead_letter
     (consumer, event_id, event_type, payload, source, error, attempts, status, created_at, updated_at, dlq_published_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $8, CASE WHEN $5 LIKE 'kafka %' THEN NULL ELSE 0 END)
     ON CONFLICT (consumer, event_id) DO UPDATE SET error = excluded.error, source = excluded.source,
       attempts = dead_letter.attempts + excluded.attempts, status = 'pending', updated_at = excluded.updated_at,
       dlq_published_at = excluded.dlq_published_at";
sql!(
    DEAD_LETTERS_TO_PUBLISH,
    "SELECT {DEAD_LETTER_COLUMNS} FROM dead_letter WHERE dlq_published_at IS NULL ORDER BY id LIMIT $1"
);
/// Only the version that was published (a letter that failed again meanwhile stays due).
pub(crate) const MARK_DEAD_LETTER_PUBLISHED: &str =
    "UPDATE dead_letter SET dlq_published_at = $3 WHERE id = $1 AND updated_at = $2";
pub(crate) const UPDATE_DEAD_LETTER: &str = "UPDATE dead_letter
     SET status = $3, payload = COALESCE($4, payload), error = COALESCE($5, error), updated_at = $6
     WHERE id = $1 AND status = $2";
/// Old outbox rows no consumer needs: created before $1, at or behind the cursor
/// ($2, $3) in log order, published unless $4 = 0; at most $5 per statement.
pub(crate) const PRUNE_OUTBOX: &str = "DELETE FROM outbox WHERE position IN (SELECT position FROM outbox
     WHERE created_at < $1 AND (tx_id, position) <= ($2, $3) AND (CAST($4 AS BIGINT) = 0 OR published_at IS NOT NULL)
     ORDER BY position LIMIT $5)";
/// `substr` rather than `LIKE`: consumer names may contain `_`.
pub(crate) const OFFSETS_WITH_PREFIX: &str = "SELECT consumer, tx_id, position FROM consumer_offset
     WHERE substr(consumer, 1, length($1)) = $1 ORDER BY consumer";

// ── realtime: per-user inbox ──
pub(crate) const INBOX_HEAD: &str = "SELECT seq FROM user_inbox_head WHERE user_id = $1";
pub(crate) const INBOX_AFTER: &str = "SELECT i.seq, i.event_id, o.event_type, o.payload, o.created_at
     FROM user_inbox i JOIN outbox o ON o.event_id = i.event_id
     WHERE i.user_id = $1 AND i.seq > $2 ORDER BY i.seq LIMIT $3";
/// Old entries, and entries more than $2 behind their user's cursor.
pub(crate) const PRUNE_INBOX: &str = "DELETE FROM user_inbox WHERE (user_id, seq) IN (
     SELECT i.user_id, i.seq FROM user_inbox i JOIN user_inbox_head h ON h.user_id = i.user_id
     WHERE i.created_at < $1 OR i.seq <= h.seq - $2 LIMIT $3)";
