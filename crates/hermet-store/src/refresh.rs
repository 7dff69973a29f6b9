//! The refresh of the read models, defined once for both drivers: its steps, the order
//! they run in and when each applies. A driver says how a step runs on its database
//! (the SQL text is in [`crate::views`]); which steps run, and in which order, is this.

use hermet_domain::projection::Refresh;

/// One step of a refresh ([`crate::ports::ProjectionWrites::apply_refresh`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefreshStep {
    /// The conversation reverse index of the `reverse_channels`, rebuilt
    /// (`views::REVERSE_CHANNELS_DELETE`, then `views::REVERSE_CHANNELS_INSERT`).
    ReverseChannels,
    /// The contact reverse-index rows of the `reverse_contacts` pairs
    /// (`views::REVERSE_CONTACTS_DELETE`, then `views::REVERSE_CONTACTS_INSERT`).
    ReverseContacts,
    /// Every reverse-index row of the `owners` (rebuild and repair:
    /// `views::OWNER_REVERSE_CONVERSATIONS`, `views::OWNER_REVERSE_CONTACTS`).
    OwnerReverse,
    /// The profile-derived columns of the conversation rows showing the `peers` and of
    /// the contact rows listing the `contact_of` users (`views::PEER_PROFILE_*`).
    Profiles,
    /// The conversation rows of the members of `channels`, of the `conversations` pairs
    /// and of the `owners` (`views::CONVERSATION_REFRESH`).
    Conversations,
    /// The contact rows of the `contacts` pairs and of the `owners`
    /// (`views::CONTACT_REFRESH`).
    Contacts,
    /// The message-derived columns of the conversation rows of the members of
    /// `message_channels` and of the `message_conversations` pairs
    /// (`views::MESSAGE_REFRESH`); a channel with a member whose row is missing is
    /// refreshed whole (`views::MISSING_CONVERSATIONS`).
    Messages,
}

/// Every step, in the order both drivers run them: the reverse indexes first, as the
/// profile and conversation refreshes reach peers through them.
pub(crate) const REFRESH_STEPS: [RefreshStep; 7] = [
    RefreshStep::ReverseChannels,
    RefreshStep::ReverseContacts,
    RefreshStep::OwnerReverse,
    RefreshStep::Profiles,
    RefreshStep::Conversations,
    RefreshStep::Contacts,
    RefreshStep::Messages,
];

impl RefreshStep {
    /// Whether `r` names rows for this step (a step without keys runs no statement).
    pub(crate) fn applies(self, r: &Refresh) -> bool {
        match self {
            RefreshStep::ReverseChannels => !r.reverse_channels.is_empty(),
            RefreshStep::ReverseContacts => !r.reverse_contacts.is_empty(),
            RefreshStep::OwnerReverse => !r.owners.is_empty(),
            RefreshStep::Profiles => !(r.peers.is_empty() && r.contact_of.is_empty()),
            RefreshStep::Conversations => !(r.channels.is_empty() && r.conversations.is_empty() && r.owners.is_empty()),
            RefreshStep::Contacts => !(r.contacts.is_empty() && r.owners.is_empty()),
            RefreshStep::Messages => !(r.message_channels.is_empty() && r.message_conversations.is_empty()),
        }
    }
}

/// The steps `r` asks for, in order.
pub(crate) fn steps(r: &Refresh) -> impl Iterator<Item = RefreshStep> + '_ {
    REFRESH_STEPS.into_iter().filter(move |s| s.applies(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_refresh_runs_no_step() {
        assert_eq!(steps(&Refresh::default()).count(), 0);
    }

    #[test]
    fn owners_rebuild_their_reverse_indexes_before_their_rows() {
        let r = Refresh { owners: vec![hermet_domain::id::UserId(1)], ..Refresh::default() };
        let s: Vec<_> = steps(&r).collect();
        assert_eq!(s, [RefreshStep::OwnerReverse, RefreshStep::Conversations, RefreshStep::Contacts]);
    }
}
