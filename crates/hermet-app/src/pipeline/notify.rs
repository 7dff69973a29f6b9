//! The `notifier` consumer (the consumer side of the design document
//! `000_70dd81066eae5b2b.txt` §3.4): decides who hears of each event and hands the
//! pushes to a [`crate::push::PushSink`] (the realtime gateway, or
//! [`crate::push::MemoryPush`], which tests observe). Large audiences fan out through a
//! bounded worker pool (the same document's §4.3): chunks of `notify_chunk_size`
//! recipients, at most `notify_workers` at a time.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use futures::StreamExt;
use hermet_domain::Result;
use hermet_domain::event::DomainEvent;
use hermet_domain::id::{ChannelId, UserId};
use hermet_store::{Database, StoredEvent};

use crate::App;
use crate::push::{Notification, frame_type};

/// Who hears of an event, before looking anything up.
enum Audience {
    Users(Vec<UserId>),
    /// The channel's active members, plus `also`.
    Channel(ChannelId, Vec<UserId>),
    /// The channel's owner and admins, plus `also`.
    Managers(ChannelId, Vec<UserId>),
    /// Everyone whose contact list shows the user, and the user.
    ContactsOf(UserId),
}

fn audience(e: &DomainEvent) -> Audience {
    use Audience::*;
    use DomainEvent as E;
    match e {
        E::UserProfileUpdated(x) => ContactsOf(x.user_id),
        E::ContactApplicationCreated(x) => Users(vec![x.target_id, x.applicant_id]),
        E::ContactApplicationReviewed(x) => Users(vec![x.applicant_id, x.target_id]),
        E::FriendshipCreated(x) => Users(vec![x.user_id, x.friend_id]),
        E::FriendshipUpdated(x) => Users(vec![x.user_id]),
        E::FriendshipDeleted(x) => Users(vec![x.user_id]),
        E::ChannelCreated(x) => Users(x.member_ids.clone()),
        E::ChannelUpdated(x) => Channel(x.channel_id, vec![]),
        E::ChannelDismissed(x) => Channel(x.channel_id, vec![x.dismissed_by]),
        E::MemberAdded(x) => Channel(x.channel_id, x.user_ids.clone()),
        E::MemberRemoved(x) => Channel(x.channel_id, x.user_ids.clone()),
        E::MemberRoleChanged(x) => Channel(x.channel_id, vec![x.user_id]),
        E::MemberUpdated(x) => Channel(x.channel_id, vec![x.user_id]),
        E::ChannelModerationChanged(x) => Channel(x.channel_id, vec![]),
        E::MemberMuted(x) => Channel(x.channel_id, vec![]),
        E::MemberBanned(x) => Managers(x.channel_id, vec![x.user_id]),
        E::ChannelApplicationCreated(x) => Managers(x.channel_id, vec![x.applicant_id]),
        E::ChannelApplicationReviewed(x) => Users(vec![x.applicant_id, x.reviewer_id]),
        E::MessageSent(x) => Channel(x.channel_id, vec![]),
        E::MessageRecalled(x) => Channel(x.channel_id, vec![]),
        E::MessageEdited(x) => Channel(x.channel_id, vec![]),
        E::MessageHidden(x) => Users(vec![x.user_id]),
        E::MessageReaction(x) => Channel(x.channel_id, vec![]),
        E::MessagePinned(x) => Channel(x.channel_id, vec![]),
        E::ConversationRead(x) => Users([x.user_id].into_iter().chain(x.peer_id).collect()),
        E::ConversationSettingsChanged(x) => Users(vec![x.user_id]),
    }
}

/// What the notifier decided for one event: who hears of it.
pub(crate) struct Planned {
    pub notification: Arc<Notification>,
    /// Distinct, ascending.
    pub users: Vec<UserId>,
    /// The channel whose conversation rows the event changes for `users`.
    pub conversations_of: Option<ChannelId>,
    /// Numbered in each recipient's inbox (cursor). A large group's message is not: its
    /// members catch up by the channel's seq (docs/PROTOCOL.md "Large groups"), so a
    /// message costs no write per member here either.
    pub numbered: bool,
}

