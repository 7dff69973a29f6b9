//! Row mapping written once for both drivers: [`Cols`] gives typed column access over a
//! PostgreSQL or a SQLite row, and the `*_from` functions build domain values from it.

use hermet_domain::channel::{Channel, ChannelStatus, ChannelType, Member, MemberRole};
use hermet_domain::contact::{ApplicationStatus, ContactApplication, FriendSource, Friendship};
use hermet_domain::id::{ApplicationId, ChannelId, MessageId, UserId};
use hermet_domain::message::{Message, MessageType, MessageVersion, Pin, Recall};

use hermet_domain::user::UserStatus;

use crate::ports::{ChannelApplication, ContactRow, ConversationRow, ConversationSetting, UserBrief};

pub(crate) trait Cols {
    type Err;
    fn int(&self, i: usize) -> Result<i64, Self::Err>;
    fn opt_int(&self, i: usize) -> Result<Option<i64>, Self::Err>;
    fn text(&self, i: usize) -> Result<String, Self::Err>;
    fn opt_text(&self, i: usize) -> Result<Option<String>, Self::Err>;
    fn boolean(&self, i: usize) -> Result<bool, Self::Err>;
    fn json(&self, i: usize) -> Result<serde_json::Value, Self::Err>;
    fn bad(&self, i: usize, msg: String) -> Self::Err;
}

macro_rules! parse {
    ($r:expr, $i:expr, $t:ty) => {{
        let s = $r.text($i)?;
        <$t>::parse_db(&s).map_err(|e| $r.bad($i, format!("{e:?}")))?
    }};
}

pub(crate) const CHANNEL_COLUMNS: &str = "id, channel_type, name, avatar, status, channel_info_ver, member_count, last_seq, last_message_at, creator_id, created_at, updated_at, single_pair, read_diffusion, mute_all, slow_mode_secs";

pub(crate) fn channel_from<R: Cols>(r: &R) -> Result<Channel, R::Err> {
    Ok(Channel {
        id: ChannelId(r.int(0)?),
        channel_type: parse!(r, 1, ChannelType),
        name: r.text(2)?,
        avatar: r.text(3)?,
        status: parse!(r, 4, ChannelStatus),
        channel_info_ver: r.int(5)?,
        member_count: r.int(6)? as i32,
        last_seq: r.int(7)?,
        last_message_at: r.opt_int(8)?,
        creator_id: UserId(r.int(9)?),
        created_at: r.int(10)?,
        updated_at: r.int(11)?,
        single_pair: r.opt_text(12)?,
        read_diffusion: r.boolean(13)?,
        mute_all: r.boolean(14)?,
        slow_mode_secs: r.int(15)? as i32,
    })
}

pub(crate) const MEMBER_COLUMNS: &str =
    "channel_id, user_id, role, group_nickname, joined_at, left_at, join_seq, left_seq, muted_until, slow_sent_at";

pub(crate) fn member_from<R: Cols>(r: &R) -> Result<Member, R::Err> {
    Ok(Member {
        channel_id: ChannelId(r.int(0)?),
        user_id: UserId(r.int(1)?),
        role: parse!(r, 2, MemberRole),
        group_nickname: r.text(3)?,
        joined_at: r.int(4)?,
        left_at: r.opt_int(5)?,
        join_seq: r.int(6)?,
        left_seq: r.opt_int(7)?,
        muted_until: r.opt_int(8)?,
        slow_sent_at: r.opt_int(9)?,
    })
}

pub(crate) const MESSAGE_COLUMNS: &str =
    "id, channel_id, seq, sender_id, sender_name, msg_type, content, mentions, mention_all, client_msg_id, created_at,
     recalled_at, recalled_by, edited_at, edit_count, reply_to, COALESCE(forwarded_from, 'null')";

pub(crate) fn message_from<R: Cols>(r: &R) -> Result<Message, R::Err> {
    let mentions: Vec<UserId> = serde_json::from_value(r.json(7)?).map_err(|e| r.bad(7, e.to_string()))?;
    Ok(Message {
        id: MessageId(r.int(0)?),
        channel_id: ChannelId(r.int(1)?),
        seq: r.int(2)?,
        sender_id: UserId(r.int(3)?),
        sender_name: r.text(4)?,
        // A recalled message keeps its original type in the row (the view's preview reads
        // it as `recalled`, see `views::MESSAGE_DERIVED`); readers see `recalled`.
        msg_type: if r.opt_int(11)?.is_some() { MessageType::Recalled } else { parse!(r, 5, MessageType) },
        content: r.json(6)?,
        mentions,
        mention_all: r.boolean(8)?,
        client_msg_id: r.opt_text(9)?,
        created_at: r.int(10)?,
        recalled: match (r.opt_int(11)?, r.opt_int(12)?) {
            (Some(at), Some(by)) => Some(Recall { by: UserId(by), at }),
            _ => None,
        },
        edited_at: r.opt_int(13)?,
        edit_count: r.int(14)? as i32,
        reply_to: r.opt_int(15)?.map(MessageId),
        forwarded_from: match r.json(16)? {
            serde_json::Value::Null => None,
            v => Some(serde_json::from_value(v).map_err(|e| r.bad(16, e.to_string()))?),
        },
    })
}

