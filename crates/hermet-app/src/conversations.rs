//! The conversation list, its cached first page, and per-member conversation settings.

use std::sync::Arc;
use std::time::Instant;

use hermet_domain::channel::ChannelType;
use hermet_domain::event::{self, DomainEvent};
use hermet_domain::id::{ChannelId, UserId};
use hermet_domain::time::now_ms;
use hermet_domain::{Error, Result, validate};
use hermet_store::{ConversationQuery, ConversationRow, ConversationWrites, Database};

use crate::cache::{Scope, count};
use crate::commit::timed;
use crate::page::{Page, decode_cursor};
use crate::{App, Principal};

#[derive(Debug, Clone)]
pub struct ConversationList {
    pub page: Page<ConversationRow>,
    /// Unread messages over open, unmuted conversations.
    pub total_unread: i64,
}

/// Which first page: (user, type filter, unread only, limit).
pub(crate) type ListKey = (UserId, Option<ChannelType>, bool, u32);

struct ListEntry {
    generations: Vec<u64>,
    /// The user's large groups when read (the `Channel` scopes after `Lists`).
    large: Vec<ChannelId>,
    /// `None`: only `large` is known (the set changed during the fill).
    list: Option<ConversationList>,
    at: Instant,
}

/// The first pages of conversation lists this process keeps; [`crate::cache`] says when
/// one is stale.
pub(crate) struct ListCache(quick_cache::sync::Cache<ListKey, Arc<ListEntry>>);

impl ListCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self(quick_cache::sync::Cache::new(capacity.max(1)))
    }
}