/// Events after which the recipients' conversation rows are pushed.
fn changes_conversations(e: &DomainEvent) -> Option<ChannelId> {
    match e {
        // A large group's rows are computed when read; clients apply `message.new` to
        // their list themselves (docs/PROTOCOL.md), so no row per member is read or pushed.
        DomainEvent::MessageSent(x) if x.read_diffusion => None,
        DomainEvent::MessageSent(x) => Some(x.channel_id),
        DomainEvent::MessageRecalled(x) if x.read_diffusion => None,
        DomainEvent::MessageRecalled(x) => Some(x.channel_id),
        DomainEvent::MessageEdited(x) if x.read_diffusion => None,
        DomainEvent::MessageEdited(x) => Some(x.channel_id),
        DomainEvent::MessageHidden(x) => Some(x.channel_id),
        DomainEvent::ConversationRead(x) => Some(x.channel_id),
        DomainEvent::ConversationSettingsChanged(x) => Some(x.channel_id),
        _ => None,
    }
}

/// Conversation-row pushes queued at most; beyond, they are skipped (a client keeps its
/// list from the events, and `sync` returns the rows that changed).
const CONVERSATION_PUSH_QUEUE: usize = 1_024;

/// The (owner, channel) conversation rows a consumer batch changed, to push.
pub(crate) type ConversationPush = Vec<(UserId, ChannelId)>;

impl<D: Database> App<D> {
    /// Decides the recipients of `events`, in order; the lookups are one query per kind
    /// for the whole batch. Events that are not pushed (no frame type) are left out.
    pub(crate) async fn plan_notifications(&self, events: &[(&StoredEvent, &DomainEvent)]) -> Result<Vec<Planned>> {
        let events: Vec<_> = events.iter().filter(|(_, e)| frame_type(e.event_type()).is_some()).collect();
        let audiences: Vec<Audience> = events.iter().map(|(_, e)| audience(e)).collect();
        let channels: BTreeSet<ChannelId> = audiences
            .iter()
            .filter_map(|a| match a {
                Audience::Channel(c, _) | Audience::Managers(c, _) => Some(*c),
                _ => None,
            })
            .collect();
        let users: BTreeSet<UserId> =
            audiences.iter().filter_map(|a| if let Audience::ContactsOf(u) = a { Some(*u) } else { None }).collect();
        let mut members: HashMap<ChannelId, Vec<(UserId, bool)>> = HashMap::new();
        if !channels.is_empty() {
            for (c, u, manager) in self.db.channel_audience(&channels.into_iter().collect::<Vec<_>>()).await? {
                members.entry(c).or_default().push((u, manager));
            }
        }
        let mut owners: HashMap<UserId, Vec<UserId>> = HashMap::new();
        if !users.is_empty() {
            for (u, owner) in self.db.contact_owners(&users.into_iter().collect::<Vec<_>>()).await? {
                owners.entry(u).or_default().push(owner);
            }
        }
        let mut plan = Vec::with_capacity(events.len());
        for ((stored, event), a) in events.iter().zip(audiences) {
            let mut to: BTreeSet<UserId> = BTreeSet::new();
            match a {
                Audience::Users(v) => to.extend(v),
                Audience::Channel(c, also) => {
                    to.extend(members.get(&c).into_iter().flatten().map(|(u, _)| *u));
                    to.extend(also);
                }
                Audience::Managers(c, also) => {
                    to.extend(members.get(&c).into_iter().flatten().filter(|(_, m)| *m).map(|(u, _)| *u));
                    to.extend(also);
                }
                Audience::ContactsOf(u) => {
                    to.extend(owners.get(&u).into_iter().flatten().copied());
                    to.insert(u);
                }
            }
            let notification = Arc::new(Notification {
                event_id: stored.event_id,
                event_type: event.event_type().to_owned(),
                payload: stored.payload.clone(),
                occurred_at: stored.created_at,
            });
            let numbered = !matches!(event, DomainEvent::MessageSent(m) if m.read_diffusion)
                && !matches!(event, DomainEvent::MessageReaction(r) if r.read_diffusion)
                && !matches!(event, DomainEvent::MessagePinned(p) if p.read_diffusion);
            plan.push(Planned {
                notification,
                users: to.into_iter().collect(),
                conversations_of: changes_conversations(event),
                numbered,
            });
        }
        Ok(plan)
    }