/// A pin: its message ([`MESSAGE_COLUMNS`]), who pinned it and when.
pub(crate) const PIN_COLUMNS: &str = "pinned_by, pinned_at";

pub(crate) fn pin_from<R: Cols>(r: &R) -> Result<Pin, R::Err> {
    Ok(Pin { message: message_from(r)?, pinned_by: UserId(r.int(17)?), pinned_at: r.int(18)? })
}

pub(crate) const MESSAGE_VERSION_COLUMNS: &str = "version, content, mentions, mention_all, written_at";

pub(crate) fn message_version_from<R: Cols>(r: &R) -> Result<MessageVersion, R::Err> {
    let mentions: Vec<UserId> = serde_json::from_value(r.json(2)?).map_err(|e| r.bad(2, e.to_string()))?;
    Ok(MessageVersion {
        version: r.int(0)? as i32,
        content: r.json(1)?,
        mentions,
        mention_all: r.boolean(3)?,
        written_at: r.int(4)?,
    })
}

pub(crate) const FRIENDSHIP_COLUMNS: &str =
    "user_id, friend_id, remark_name, source, tags, group_name, is_starred, is_blocked, added_at, deleted_at";

pub(crate) fn friendship_from<R: Cols>(r: &R) -> Result<Friendship, R::Err> {
    let tags: Vec<String> = serde_json::from_value(r.json(4)?).map_err(|e| r.bad(4, e.to_string()))?;
    Ok(Friendship {
        user_id: UserId(r.int(0)?),
        friend_id: UserId(r.int(1)?),
        remark_name: r.text(2)?,
        source: parse!(r, 3, FriendSource),
        tags,
        group_name: r.text(5)?,
        is_starred: r.boolean(6)?,
        is_blocked: r.boolean(7)?,
        added_at: r.int(8)?,
        deleted_at: r.opt_int(9)?,
    })
}

pub(crate) const CONTACT_APPLICATION_COLUMNS: &str =
    "id, applicant_id, target_id, message, source, status, created_at, updated_at, reviewed_at";

pub(crate) fn contact_application_from<R: Cols>(r: &R) -> Result<ContactApplication, R::Err> {
    Ok(ContactApplication {
        id: ApplicationId(r.int(0)?),
        applicant_id: UserId(r.int(1)?),
        target_id: UserId(r.int(2)?),
        message: r.text(3)?,
        source: parse!(r, 4, FriendSource),
        status: parse!(r, 5, ApplicationStatus),
        created_at: r.int(6)?,
        updated_at: r.int(7)?,
        reviewed_at: r.opt_int(8)?,
    })
}

pub(crate) const CHANNEL_APPLICATION_COLUMNS: &str =
    "id, channel_id, applicant_id, message, status, reviewer_id, created_at, updated_at, reviewed_at";

pub(crate) fn channel_application_from<R: Cols>(r: &R) -> Result<ChannelApplication, R::Err> {
    Ok(ChannelApplication {
        id: ApplicationId(r.int(0)?),
        channel_id: ChannelId(r.int(1)?),
        applicant_id: UserId(r.int(2)?),
        message: r.text(3)?,
        status: parse!(r, 4, ApplicationStatus),
        reviewer_id: r.opt_int(5)?.map(UserId),
        created_at: r.int(6)?,
        updated_at: r.int(7)?,
        reviewed_at: r.opt_int(8)?,
    })
}