impl<D: Database> App<D> {
    /// `GET /conversations`: pinned first, then newest activity; closed and hidden
    /// conversations are left out.
    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %who.user_id))]
    pub async fn conversations(
        &self,
        who: Principal,
        conversation_type: Option<ChannelType>,
        unread_only: bool,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<ConversationList> {
        let limit = validate::limit(limit)?;
        let after: Option<(bool, i64, i64)> = cursor.map(decode_cursor).transpose()?;
        if after.is_none() && self.cache().enabled() {
            return self
                .first_page_cached((who.user_id, conversation_type, unread_only, limit), who.lists_generation)
                .await;
        }
        self.read_conversations(who.user_id, conversation_type, unread_only, after, limit).await
    }

    /// A page of the list and the total unread, from the database.
    pub(crate) async fn read_conversations(
        &self,
        user_id: UserId,
        conversation_type: Option<ChannelType>,
        unread_only: bool,
        after: Option<(bool, i64, i64)>,
        limit: u32,
    ) -> Result<ConversationList> {
        let q = ConversationQuery { user_id, conversation_type, unread_only, after, limit: limit + 1 };
        let (rows, total_unread) = tokio::try_join!(self.db.conversations(&q), self.db.total_unread(user_id))?;
        let page = Page::from_overfetch(rows, limit, |c| (c.is_pinned, c.last_active_at, c.channel_id.get()));
        Ok(ConversationList { page, total_unread })
    }

    /// The first page of a conversation list with the total unread, cached. An entry
    /// depends on `Lists(user)` and on `Channel(c)` for each of the user's large groups,
    /// a set known from the previous fill: when a fill finds another set (the user
    /// joined or left one), it stores only the set, and the next read fills for real.
    /// `known`: the lists generation read with the session check of this request (before
    /// any database read of it), enough when the user is in no large group.
    async fn first_page_cached(&self, key: ListKey, known: Option<[u64; 2]>) -> Result<ConversationList> {
        let (user, conversation_type, unread_only, limit) = key;
        let read = || self.read_conversations(user, conversation_type, unread_only, None, limit);
        let previous = self.lists.0.get(&key);
        let large: Vec<ChannelId> = previous.as_ref().map(|e| e.large.clone()).unwrap_or_default();
        let scopes: Vec<Scope> =
            std::iter::once(Scope::Lists(user)).chain(large.iter().map(|c| Scope::Channel(*c))).collect();
        let generations = match known {
            Some(g) if large.is_empty() => Some(g.to_vec()),
            _ => self.cache.generations(&scopes).await,
        };
        let Some(generations) = generations else {
            count("conversations", "bypass");
            return read().await;
        };
        if let Some(e) = &previous
            && e.generations == generations
            && self.cache.fresh(e.at)
            && let Some(list) = &e.list
        {
            count("conversations", "hit");
            return Ok(list.clone());
        }
        count("conversations", "miss");
        let (list, now_large) = tokio::try_join!(read(), async { Ok(self.db.large_groups(user).await?) })?;
        let entry = if now_large == large {
            ListEntry { generations, large, list: Some(list.clone()), at: Instant::now() }
        } else {
            ListEntry { generations: Vec::new(), large: now_large, list: None, at: Instant::now() }
        };
        self.lists.0.insert(key, Arc::new(entry));
        Ok(list)
    }

    /// `GET /conversations/{channelId}`: my row of that channel as the list shows it, also
    /// when it is hidden or closed (a former member's too). 404 when I have none.
    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %who.user_id, channel_id = %channel_id))]
    pub async fn conversation(&self, who: Principal, channel_id: ChannelId) -> Result<ConversationRow> {
        self.db.conversation(who.user_id, channel_id).await?.ok_or(Error::NotFound("conversation"))
    }

    /// `PATCH /conversations/{channelId}`: pin, mute, hide. A hidden conversation comes
    /// back with the next message. Nothing to change (no field, or the values it has):
    /// the conversation as it is, nothing written.
    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %who.user_id, channel_id = %channel_id))]
    pub async fn update_conversation(
        &self,
        who: Principal,
        channel_id: ChannelId,
        is_pinned: Option<bool>,
        is_muted: Option<bool>,
        is_hidden: Option<bool>,
    ) -> Result<ConversationRow> {
        timed("conversation.update", async {
            let peek = self.db.channel(channel_id).await?.ok_or(Error::NotFound("conversation"))?;
            let now = now_ms();
            let mut tx = self.db.begin().await?;
            let channel = self.lock_for_conversation(&mut tx, who, &peek).await?;
            let mut s = tx.setting(who.user_id, channel_id).await?;
            let before = s.clone();
            if let Some(p) = is_pinned {
                s.is_pinned = p;
            }
            if let Some(m) = is_muted {
                s.is_muted = m;
            }
            if let Some(h) = is_hidden {
                s.is_hidden = h;
                s.hidden_seq = channel.last_seq;
            }
            if s != before {
                tx.save_setting(who.user_id, channel_id, &s, now).await?;
                self.record(&mut tx, &[settings_event(who, channel_id, &s, false, now)], now).await?;
            }
            self.commit(tx).await?;
            self.db.conversation(who.user_id, channel_id).await?.ok_or(Error::NotFound("conversation"))
        })
        .await
    }

    /// `DELETE /conversations/{channelId}`: closes the conversation until the next message.
    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %who.user_id, channel_id = %channel_id))]
    pub async fn close_conversation(&self, who: Principal, channel_id: ChannelId) -> Result<()> {
        timed("conversation.close", async {
            let peek = self.db.channel(channel_id).await?.ok_or(Error::NotFound("conversation"))?;
            let now = now_ms();
            let mut tx = self.db.begin().await?;
            let channel = self.lock_for_conversation(&mut tx, who, &peek).await?;
            let mut s = tx.setting(who.user_id, channel_id).await?;
            s.closed_at = Some(now);
            s.closed_seq = channel.last_seq;
            tx.save_setting(who.user_id, channel_id, &s, now).await?;
            self.record(&mut tx, &[settings_event(who, channel_id, &s, true, now)], now).await?;
            self.commit(tx).await?;
            Ok(())
        })
        .await
    }
}

fn settings_event(
    who: Principal,
    channel_id: ChannelId,
    s: &hermet_store::ConversationSetting,
    closed: bool,
    now: i64,
) -> DomainEvent {
    DomainEvent::ConversationSettingsChanged(event::ConversationSettingsChanged {
        user_id: who.user_id,
        channel_id,
        is_pinned: s.is_pinned,
        is_muted: s.is_muted,
        is_hidden: s.is_hidden,
        closed,
        changed_at: now,
    })
}
