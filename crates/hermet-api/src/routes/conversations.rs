//! `/api/v1/conversations/*`: my conversation list and its settings.

use axum::extract::State;
use axum::http::StatusCode;
use hermet_domain::channel::ChannelType;
use hermet_domain::id::{ChannelId, MessageId, UserId};
use hermet_store::{ConversationRow, Database};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::error::ApiResult;
use crate::extract::{Auth, IdPath, Json, Query};

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PeerDto {
    pub user_id: UserId,
    pub nickname: String,
    pub avatar: String,
    pub remark_name: String,
    /// How far the peer has read this chat (read receipts): my messages up to this seq
    /// are read.
    pub read_seq: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastMessageDto {
    pub id: MessageId,
    pub seq: i64,
    #[serde(rename = "type")]
    pub msg_type: String,
    /// Text (≤512 characters) or a placeholder such as `[image]`; empty when the message
    /// was recalled (`type` is then `recalled`).
    pub content: String,
    pub sender_id: UserId,
    pub sender_name: String,
    pub sent_at: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConversationDto {
    pub channel_id: ChannelId,
    #[serde(rename = "type")]
    pub conversation_type: String,
    /// Group name, or for a one-to-one chat my remark for the peer, else their nickname.
    pub name: String,
    pub avatar: String,
    pub info_ver: i64,
    /// The other user of a one-to-one chat.
    pub peer: Option<PeerDto>,
    pub last_message: Option<LastMessageDto>,
    pub unread_count: i64,
    pub mention_count: i64,
    pub is_pinned: bool,
    pub is_muted: bool,
    pub is_hidden: bool,
    pub last_active_at: i64,
    pub opened_at: i64,
    pub closed_at: Option<i64>,
}

impl From<ConversationRow> for ConversationDto {
    fn from(r: ConversationRow) -> Self {
        let peer = r.peer_user_id.map(|id| PeerDto {
            user_id: id,
            nickname: r.peer_nickname.clone(),
            avatar: r.peer_avatar.clone(),
            remark_name: r.remark_name.clone(),
            read_seq: r.peer_read_seq,
        });
        let last_message = match (r.last_message_id, r.last_message_sender_id) {
            (Some(id), Some(sender)) => Some(LastMessageDto {
                id,
                seq: r.last_message_seq,
                msg_type: r.last_message_type.clone().unwrap_or_default(),
                content: r.last_message_content.clone().unwrap_or_default(),
                sender_id: sender,
                sender_name: r.last_message_sender_name.clone().unwrap_or_default(),
                sent_at: r.last_message_time.unwrap_or_default(),
            }),
            _ => None,
        };
        Self {
            channel_id: r.channel_id,
            conversation_type: r.conversation_type,
            name: r.conversation_name,
            avatar: r.conversation_avatar,
            info_ver: r.conversation_info_ver,
            peer,
            last_message,
            unread_count: r.unread_count,
            mention_count: r.mention_count,
            is_pinned: r.is_pinned,
            is_muted: r.is_muted,
            is_hidden: r.is_hidden,
            last_active_at: r.last_active_at,
            opened_at: r.opened_at,
            closed_at: r.closed_at,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConversationsQuery {
    /// `nextCursor` of the previous page (opaque).
    pub cursor: Option<String>,
    /// Page size, 1 to 200; default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub conversation_type: Option<ChannelType>,
    /// Only conversations with unread messages.
    pub unread_only: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConversationPage {
    pub items: Vec<ConversationDto>,
    pub next_cursor: Option<String>,
    /// Unread messages over all open, unmuted conversations.
    pub total_unread: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateConversationRequest {
    pub is_pinned: Option<bool>,
    pub is_muted: Option<bool>,
    /// Hidden until the next message.
    pub is_hidden: Option<bool>,
}

/// GET /api/v1/conversations — pinned first, then newest activity.
#[utoipa::path(get, path = "/api/v1/conversations", tag = "conversations", security(("bearer" = [])), params(ConversationsQuery),
    responses((status = 200, body = ConversationPage)))]
pub async fn list<D: Database>(
    State(st): State<AppState<D>>,
    Auth(who): Auth,
    Query(q): Query<ConversationsQuery>,
) -> ApiResult<Json<ConversationPage>> {
    let l = st
        .app
        .conversations(who, q.conversation_type, q.unread_only.unwrap_or(false), q.cursor.as_deref(), q.limit)
        .await?;
    Ok(Json(ConversationPage {
        items: l.page.items.into_iter().map(Into::into).collect(),
        next_cursor: l.page.next_cursor,
        total_unread: l.total_unread,
    }))
}

/// GET /api/v1/conversations/{channelId} — one conversation of mine.
#[utoipa::path(get, path = "/api/v1/conversations/{channelId}", tag = "conversations", security(("bearer" = [])), params(("channelId" = inline(ChannelId), Path, description = "channel id")),
    responses((status = 200, body = ConversationDto), (status = 404, description = "no conversation of mine in that channel", body = crate::error::ErrorBody)))]
pub async fn get_one<D: Database>(
    State(st): State<AppState<D>>,
    Auth(who): Auth,
    IdPath(id): IdPath<ChannelId>,
) -> ApiResult<Json<ConversationDto>> {
    Ok(Json(st.app.conversation(who, id).await?.into()))
}

/// PATCH /api/v1/conversations/{channelId} — pin, mute, hide.
#[utoipa::path(patch, path = "/api/v1/conversations/{channelId}", tag = "conversations", security(("bearer" = [])), params(("channelId" = inline(ChannelId), Path, description = "channel id")),
    request_body = UpdateConversationRequest, responses((status = 200, body = ConversationDto)))]
pub async fn update<D: Database>(
    State(st): State<AppState<D>>,
    Auth(who): Auth,
    IdPath(id): IdPath<ChannelId>,
    Json(req): Json<UpdateConversationRequest>,
) -> ApiResult<Json<ConversationDto>> {
    Ok(Json(st.app.update_conversation(who, id, req.is_pinned, req.is_muted, req.is_hidden).await?.into()))
}

/// DELETE /api/v1/conversations/{channelId} — close until the next message.
#[utoipa::path(delete, path = "/api/v1/conversations/{channelId}", tag = "conversations", security(("bearer" = [])), params(("channelId" = inline(ChannelId), Path, description = "channel id")),
    responses((status = 204)))]
pub async fn close<D: Database>(
    State(st): State<AppState<D>>,
    Auth(who): Auth,
    IdPath(id): IdPath<ChannelId>,
) -> ApiResult<StatusCode> {
    st.app.close_conversation(who, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