/// Maps a row selected with `views::conversation_select`.
pub(crate) fn conversation_from<R: Cols>(r: &R) -> Result<ConversationRow, R::Err> {
    Ok(ConversationRow {
        user_id: UserId(r.int(0)?),
        channel_id: ChannelId(r.int(1)?),
        conversation_type: r.text(2)?,
        conversation_name: r.text(3)?,
        conversation_avatar: r.text(4)?,
        conversation_info_ver: r.int(5)?,
        peer_user_id: r.opt_int(6)?.map(UserId),
        peer_nickname: r.text(7)?,
        peer_avatar: r.text(8)?,
        remark_name: r.text(9)?,
        is_muted: r.boolean(10)?,
        is_pinned: r.boolean(11)?,
        is_hidden: r.boolean(12)?,
        last_message_id: r.opt_int(13)?.map(MessageId),
        last_message_seq: r.int(14)?,
        last_message_type: r.opt_text(15)?,
        last_message_content: r.opt_text(16)?,
        last_message_sender_id: r.opt_int(17)?.map(UserId),
        last_message_sender_name: r.opt_text(18)?,
        last_message_time: r.opt_int(19)?,
        last_active_at: r.int(20)?,
        unread_count: r.int(21)?,
        mention_count: r.int(22)?,
        opened_at: r.int(23)?,
        closed_at: r.opt_int(24)?,
        read_diffusion: r.boolean(25)?,
        peer_read_seq: r.int(26)?,
    })
}

/// Maps a row selected with `views::contact_select`.
pub(crate) fn contact_from<R: Cols>(r: &R) -> Result<ContactRow, R::Err> {
    Ok(ContactRow {
        user_id: UserId(r.int(0)?),
        contact_id: UserId(r.int(1)?),
        contact_nickname: r.text(2)?,
        contact_avatar: r.text(3)?,
        contact_info_ver: r.int(4)?,
        remark_name: r.text(5)?,
        sort_name: r.text(6)?,
        initial: r.text(7)?,
        group_name: r.text(8)?,
        tags: r.json(9)?,
        is_starred: r.boolean(10)?,
        is_blocked: r.boolean(11)?,
        source: r.text(12)?,
        added_at: r.int(13)?,
        deleted_at: r.opt_int(14)?,
    })
}

/// A user row selected with [`USER_BRIEF_COLUMNS`].
pub(crate) const USER_BRIEF_COLUMNS: &str = "id, status, nickname, avatar";

pub(crate) fn user_brief_from<R: Cols>(r: &R) -> Result<UserBrief, R::Err> {
    Ok(UserBrief { id: UserId(r.int(0)?), status: parse!(r, 1, UserStatus), nickname: r.text(2)?, avatar: r.text(3)? })
}

/// (user id, status) of an id that is not an active user: the status is NULL for an
/// unknown id.
pub(crate) fn inactive_user_from<R: Cols>(r: &R) -> Result<(UserId, Option<UserStatus>), R::Err> {
    let status = match r.opt_text(1)? {
        Some(s) => Some(UserStatus::parse_db(&s).map_err(|e| r.bad(1, format!("{e:?}")))?),
        None => None,
    };
    Ok((UserId(r.int(0)?), status))
}

pub(crate) const SETTING_COLUMNS: &str = "is_pinned, is_muted, is_hidden, hidden_seq, closed_at, closed_seq";

pub(crate) fn setting_from<R: Cols>(r: &R) -> Result<ConversationSetting, R::Err> {
    Ok(ConversationSetting {
        is_pinned: r.boolean(0)?,
        is_muted: r.boolean(1)?,
        is_hidden: r.boolean(2)?,
        hidden_seq: r.int(3)?,
        closed_at: r.opt_int(4)?,
        closed_seq: r.int(5)?,
    })
}

/// Two integer columns (reverse-index rows).
pub(crate) fn int_pair_from<R: Cols>(r: &R) -> Result<(i64, i64), R::Err> {
    Ok((r.int(0)?, r.int(1)?))
}

/// Three integer columns (reverse-index rows).
pub(crate) fn int_triple_from<R: Cols>(r: &R) -> Result<(i64, i64, i64), R::Err> {
    Ok((r.int(0)?, r.int(1)?, r.int(2)?))
}

/// One id column.
pub(crate) fn user_id_from<R: Cols>(r: &R) -> Result<UserId, R::Err> {
    Ok(UserId(r.int(0)?))
}

pub(crate) fn channel_id_from<R: Cols>(r: &R) -> Result<ChannelId, R::Err> {
    Ok(ChannelId(r.int(0)?))
}

/// Two user ids (a contact-list entry: (user, owner)).
pub(crate) fn user_pair_from<R: Cols>(r: &R) -> Result<(UserId, UserId), R::Err> {
    Ok((UserId(r.int(0)?), UserId(r.int(1)?)))
}

/// (channel, member, is owner or admin): a notification audience.
pub(crate) fn audience_from<R: Cols>(r: &R) -> Result<(ChannelId, UserId, bool), R::Err> {
    Ok((ChannelId(r.int(0)?), UserId(r.int(1)?), r.boolean(2)?))
}