    /// After the inbox entries are committed: pushes each event to its recipients, in
    /// order, then (in the background, bounded) the conversation rows the batch changed,
    /// read once for the whole batch. Push failures are counted and logged, not
    /// retried: a device that misses a push sees the gap in its cursor and catches up
    /// from the inbox.
    pub(crate) async fn deliver(&self, done: Vec<(Planned, Vec<(UserId, i64)>)>) {
        let mut changed: BTreeSet<(UserId, ChannelId)> = BTreeSet::new();
        for (planned, targets) in done {
            self.fan_out(targets, planned.notification.clone()).await;
            if let Some(channel) = planned.conversations_of {
                changed.extend(planned.users.iter().map(|u| (*u, channel)));
            }
        }
        if !changed.is_empty() {
            self.push_conversations(changed.into_iter().collect());
        }
    }

    /// Reads the rows of `pairs` whose owners are online somewhere and pushes them, in a
    /// background task fed by a bounded queue: one presence lookup and one read per batch.
    fn push_conversations(&self, pairs: ConversationPush) {
        let queue = self.pipeline.conversation_pushes.get_or_init(|| {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<ConversationPush>(CONVERSATION_PUSH_QUEUE);
            let (db, sink) = (self.db.clone(), self.pipeline.push.clone());
            tokio::spawn(async move {
                while let Some(pairs) = rx.recv().await {
                    let users: Vec<UserId> =
                        pairs.iter().map(|(u, _)| *u).collect::<BTreeSet<_>>().into_iter().collect();
                    let online: BTreeSet<UserId> = match sink.online(&users).await {
                        Ok(online) => online.into_iter().collect(),
                        Err(e) => {
                            // Unknown presence: push to all (a push to nobody costs nothing).
                            tracing::warn!(error = ?e, "presence unknown; pushing conversation rows to all owners");
                            users.into_iter().collect()
                        }
                    };
                    let pairs: Vec<_> = pairs.into_iter().filter(|(u, _)| online.contains(u)).collect();
                    if pairs.is_empty() {
                        continue;
                    }
                    match db.conversations_of(&pairs).await {
                        Ok(rows) => {
                            if let Err(e) = sink.push_conversations(&rows).await {
                                tracing::warn!(error = ?e, "conversation rows not pushed");
                            }
                        }
                        Err(e) => tracing::warn!(error = ?e, "cannot read conversation rows to push"),
                    }
                }
            });
            tx
        });
        if queue.try_send(pairs).is_err() {
            metrics::counter!("conversation_pushes_skipped_total").increment(1);
        }
    }

    /// Pushes `n` to `targets` in chunks through at most `notify_workers` concurrent tasks.
    async fn fan_out(&self, users: Vec<(UserId, i64)>, n: Arc<Notification>) {
        let s = &self.settings.pipeline;
        let sink = self.pipeline.push.clone();
        let chunk = s.notify_chunk_size.max(1);
        // Owned chunks and tasks: the futures hold no borrows (they must be `Send` for
        // any lifetime the spawning code picks).
        let tasks: Vec<_> = users
            .chunks(chunk)
            .map(<[(UserId, i64)]>::to_vec)
            .map(|part| {
                let (sink, n) = (sink.clone(), n.clone());
                async move {
                    let r = sink.push(&part, &n).await;
                    (part.len(), r)
                }
            })
            .collect();
        let results: Vec<(usize, anyhow::Result<()>)> =
            futures::stream::iter(tasks).buffer_unordered(s.notify_workers.max(1)).collect().await;
        for (count, r) in results {
            let status = if r.is_ok() { "ok" } else { "failed" };
            metrics::counter!("notification_sent_total", "type" => n.event_type.clone(), "status" => status)
                .increment(count as u64);
            if let Err(e) = r {
                tracing::warn!(error = ?e, event_id = n.event_id, "push failed; the devices catch up by cursor");
            }
        }
    }
}