/// (consumer, its cursor in the log).
pub(crate) fn named_cursor_from<R: Cols>(r: &R) -> Result<(String, (i64, i64)), R::Err> {
    Ok((r.text(0)?, (r.int(1)?, r.int(2)?)))
}

/// (user, their inbox cursor).
pub(crate) fn user_cursor_from<R: Cols>(r: &R) -> Result<(UserId, i64), R::Err> {
    Ok((UserId(r.int(0)?), r.int(1)?))
}

// ── the two implementations ──

impl Cols for tokio_postgres::Row {
    type Err = crate::StoreError;
    fn int(&self, i: usize) -> Result<i64, Self::Err> {
        match self.try_get::<_, i64>(i) {
            Ok(v) => Ok(v),
            Err(_) => self.try_get::<_, i32>(i).map(i64::from).map_err(crate::postgres::pg_err),
        }
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>, Self::Err> {
        match self.try_get::<_, Option<i64>>(i) {
            Ok(v) => Ok(v),
            Err(_) => self.try_get::<_, Option<i32>>(i).map(|v| v.map(i64::from)).map_err(crate::postgres::pg_err),
        }
    }
    fn text(&self, i: usize) -> Result<String, Self::Err> {
        self.try_get(i).map_err(crate::postgres::pg_err)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, Self::Err> {
        self.try_get(i).map_err(crate::postgres::pg_err)
    }
    fn boolean(&self, i: usize) -> Result<bool, Self::Err> {
        self.try_get(i).map_err(crate::postgres::pg_err)
    }
    fn json(&self, i: usize) -> Result<serde_json::Value, Self::Err> {
        self.try_get(i).map_err(crate::postgres::pg_err)
    }
    fn bad(&self, i: usize, msg: String) -> Self::Err {
        crate::StoreError::other(anyhow::anyhow!("column {i}: {msg}"))
    }
}

impl Cols for rusqlite::Row<'_> {
    type Err = rusqlite::Error;
    fn int(&self, i: usize) -> rusqlite::Result<i64> {
        self.get(i)
    }
    fn opt_int(&self, i: usize) -> rusqlite::Result<Option<i64>> {
        self.get(i)
    }
    fn text(&self, i: usize) -> rusqlite::Result<String> {
        self.get(i)
    }
    fn opt_text(&self, i: usize) -> rusqlite::Result<Option<String>> {
        self.get(i)
    }
    fn boolean(&self, i: usize) -> rusqlite::Result<bool> {
        self.get(i)
    }
    fn json(&self, i: usize) -> rusqlite::Result<serde_json::Value> {
        let s: String = self.get(i)?;
        serde_json::from_str(&s)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e)))
    }
    fn bad(&self, i: usize, msg: String) -> rusqlite::Error {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, msg.into())
    }
}

pub(crate) fn outbox_record_from<R: Cols>(r: &R) -> Result<crate::ports::OutboxRecord, R::Err> {
    Ok(crate::ports::OutboxRecord {
        position: r.int(0)?,
        event_id: r.int(1)?,
        event_type: r.text(2)?,
        schema_version: r.int(3)? as i32,
        aggregate_key: r.text(4)?,
        payload: r.json(5)?,
        created_at: r.int(6)?,
    })
}

pub(crate) fn publication_from<R: Cols>(r: &R) -> Result<crate::ports::Publication, R::Err> {
    Ok(crate::ports::Publication {
        position: r.int(0)?,
        topic: r.text(1)?,
        partition: r.int(2)? as i32,
        offset: r.int(3)?,
    })
}

pub(crate) fn dead_letter_from<R: Cols>(r: &R) -> Result<crate::ports::DeadLetter, R::Err> {
    Ok(crate::ports::DeadLetter {
        id: r.int(0)?,
        consumer: r.text(1)?,
        event_id: r.int(2)?,
        event_type: r.text(3)?,
        payload: r.text(4)?,
        source: r.text(5)?,
        error: r.text(6)?,
        attempts: r.int(7)? as i32,
        status: r.text(8)?,
        created_at: r.int(9)?,
        updated_at: r.int(10)?,
    })
}

pub(crate) fn inbox_entry_from<R: Cols>(r: &R) -> Result<crate::ports::InboxEntry, R::Err> {
    Ok(crate::ports::InboxEntry {
        seq: r.int(0)?,
        event_id: r.int(1)?,
        event_type: r.text(2)?,
        payload: r.json(3)?,
        occurred_at: r.int(4)?,
    })
}
