//! `/api/v1/channels/*`: groups, members, join requests, messages, read state.

use axum::extract::State;
use axum::http::StatusCode;
use hermet_app::messages::{EditMessage, SendMessage};
use hermet_domain::Error;
use hermet_domain::channel::{Channel, ChannelStatus, ChannelType, Member, MemberRole};
use hermet_domain::contact::ApplicationStatus;
use hermet_domain::id::{ApplicationId, ChannelId, MessageId, UserId};
use hermet_domain::message::{self, Mentions, Message, MessageType, ReactionCount};
use hermet_store::{ChannelApplication, Database};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, SchemaType, Type};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Auth, IdPath, Json, Query};
use crate::routes::conversations::ConversationDto;
use crate::schemas;

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChannelDto {
    pub id: ChannelId,
    #[serde(rename = "type")]
    pub channel_type: ChannelType,
    pub name: String,
    pub avatar: String,
    pub status: ChannelStatus,
    pub member_count: i32,
    pub channel_info_ver: i64,
    pub creator_id: UserId,
    /// Seq of the newest message (0: none yet).
    pub last_seq: i64,
    /// A large group (read diffusion): members' conversation rows follow its messages
    /// when read, and no `conversation.updated` frame follows a `message.new` of it.
    pub large_group: bool,
    pub created_at: i64,
    pub updated_at: i64,
    /// Only the owner and admins may send (docs/API.md "Moderation").
    pub mute_all: bool,
    /// Slow mode: a plain member sends at most one message per this many seconds (0: off).
    pub slow_mode_secs: i32,
}

impl From<Channel> for ChannelDto {
    fn from(c: Channel) -> Self {
        Self {
            id: c.id,
            channel_type: c.channel_type,
            name: c.name,
            avatar: c.avatar,
            status: c.status,
            member_count: c.member_count,
            channel_info_ver: c.channel_info_ver,
            creator_id: c.creator_id,
            last_seq: c.last_seq,
            large_group: c.read_diffusion,
            created_at: c.created_at,
            updated_at: c.updated_at,
            mute_all: c.mute_all,
            slow_mode_secs: c.slow_mode_secs,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateGroupRequest {
    /// 1 to 64 characters.
    #[schema(schema_with = schemas::channel_name)]
    pub name: String,
    #[schema(schema_with = schemas::avatar)]
    pub avatar: Option<String>,
    /// The other members (the creator is added as owner); up to the configured maximum.
    pub member_ids: Vec<UserId>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateChannelRequest {
    #[schema(schema_with = schemas::channel_name_patch)]
    pub name: Option<String>,
    #[schema(schema_with = schemas::avatar)]
    pub avatar: Option<String>,
    /// Everyone muted but the owner and admins.
    pub mute_all: Option<bool>,
    /// Slow mode, 0 (off) to 86,400 seconds.
    #[schema(value_type = Option<i32>, minimum = 0, maximum = 86400)]
    #[serde(default, deserialize_with = "hermet_domain::deserialize_whole_opt")]
    pub slow_mode_secs: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberDto {
    pub user_id: UserId,
    pub role: MemberRole,
    pub group_nickname: String,
    pub joined_at: i64,
    /// Muted by a manager until this time (`null`: not muted).
    pub muted_until: Option<i64>,
}

impl From<Member> for MemberDto {
    fn from(m: Member) -> Self {
        let muted_until = m.muted_until.filter(|t| *t > hermet_domain::time::now_ms());
        Self { user_id: m.user_id, role: m.role, group_nickname: m.group_nickname, joined_at: m.joined_at, muted_until }
    }
}

/// A member in the members list: with their profile's nickname and avatar (the name to
/// show is `groupNickname` when set, else `nickname`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberListItem {
    #[serde(flatten)]
    pub member: MemberDto,
    pub nickname: String,
    pub avatar: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberPage {
    pub items: Vec<MemberListItem>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// `nextCursor` of the previous page (opaque).
    pub cursor: Option<String>,
    /// Page size, 1 to 200; default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddMembersRequest {
    #[schema(min_items = 1)]
    pub user_ids: Vec<UserId>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberCount {
    pub member_count: i32,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateMemberRequest {
    /// Owner only; `owner` transfers ownership.
    pub role: Option<MemberRole>,
    /// The member's own nickname in this group (empty: none).
    #[schema(schema_with = schemas::group_nickname)]
    pub group_nickname: Option<String>,
    /// Mute the member until this time (milliseconds since 1970; `null`: unmute). The
    /// owner mutes admins and members, an admin members.
    #[serde(default, deserialize_with = "hermet_domain::deserialize_whole_present")]
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 253402300799999_i64)]
    pub muted_until: Option<Option<i64>>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JoinRequest {
    #[serde(default)]
    #[schema(schema_with = schemas::application_message)]
    pub message: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JoinApplicationDto {
    pub id: ApplicationId,
    pub channel_id: ChannelId,
    pub applicant_id: UserId,
    pub message: String,
    pub status: ApplicationStatus,
    pub reviewer_id: Option<UserId>,
    pub created_at: i64,
    pub reviewed_at: Option<i64>,
}

impl From<ChannelApplication> for JoinApplicationDto {
    fn from(a: ChannelApplication) -> Self {
        Self {
            id: a.id,
            channel_id: a.channel_id,
            applicant_id: a.applicant_id,
            message: a.message,
            status: a.status,
            reviewer_id: a.reviewer_id,
            created_at: a.created_at,
            reviewed_at: a.reviewed_at,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct JoinApplicationsQuery {
    pub status: Option<ApplicationStatus>,
    /// `nextCursor` of the previous page (opaque).
    pub cursor: Option<String>,
    /// Page size, 1 to 200; default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JoinApplicationPage {
    pub items: Vec<JoinApplicationDto>,
    pub next_cursor: Option<String>,
}

/// `mentions`: a list of user ids, or the string `"all"`.
#[derive(Debug, Default)]
pub struct MentionsDto(pub Mentions);

impl<'de> Deserialize<'de> for MentionsDto {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Null => Ok(MentionsDto(Mentions::None)),
            serde_json::Value::String(s) if s == "all" => Ok(MentionsDto(Mentions::All)),
            v @ serde_json::Value::Array(_) => {
                let ids: Vec<UserId> = serde_json::from_value(v).map_err(D::Error::custom)?;
                Ok(MentionsDto(if ids.is_empty() { Mentions::None } else { Mentions::Users(ids) }))
            }
            _ => Err(D::Error::custom("mentions must be a list of user ids or \"all\"")),
        }
    }
}

/// The document's schema is [`SendMessageRequest::schema`]'s: one shape per kind of `type`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SendMessageRequest {
    #[serde(rename = "type")]
    pub msg_type: MessageType,
    /// A JSON object; text messages carry `{"text": "…"}`.
    pub content: serde_json::Value,
    /// User ids, or `"all"`.
    #[serde(default)]
    pub mentions: MentionsDto,
    /// Makes retries idempotent: the same clientMsgId returns the same message.
    pub client_msg_id: Option<String>,
    /// A reply: the id of the message of this channel it answers.
    pub reply_to: Option<MessageId>,
}

/// A `text` message's `content` has `text`: something besides whitespace, no ASCII control
/// character but tab and line breaks, at most 10,000 characters. Other types take any
/// object; `system` is the server's own. Every content is a JSON object of at most 64 KiB
/// whose strings (keys too) hold no NUL character.
impl utoipa::PartialSchema for SendMessageRequest {
    fn schema() -> RefOr<Schema> {
        let shape = |types: &[&str], content: ObjectBuilder| {
            schemas::object([
                ("type", schemas::one_of_strings(types), true),
                ("content", content.into(), true),
                ("mentions", schemas::mentions(), false),
                ("clientMsgId", schemas::client_msg_id().into(), false),
                (
                    "replyTo",
                    OneOfBuilder::new()
                        .item(<MessageId as utoipa::PartialSchema>::schema())
                        .item(ObjectBuilder::new().schema_type(SchemaType::Type(Type::Null)))
                        .into(),
                    false,
                ),
            ])
        };
        let any_object = schemas::content_object;
        let text = any_object()
            .property(
                "text",
                ObjectBuilder::new()
                    .schema_type(SchemaType::Type(Type::String))
                    .pattern(Some(hermet_domain::validate::schema::message_text_pattern()))
                    .max_length(Some(message::TEXT_MAX_CHARS)),
            )
            .required("text");
        let others: Vec<&str> =
            [MessageType::Image, MessageType::Voice, MessageType::Video, MessageType::File, MessageType::Custom]
                .into_iter()
                .map(MessageType::as_str)
                .collect();
        OneOfBuilder::new()
            .item(shape(&[MessageType::Text.as_str()], text))
            .item(shape(&others, any_object()))
            .description(Some("One shape per kind of `type`: a `text` message needs `content.text`."))
            .into()
    }
}

impl ToSchema for SendMessageRequest {}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SendMessageResponse {
    pub message_id: MessageId,
    pub seq: i64,
    pub sent_at: i64,
}

impl From<hermet_app::messages::SentMessage> for SendMessageResponse {
    fn from(s: hermet_app::messages::SentMessage) -> Self {
        Self { message_id: s.message_id, seq: s.seq, sent_at: s.sent_at }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageDto {
    pub id: MessageId,
    pub channel_id: ChannelId,
    pub seq: i64,
    pub sender_id: UserId,
    pub sender_name: String,
    #[serde(rename = "type")]
    pub msg_type: MessageType,
    #[schema(value_type = Object)]
    pub content: serde_json::Value,
    pub mentions: Vec<UserId>,
    pub mention_all: bool,
    pub client_msg_id: Option<String>,
    pub sent_at: i64,
    /// When the message was recalled (`type` is then `recalled`, `content` `{}`).
    pub recalled_at: Option<i64>,
    /// Who recalled it: the sender, or a group's owner or an admin.
    pub recalled_by: Option<UserId>,
    /// When it was last edited (`null`: never).
    pub edited_at: Option<i64>,
    /// How many times it was edited; its versions are `…/{messageId}/versions`.
    pub edit_count: i32,
    /// Each reaction with how many members gave it and whether I did, in the order they
    /// were first given.
    pub reactions: Vec<ReactionDto>,
    /// A reply: the message it answers as that message is now (`null`: not a reply).
    pub reply_to: Option<QuoteDto>,
    /// A forwarded message: where it came from (`null`: not forwarded).
    pub forwarded_from: Option<ForwardedDto>,
}

/// The quote a reply carries: the answered message's sender, type and a preview of at
/// most 100 characters, as it is now (edited: the edit; recalled: type `recalled`, no
/// preview).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuoteDto {
    pub message_id: MessageId,
    pub sender_id: UserId,
    pub sender_name: String,
    #[serde(rename = "type")]
    pub msg_type: MessageType,
    pub preview: String,
}

impl From<message::Quote> for QuoteDto {
    fn from(q: message::Quote) -> Self {
        Self {
            message_id: q.message_id,
            sender_id: q.sender_id,
            sender_name: q.sender_name,
            msg_type: q.msg_type,
            preview: q.preview,
        }
    }
}

/// Where a forwarded message came from: the original message (the first of a chain of
/// forwards), its sender and when it was sent.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ForwardedDto {
    pub message_id: MessageId,
    pub sender_id: UserId,
    pub sender_name: String,
    pub sent_at: i64,
}

impl MessageDto {
    /// A message as history shows it: with its reactions and, for a reply, its quote.
    pub fn shown(
        m: Message,
        reactions: &mut std::collections::HashMap<MessageId, Vec<ReactionCount>>,
        quotes: &std::collections::HashMap<MessageId, message::Quote>,
    ) -> Self {
        let reply = m.reply_to.and_then(|id| quotes.get(&id)).cloned();
        let mut dto = MessageDto::from(m);
        dto.reactions = reactions.remove(&dto.id).unwrap_or_default().into_iter().map(Into::into).collect();
        dto.reply_to = reply.map(Into::into);
        dto
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReactionDto {
    pub emoji: String,
    pub count: i64,
    pub me: bool,
}

impl From<ReactionCount> for ReactionDto {
    fn from(r: ReactionCount) -> Self {
        Self { emoji: r.emoji, count: r.count, me: r.me }
    }
}

/// `PUT`/`DELETE …/reactions/{emoji}`: the message's reactions after the change.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Reactions {
    pub message_id: MessageId,
    pub reactions: Vec<ReactionDto>,
}

/// A reaction in a path: an emoji or a short code, 1 to 32 characters, no control,
/// whitespace or bidirectional control character, not only dots.
pub struct Emoji;

impl utoipa::PartialSchema for Emoji {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .pattern(Some(hermet_domain::validate::schema::reaction_pattern()))
            .min_length(Some(1))
            .max_length(Some(hermet_domain::validate::REACTION_MAX))
            .into()
    }
}

impl ToSchema for Emoji {}

impl From<Message> for MessageDto {
    fn from(m: Message) -> Self {
        Self {
            id: m.id,
            channel_id: m.channel_id,
            seq: m.seq,
            sender_id: m.sender_id,
            sender_name: m.sender_name,
            msg_type: m.msg_type,
            content: m.content,
            mentions: m.mentions,
            mention_all: m.mention_all,
            client_msg_id: m.client_msg_id,
            sent_at: m.created_at,
            recalled_at: m.recalled.map(|r| r.at),
            recalled_by: m.recalled.map(|r| r.by),
            edited_at: m.edited_at,
            edit_count: m.edit_count,
            reactions: Vec::new(),
            reply_to: None,
            forwarded_from: m.forwarded_from.map(|f| ForwardedDto {
                message_id: f.message_id,
                sender_id: f.sender_id,
                sender_name: f.sender_name,
                sent_at: f.sent_at,
            }),
        }
    }
}

/// `PATCH …/messages/{messageId}`: new content, and optionally new mentions.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EditMessageRequest {
    pub content: serde_json::Value,
    #[serde(default, deserialize_with = "present")]
    pub mentions: Option<MentionsDto>,
}

/// A field that is present (even `null`) is `Some`; `#[serde(default)]` makes an absent one `None`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<MentionsDto>, D::Error> {
    MentionsDto::deserialize(d).map(Some)
}

/// The content must suit the message's type (a `text` message needs `content.text`, as
/// when sending); `mentions` absent keeps the message's mentions (those still members),
/// present replaces them (`null` or `[]`: none).
impl utoipa::PartialSchema for EditMessageRequest {
    fn schema() -> RefOr<Schema> {
        schemas::object([
            ("content", RefOr::from(schemas::content_object()), true),
            ("mentions", schemas::mentions(), false),
        ])
        .into()
    }
}

impl ToSchema for EditMessageRequest {}

/// One version of a message: 1 as sent, the last as it is now.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageVersionDto {
    pub version: i32,
    #[schema(value_type = Object)]
    pub content: serde_json::Value,
    pub mentions: Vec<UserId>,
    pub mention_all: bool,
    /// When this version was written (sent or edited).
    pub written_at: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageVersions {
    /// Oldest first.
    pub items: Vec<MessageVersionDto>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MessagesQuery {
    /// Newest first, seqs below this.
    #[param(minimum = 0)]
    pub before_seq: Option<i64>,
    /// Oldest first, seqs above this (catching up).
    #[param(minimum = 0)]
    pub after_seq: Option<i64>,
    /// Page size, 1 to 200; default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessagePage {
    pub items: Vec<MessageDto>,
    pub has_more: bool,
    /// A one-to-one chat: how far the peer has read (read receipts); `null` in groups
    /// (`…/{messageId}/receipts`).
    pub peer_read_seq: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReadRequest {
    /// Read up to and including this seq.
    #[schema(minimum = 0)]
    #[serde(deserialize_with = "hermet_domain::deserialize_whole")]
    pub seq: i64,
}

/// POST /api/v1/channels/groups — create a group in one transaction.
#[utoipa::path(post, path = "/api/v1/channels/groups", tag = "channels", security(("bearer" = [])), request_body = CreateGroupRequest,
    responses((status = 201, body = ChannelDto), (status = 422, description = "unknown, duplicate or inactive member ids, listed in `details`: `duplicate_members`, `invalid_members`, `group_full`", body = ErrorBody),
        (status = 429, description = "`rate_limited` (`group_creations_per_user`)", body = ErrorBody)))]
pub async fn create_group<D: Database>(
    State(st): State<AppState<D>>,
    Auth(who): Auth,
    Json(req): Json<CreateGroupRequest>,
) -> ApiResult<(StatusCode, Json<ChannelDto>)> {
    let c = st.app.create_group(who, &req.name, req.avatar.as_deref(), req.member_ids).await?;
    Ok((StatusCode::CREATED, Json(c.into())))
}

/// GET /api/v1/channels/{id} — members only.
#[utoipa::path(get, path = "/api/v1/channels/{id}", tag = "channels", security(("bearer" = [])), params(("id" = inline(ChannelId), Path, description = "channel id")),
    responses((status = 200, body = ChannelDetails), (status = 403, description = "not a member of the channel", body = ErrorBody)))]
pub async fn get<D: Database>(
    State(st): State<AppState<D>>,
    Auth(who): Auth,
    IdPath(id): IdPath<ChannelId>,
) -> ApiResult<Json<ChannelDetails>> {
    let v = st.app.channel(who, id).await?;
    Ok(Json(ChannelDetails {
        channel: v.channel.into(),
        owner_id: v.owner_id,
        my_role: v.my_role,
        peer: v.peer.map(Into::into),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MyChannelsQuery {
    /// `group` (the default) or `single`.
    #[serde(rename = "type")]
    #[param(rename = "type", inline)]
    pub channel_type: Option<ChannelType>,
    /// `nextCursor` of the previous page (opaque).
    pub cursor: Option<String>,
    /// Page size, 1 to 200; default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChannelPage {
    pub items: Vec<ChannelDto>,
    pub next_cursor: Option<String>,
}

/// GET /api/v1/channels — my groups (or one-to-one chats), hidden and closed ones too.
#[utoipa::path(get, path = "/api/v1/channels", tag = "channels", security(("bearer" = [])), params(MyChannelsQuery),
    responses((status = 200, body = ChannelPage)))]
pub async fn mine<D: Database>(
    State(st): State<AppState<D>>,
    Auth(who): Auth,
    Query(q): Query<MyChannelsQuery>,
) -> ApiResult<Json<ChannelPage>> {
    let kind = q.channel_type.unwrap_or(ChannelType::Group);
    let page = st.app.my_channels(who, kind, q.cursor.as_deref(), q.limit).await?;
    Ok(Json(ChannelPage { items: page.items.into_iter().map(Into::into).collect(), next_cursor: page.next_cursor }))
}

/// A channel as one of its members sees it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChannelDetails {
    #[serde(flatten)]
    pub channel: ChannelDto,
    /// A group's owner (`creatorId` stays its creator); `null` for a one-to-one chat.
    pub owner_id: Option<UserId>,
    /// The caller's role (`member` in a one-to-one chat).
    pub my_role: MemberRole,
    /// A one-to-one chat's other member; `null` in a group.
    pub peer: Option<crate::routes::users::PublicUser>,
}

/// PATCH /api/v1/channels/{id} — rename or change the avatar (owner/admin).
#[utoipa::path(patch, path = "/api/v1/channels/{id}", tag = "channels", security(("bearer" = [])), params(("id" = inline(ChannelId), Path, description = "channel id")), request_body = UpdateChannelRequest,
    responses((status = 200, body = ChannelDto), (status = 403, description = "not the owner or an admin of the group", body = ErrorBody), (status = 409, description = "`channel_archived`", body = ErrorBody), (status = 422, description = "`not_a_group`", body = ErrorBody)))]
pub async fn update<D: Database>(
    State(st): State<AppState<D>>,
    Auth(who): Auth,
    IdPath(id): IdPath<ChannelId>,
    Json(req): Json<UpdateChannelRequest>,
) -> ApiResult<Json<ChannelDto>> {
    let patch = hermet_app::channels::ChannelPatch {
        name: req.name,
        avatar: req.avatar,
        mute_all: req.mute_all,
        slow_mode_secs: req.slow_mode_secs,
    };
    Ok(Json(st.app.update_channel(who, id, patch).await?.into()))
}

/// POST /api/v1/channels/{id}/dismiss — the owner dismisses the group (it stays, archived:
/// members keep its history).
#[utoipa::path(post, path = "/api/v1/channels/{id}/dismiss", tag = "channels", security(("bearer" = [])), params(("id" = inline(ChannelId), Path, description = "channel id")),
    responses((status = 204), (status = 403, description = "not the owner of the group", body = ErrorBody), (status = 409, description = "`channel_archived`", body = ErrorBody), (status = 422, description = "`not_a_group`", body = ErrorBody)))]
pub async fn dismiss<D: Database>(
    State(st): State<AppState<D>>,
    Auth(who): Auth,
    IdPath(id): IdPath<ChannelId>,
) -> ApiResult<StatusCode> {
    st.app.dismiss_channel(who, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// GET /api/v1/channels/{id}/members — active members by user id.
#[utoipa::path(get, path = "/api/v1/channels/{id}/members", tag = "channels", security(("bearer" = [])), params(("id" = inline(ChannelId), Path, description = "channel id"), PageQuery),
    responses((status = 200, body = MemberPage), (status = 403, description = "not a member of the channel", body = ErrorBody)))]
pub async fn members<D: Database>(
    State(st): State<AppState<D>>,
    Auth(who): Auth,
    IdPath(id): IdPath<ChannelId>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<MemberPage>> {
    let page = st.app.members(who, id, q.cursor.as_deref(), q.limit).await?;
    let items = page
        .items
        .into_iter()
        .map(|v| MemberListItem { member: v.member.into(), nickname: v.nickname, avatar: v.avatar })
        .collect();
    Ok(Json(MemberPage { items, next_cursor: page.next_cursor }))
}

/// POST /api/v1/channels/{id}/members — add members (owner/admin).
#[utoipa::path(post, path = "/api/v1/channels/{id}/members", tag = "channels", security(("bearer" = [])), params(("id" = inline(ChannelId), Path, description = "channel id")), request_body = AddMembersRequest,
    responses((status = 200, body = MemberCount), (status = 403, description = "not the owner or an admin of the group", body = ErrorBody), (status = 409, description = "`channel_archived`", body = ErrorBody),
        (status = 422, description = "`not_a_group`, `duplicate_members`, `invalid_members`, `already_members`, `banned_users`, `group_full`", body = ErrorBody)))]
pub async fn add_members<D: Database>(
    State(st): State<AppState<D>>,
    Auth(who): Auth,
    IdPath(id): IdPath<ChannelId>,
    Json(req): Json<AddMembersRequest>,
) -> ApiResult<Json<MemberCount>> {
    Ok(Json(MemberCount { member_count: st.app.add_members(who, id, req.user_ids).await? }))
}

/// DELETE /api/v1/channels/{id}/members/{userId} — remove a member (owner/admin).
#[utoipa::path(delete, path = "/api/v1/channels/{id}/members/{userId}", tag = "channels", security(("bearer" = [])),
    params(("id" = inline(ChannelId), Path, description = "channel id"), ("userId" = inline(UserId), Path, description = "the member's user id")), responses((status = 204), (status = 403, description = "not the owner or an admin of the group", body = ErrorBody), (status = 409, description = "`channel_archived`", body = ErrorBody), (status = 422, description = "`not_a_group`, `use_leave`", body = ErrorBody)))]
pub async fn remove_member<D: Database>(
    State(st): State<AppState<D>>,
    Auth(who): Auth,
    IdPath((id, user)): IdPath<(ChannelId, UserId)>,
) -> ApiResult<StatusCode> {
    st.app.remove_member(who, id, user).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// PATCH /api/v1/channels/{id}/members/{userId} — role (owner) or own group nickname.
#[utoipa::path(patch, path = "/api/v1/channels/{id}/members/{userId}", tag = "channels", security(("bearer" = [])),
    params(("id" = inline(ChannelId), Path, description = "channel id"), ("userId" = inline(UserId), Path, description = "the member's user id")), request_body = UpdateMemberRequest,
    responses((status = 200, body = MemberDto), (status = 403, description = "roles: not the owner; nickname: not the member; mutedUntil: not outranking the member", body = ErrorBody), (status = 409, description = "`channel_archived`", body = ErrorBody),
        (status = 422, description = "`not_a_group`, `cannot_change_own_role`", body = ErrorBody)))]
pub async fn update_member<D: Database>(
    State(st): State<AppState<D>>,
    Auth(who): Auth,
    IdPath((id, user)): IdPath<(ChannelId, UserId)>,
    Json(req): Json<UpdateMemberRequest>,
) -> ApiResult<Json<MemberDto>> {
    Ok(Json(st.app.update_member(who, id, user, req.role, req.group_nickname, req.muted_until).await?.into()))
}

/// A user banned from a group.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BanDto {
    pub user_id: UserId,
    pub banned_by: UserId,
    pub banned_at: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BanPage {
    pub items: Vec<BanDto>,
    pub next_cursor: Option<String>,
}

/// POST /api/v1/channels/{id}/bans/{userId} — ban a user from a group (owner/admin).
#[utoipa::path(post, path = "/api/v1/channels/{id}/bans/{userId}", tag = "channels", security(("bearer" = [])),
    params(("id" = inline(ChannelId), Path, description = "channel id"), ("userId" = inline(UserId), Path, description = "the user's id")),
    responses((status = 204, description = "banned (a member is removed first); also when already banned"),
        (status = 403, description = "not the owner or an admin; an admin banning an admin or the owner; oneself", body = ErrorBody),
        (status = 404, description = "no such user", body = ErrorBody),
        (status = 409, description = "`channel_archived`", body = ErrorBody),
        (status = 422, description = "`not_a_group`", body = ErrorBody)))]
pub async fn ban<D: Database>(
    State(st): State<AppState<D>>,
    Auth(who): Auth,
    IdPath((id, user)): IdPath<(ChannelId, UserId)>,
) -> ApiResult<StatusCode> {
    st.app.ban(who, id, user, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// DELETE /api/v1/channels/{id}/bans/{userId} — lift a ban (owner/admin).
#[utoipa::path(delete, path = "/api/v1/channels/{id}/bans/{userId}", tag = "channels", security(("bearer" = [])),
    params(("id" = inline(ChannelId), Path, description = "channel id"), ("userId" = inline(UserId), Path, description = "the user's id")),
    responses((status = 204, description = "not banned (also when they were not)"),
        (status = 403, description = "not the owner or an admin; oneself", body = ErrorBody),
        (status = 409, description = "`channel_archived`", body = ErrorBody),
        (status = 422, description = "`not_a_group`", body = ErrorBody)))]
pub async fn unban<D: Database>(
    State(st): State<AppState<D>>,
    Auth(who): Auth,
    IdPath((id, user)): IdPath<(ChannelId, UserId)>,
) -> ApiResult<StatusCode> {
    st.app.ban(who, id, user, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// GET /api/v1/channels/{id}/bans — users banned from a group (owner/admin).
#[utoipa::path(get, path = "/api/v1/channels/{id}/bans", tag = "channels", security(("bearer" = [])),
    params(("id" = inline(ChannelId), Path, description = "channel id"), PageQuery),
    responses((status = 200, body = BanPage), (status = 403, description = "not the owner or an admin of the group", body = ErrorBody),
        (status = 422, description = "`not_a_group`", body = ErrorBody)))]
pub async fn bans<D: Database>(
    State(st): State<AppState<D>>,
    Auth(who): Auth,
    IdPath(id): IdPath<ChannelId>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<BanPage>> {
    let page = st.app.bans(who, id, q.cursor.as_deref(), q.limit).await?;
    let items = page
        .items
        .into_iter()
        .map(|b| BanDto { user_id: b.user_id, banned_by: b.banned_by, banned_at: b.banned_at })
        .collect();
    Ok(Json(BanPage { items, next_cursor: page.next_cursor }))
}

/// POST /api/v1/channels/{id}/leave — leave a group.
#[utoipa::path(post, path = "/api/v1/channels/{id}/leave", tag = "channels", security(("bearer" = [])), params(("id" = inline(ChannelId), Path, description = "channel id")),
    responses((status = 204), (status = 403, description = "not a member of the channel", body = ErrorBody), (status = 409, description = "`owner_must_transfer`, `channel_archived`", body = ErrorBody), (status = 422, description = "`not_a_group`", body = ErrorBody)))]
pub async fn leave<D: Database>(
    State(st): State<AppState<D>>,
    Auth(who): Auth,
    IdPath(id): IdPath<ChannelId>,
) -> ApiResult<StatusCode> {
    st.app.leave_channel(who, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// POST /api/v1/channels/{id}/applications — ask to join a group.
#[utoipa::path(post, path = "/api/v1/channels/{id}/applications", tag = "channels", security(("bearer" = [])), params(("id" = inline(ChannelId), Path, description = "channel id")), request_body = JoinRequest,
    responses((status = 201, body = JoinApplicationDto), (status = 403, description = "`banned`", body = ErrorBody), (status = 409, description = "`already_member`, `application_pending`, `channel_archived`", body = ErrorBody), (status = 422, description = "`not_a_group`", body = ErrorBody),
        (status = 429, description = "`rate_limited` (`applications_per_user`)", body = ErrorBody)))]
pub async fn apply<D: Database>(
    State(st): State<AppState<D>>,
    Auth(who): Auth,
    IdPath(id): IdPath<ChannelId>,
    Json(req): Json<JoinRequest>,
) -> ApiResult<(StatusCode, Json<JoinApplicationDto>)> {
    Ok((StatusCode::CREATED, Json(st.app.apply_to_channel(who, id, &req.message).await?.into())))
}

/// GET /api/v1/channels/{id}/applications — join requests (owner/admin).
#[utoipa::path(get, path = "/api/v1/channels/{id}/applications", tag = "channels", security(("bearer" = [])), params(("id" = inline(ChannelId), Path, description = "channel id"), JoinApplicationsQuery),
    responses((status = 200, body = JoinApplicationPage), (status = 403, description = "not the owner or an admin of the group", body = ErrorBody), (status = 422, description = "`not_a_group`", body = ErrorBody)))]
pub async fn applications<D: Database>(
    State(st): State<AppState<D>>,
    Auth(who): Auth,
    IdPath(id): IdPath<ChannelId>,
    Query(q): Query<JoinApplicationsQuery>,
) -> ApiResult<Json<JoinApplicationPage>> {
    let page = st.app.channel_applications(who, id, q.status, q.cursor.as_deref(), q.limit).await?;
    Ok(Json(JoinApplicationPage {
        items: page.items.into_iter().map(Into::into).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// POST /api/v1/channels/{id}/applications/{applicationId}/accept — add the applicant (owner/admin).
#[utoipa::path(post, path = "/api/v1/channels/{id}/applications/{applicationId}/accept", tag = "channels", security(("bearer" = [])),
    params(("id" = inline(ChannelId), Path, description = "channel id"), ("applicationId" = inline(ApplicationId), Path, description = "join application id")), responses((status = 200, body = JoinApplicationDto), (status = 403, description = "not the owner or an admin of the group", body = ErrorBody), (status = 409, description = "`application_not_pending`, `channel_archived`", body = ErrorBody),
        (status = 422, description = "`applicant_inactive`, `group_full`", body = ErrorBody)))]
pub async fn accept_application<D: Database>(
    State(st): State<AppState<D>>,
    Auth(who): Auth,
    IdPath((id, app)): IdPath<(ChannelId, ApplicationId)>,
) -> ApiResult<Json<JoinApplicationDto>> {
    Ok(Json(st.app.review_channel_application(who, id, app, true).await?.into()))
}

/// POST /api/v1/channels/{id}/applications/{applicationId}/reject — decline (owner/admin).
#[utoipa::path(post, path = "/api/v1/channels/{id}/applications/{applicationId}/reject", tag = "channels", security(("bearer" = [])),
    params(("id" = inline(ChannelId), Path, description = "channel id"), ("applicationId" = inline(ApplicationId), Path, description = "join application id")), responses((status = 200, body = JoinApplicationDto), (status = 403, description = "not the owner or an admin of the group", body = ErrorBody), (status = 409, description = "`application_not_pending`, `channel_archived`", body = ErrorBody)))]
pub async fn reject_application<D: Database>(
    State(st): State<AppState<D>>,
    Auth(who): Auth,
    IdPath((id, app)): IdPath<(ChannelId, ApplicationId)>,
) -> ApiResult<Json<JoinApplicationDto>> {
    Ok(Json(st.app.review_channel_application(who, id, app, false).await?.into()))
}

/// POST /api/v1/channels/{id}/messages — send a message.
#[utoipa::path(post, path = "/api/v1/channels/{id}/messages", tag = "messages", security(("bearer" = [])), params(("id" = inline(ChannelId), Path, description = "channel id")), request_body = SendMessageRequest,
    responses((status = 201, body = SendMessageResponse), (status = 403, description = "not a member, or the peer blocked the sender; `member_muted`, `channel_muted`", body = ErrorBody),
        (status = 409, description = "`channel_archived`, `client_msg_id_reused`, `message_recalled` (`replyTo`)", body = ErrorBody),
        (status = 422, description = "`not_friends`, `recipient_inactive`, `unknown_message` (`replyTo`)", body = ErrorBody),
        (status = 429, description = "`rate_limited` (`sends_per_user`, `sends_per_channel`), `slow_mode`", body = ErrorBody)))]
pub async fn send<D: Database>(
    State(st): State<AppState<D>>,
    Auth(who): Auth,
    IdPath(id): IdPath<ChannelId>,
    Json(req): Json<SendMessageRequest>,
) -> ApiResult<(StatusCode, Json<SendMessageResponse>)> {
    let sent = st
        .app
        .send_message(
            who,
            id,
            SendMessage {
                msg_type: req.msg_type,
                content: req.content,
                mentions: req.mentions.0,
                client_msg_id: req.client_msg_id,
                reply_to: req.reply_to,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(sent.into())))
}

/// GET /api/v1/channels/{id}/messages — history visible to me (from my join on).
#[utoipa::path(get, path = "/api/v1/channels/{id}/messages", tag = "messages", security(("bearer" = [])), params(("id" = inline(ChannelId), Path, description = "channel id"), MessagesQuery),
    responses((status = 200, body = MessagePage), (status = 403, description = "not a member of the channel", body = ErrorBody)))]
pub async fn messages<D: Database>(
    State(st): State<AppState<D>>,
    Auth(who): Auth,
    IdPath(id): IdPath<ChannelId>,
    Query(q): Query<MessagesQuery>,
) -> ApiResult<Json<MessagePage>> {
    let mut h = st.app.messages(who, id, q.before_seq, q.after_seq, q.limit).await?;
    let items = h.items.into_iter().map(|m| MessageDto::shown(m, &mut h.reactions, &h.quotes)).collect();
    Ok(Json(MessagePage { items, has_more: h.has_more, peer_read_seq: h.peer_read_seq }))
}

/// POST /api/v1/channels/{id}/messages/{messageId}/recall — recall a message for everyone.
#[utoipa::path(post, path = "/api/v1/channels/{id}/messages/{messageId}/recall", tag = "messages", security(("bearer" = [])),
    params(("id" = inline(ChannelId), Path, description = "channel id"), ("messageId" = inline(MessageId), Path, description = "message id")),
    responses((status = 200, description = "the message, recalled (also when it already was)", body = MessageDto),
        (status = 403, description = "not a member; or neither the sender nor, in a group, its owner or an admin", body = ErrorBody),
        (status = 404, description = "no such message in the channel, or before the caller joined", body = ErrorBody),
        (status = 409, description = "`channel_archived`", body = ErrorBody),
        (status = 422, description = "`recall_window_passed`", body = ErrorBody)))]
pub async fn recall<D: Database>(
    State(st): State<AppState<D>>,
    Auth(who): Auth,
    IdPath((id, message)): IdPath<(ChannelId, MessageId)>,
) -> ApiResult<Json<MessageDto>> {
    Ok(Json(st.app.recall_message(who, id, message).await?.into()))
}

/// PATCH /api/v1/channels/{id}/messages/{messageId} — edit my message.
#[utoipa::path(patch, path = "/api/v1/channels/{id}/messages/{messageId}", tag = "messages", security(("bearer" = [])),
    params(("id" = inline(ChannelId), Path, description = "channel id"), ("messageId" = inline(MessageId), Path, description = "message id")),
    request_body = EditMessageRequest,
    responses((status = 200, description = "the message as edited", body = MessageDto),
        (status = 403, description = "not a member; not the sender; `\"all\"` from a plain member", body = ErrorBody),
        (status = 404, description = "no such message in the channel, or before the caller joined", body = ErrorBody),
        (status = 409, description = "`message_recalled`, `channel_archived`", body = ErrorBody),
        (status = 422, description = "`edit_window_passed`, `content_not_of_type`", body = ErrorBody),
        (status = 429, description = "`rate_limited` (`sends_per_user`)", body = ErrorBody)))]
pub async fn edit<D: Database>(
    State(st): State<AppState<D>>,
    Auth(who): Auth,
    IdPath((id, message)): IdPath<(ChannelId, MessageId)>,
    Json(req): Json<EditMessageRequest>,
) -> ApiResult<Json<MessageDto>> {
    let edit = EditMessage { content: req.content, mentions: req.mentions.map(|m| m.0) };
    Ok(Json(st.app.edit_message(who, id, message, edit).await?.into()))
}

/// DELETE /api/v1/channels/{id}/messages/{messageId} — delete a message for me only.
#[utoipa::path(delete, path = "/api/v1/channels/{id}/messages/{messageId}", tag = "messages", security(("bearer" = [])),
    params(("id" = inline(ChannelId), Path, description = "channel id"), ("messageId" = inline(MessageId), Path, description = "message id")),
    responses((status = 204, description = "gone from my history and preview (also when it already was)"),
        (status = 403, description = "not a member of the channel", body = ErrorBody),
        (status = 404, description = "no such message in the channel, or before the caller joined", body = ErrorBody),
        (status = 409, description = "`channel_archived`", body = ErrorBody)))]
pub async fn delete_for_me<D: Database>(
    State(st): State<AppState<D>>,
    Auth(who): Auth,
    IdPath((id, message)): IdPath<(ChannelId, MessageId)>,
) -> ApiResult<StatusCode> {
    st.app.delete_message_for_me(who, id, message).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// PUT /api/v1/channels/{id}/messages/{messageId}/reactions/{emoji} — react to a message.
#[utoipa::path(put, path = "/api/v1/channels/{id}/messages/{messageId}/reactions/{emoji}", tag = "messages", security(("bearer" = [])),
    params(("id" = inline(ChannelId), Path, description = "channel id"), ("messageId" = inline(MessageId), Path, description = "message id"),
        ("emoji" = inline(Emoji), Path, description = "the reaction (percent-encoded)")),
    responses((status = 200, description = "the message's reactions (also when mine was there already)", body = Reactions),
        (status = 400, description = "`emoji` is not a reaction", body = ErrorBody),
        (status = 403, description = "not a member of the channel", body = ErrorBody),
        (status = 404, description = "no such message in the channel, or before the caller joined", body = ErrorBody),
        (status = 409, description = "`message_recalled`, `channel_archived`", body = ErrorBody),
        (status = 422, description = "`too_many_reactions`", body = ErrorBody),
        (status = 429, description = "`rate_limited` (`sends_per_user`)", body = ErrorBody)))]
pub async fn react<D: Database>(
    State(st): State<AppState<D>>,
    Auth(who): Auth,
    IdPath((id, message, emoji)): IdPath<(ChannelId, MessageId, String)>,
) -> ApiResult<Json<Reactions>> {
    let reactions = st.app.react(who, id, message, &emoji, true).await?;
    Ok(Json(Reactions { message_id: message, reactions: reactions.into_iter().map(Into::into).collect() }))
}

/// DELETE /api/v1/channels/{id}/messages/{messageId}/reactions/{emoji} — take my reaction back.
#[utoipa::path(delete, path = "/api/v1/channels/{id}/messages/{messageId}/reactions/{emoji}", tag = "messages", security(("bearer" = [])),
    params(("id" = inline(ChannelId), Path, description = "channel id"), ("messageId" = inline(MessageId), Path, description = "message id"),
        ("emoji" = inline(Emoji), Path, description = "the reaction (percent-encoded)")),
    responses((status = 200, description = "the message's reactions (also when mine was not there)", body = Reactions),
        (status = 400, description = "`emoji` is not a reaction", body = ErrorBody),
        (status = 403, description = "not a member of the channel", body = ErrorBody),
        (status = 404, description = "no such message in the channel, or before the caller joined", body = ErrorBody),
        (status = 409, description = "`message_recalled`, `channel_archived`", body = ErrorBody),
        (status = 429, description = "`rate_limited` (`sends_per_user`)", body = ErrorBody)))]
pub async fn unreact<D: Database>(
    State(st): State<AppState<D>>,
    Auth(who): Auth,
    IdPath((id, message, emoji)): IdPath<(ChannelId, MessageId, String)>,
) -> ApiResult<Json<Reactions>> {
    let reactions = st.app.react(who, id, message, &emoji, false).await?;
    Ok(Json(Reactions { message_id: message, reactions: reactions.into_iter().map(Into::into).collect() }))
}

/// Read receipts of a message.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptsDto {
    pub message_id: MessageId,
    /// Members who joined before the message (the sender aside) and have read it.
    pub read_count: i64,
    /// Who they are, by user id; `null` in a large group (the count only).
    pub readers: Option<Vec<UserId>>,
    pub next_cursor: Option<String>,
}

/// GET /api/v1/channels/{id}/messages/{messageId}/receipts — who has read a message.
#[utoipa::path(get, path = "/api/v1/channels/{id}/messages/{messageId}/receipts", tag = "messages", security(("bearer" = [])),
    params(("id" = inline(ChannelId), Path, description = "channel id"), ("messageId" = inline(MessageId), Path, description = "message id"), PageQuery),
    responses((status = 200, body = ReceiptsDto),
        (status = 403, description = "not a member of the channel", body = ErrorBody),
        (status = 404, description = "no such message in the channel, or before the caller joined", body = ErrorBody)))]
pub async fn receipts<D: Database>(
    State(st): State<AppState<D>>,
    Auth(who): Auth,
    IdPath((id, message)): IdPath<(ChannelId, MessageId)>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<ReceiptsDto>> {
    let r = st.app.receipts(who, id, message, q.cursor.as_deref(), q.limit).await?;
    let (readers, next_cursor) = match r.readers {
        Some(page) => (Some(page.items), page.next_cursor),
        None => (None, None),
    };
    Ok(Json(ReceiptsDto { message_id: message, read_count: r.read_count, readers, next_cursor }))
}

/// GET /api/v1/channels/{id}/messages/{messageId}/versions — every version of a message.
#[utoipa::path(get, path = "/api/v1/channels/{id}/messages/{messageId}/versions", tag = "messages", security(("bearer" = [])),
    params(("id" = inline(ChannelId), Path, description = "channel id"), ("messageId" = inline(MessageId), Path, description = "message id")),
    responses((status = 200, body = MessageVersions),
        (status = 403, description = "not a member of the channel", body = ErrorBody),
        (status = 404, description = "no such message in the channel, or before the caller joined", body = ErrorBody)))]
pub async fn versions<D: Database>(
    State(st): State<AppState<D>>,
    Auth(who): Auth,
    IdPath((id, message)): IdPath<(ChannelId, MessageId)>,
) -> ApiResult<Json<MessageVersions>> {
    let items = st.app.message_versions(who, id, message).await?;
    Ok(Json(MessageVersions {
        items: items
            .into_iter()
            .map(|v| MessageVersionDto {
                version: v.version,
                content: v.content,
                mentions: v.mentions,
                mention_all: v.mention_all,
                written_at: v.written_at,
            })
            .collect(),
    }))
}

/// `POST /messages/forward`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ForwardRequest {
    /// Messages the caller can read, 1 to 20 (a repeat counts once); sent on in the order
    /// they were sent.
    #[schema(min_items = 1, max_items = 20)]
    pub message_ids: Vec<MessageId>,
    /// Channels the caller is a member of, 1 to 20 (a repeat counts once).
    #[schema(min_items = 1, max_items = 20)]
    pub channel_ids: Vec<ChannelId>,
}

/// What a forward did in one target channel.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ForwardResult {
    pub channel_id: ChannelId,
    /// The new messages, in order.
    pub messages: Vec<SendMessageResponse>,
    /// Why the rest were not sent there (the peer blocked the caller, the group was
    /// dismissed meanwhile…); `null` when all were.
    pub error: Option<crate::error::ErrorDetail>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ForwardResults {
    /// One per target channel, in the order asked.
    pub items: Vec<ForwardResult>,
}

/// POST /api/v1/messages/forward — forward messages to channels.
#[utoipa::path(post, path = "/api/v1/messages/forward", tag = "messages", security(("bearer" = [])), request_body = ForwardRequest,
    responses((status = 200, description = "each target channel's new messages, and the refusal that stopped one, if any", body = ForwardResults),
        (status = 400, description = "`validation_failed`: an empty or too long list", body = ErrorBody),
        (status = 403, description = "not a member of a target channel", body = ErrorBody),
        (status = 404, description = "no such target channel", body = ErrorBody),
        (status = 409, description = "`message_recalled`", body = ErrorBody),
        (status = 422, description = "`unknown_message`: messages the caller cannot read, listed in `details`", body = ErrorBody),
        (status = 429, description = "`rate_limited` (`sends_per_user`, `sends_per_channel`)", body = ErrorBody)))]
pub async fn forward<D: Database>(
    State(st): State<AppState<D>>,
    Auth(who): Auth,
    Json(req): Json<ForwardRequest>,
) -> ApiResult<Json<ForwardResults>> {
    let done = st.app.forward(who, req.message_ids, req.channel_ids).await?;
    let items = done
        .into_iter()
        .map(|f| ForwardResult {
            channel_id: f.channel_id,
            messages: f.sent.into_iter().map(Into::into).collect(),
            error: f.error.as_ref().map(crate::error::detail),
        })
        .collect();
    Ok(Json(ForwardResults { items }))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MessageSearchParams {
    pub q: String,
    pub channel_id: Option<ChannelId>,
    pub sender_id: Option<UserId>,
    pub before: Option<i64>,
    pub after: Option<i64>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

/// Written out: `q` is required and has the text schema.
impl IntoParams for MessageSearchParams {
    fn into_params(
        parameter_in: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        use utoipa::openapi::Required;
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        let param = |name: &str, required: Required, description: &str, schema: RefOr<Schema>| {
            ParameterBuilder::new()
                .name(name)
                .parameter_in(parameter_in().unwrap_or(ParameterIn::Query))
                .required(required)
                .description(Some(description))
                .schema(Some(schema))
                .build()
        };
        let string = || ObjectBuilder::new().schema_type(SchemaType::Type(Type::String)).into();
        let time = || {
            ObjectBuilder::new()
                .schema_type(SchemaType::Type(Type::Integer))
                .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Int64)))
                .minimum(Some(0))
                .maximum(Some(i64::MAX))
                .into()
        };
        let limit =
            ObjectBuilder::new().schema_type(SchemaType::Type(Type::Integer)).minimum(Some(1)).maximum(Some(200));
        let q = hermet_domain::validate::schema::text(message::SEARCH_MAX_CHARS, false, false).build();
        vec![
            param("q", Required::True, "The text to find (1 to 100 characters; case is ignored).", q.into()),
            param(
                "channelId",
                Required::False,
                "Only this channel (one I am a member of).",
                <ChannelId as utoipa::PartialSchema>::schema(),
            ),
            param(
                "senderId",
                Required::False,
                "Only messages of this sender.",
                <UserId as utoipa::PartialSchema>::schema(),
            ),
            param("before", Required::False, "Only messages sent before this time (ms).", time()),
            param("after", Required::False, "Only messages sent after this time (ms).", time()),
            param("cursor", Required::False, "`nextCursor` of the previous page (opaque).", string()),
            param("limit", Required::False, "Page size, 1 to 200; default 50.", limit.into()),
        ]
    }
}

/// A search result.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SearchHit {
    /// The message (its quote if a reply; no reactions: history has them).
    pub message: MessageDto,
    /// Where the text occurs in `message.content.text`: `[start, end)` offsets in
    /// characters (Unicode code points), left to right.
    pub highlights: Vec<[usize; 2]>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SearchPage {
    /// Newest first.
    pub items: Vec<SearchHit>,
    pub next_cursor: Option<String>,
}

/// GET /api/v1/messages/search — find text messages I can read.
#[utoipa::path(get, path = "/api/v1/messages/search", tag = "messages", security(("bearer" = [])), params(MessageSearchParams),
    responses((status = 200, body = SearchPage),
        (status = 403, description = "`channelId` names a channel the caller is not a member of", body = ErrorBody),
        (status = 404, description = "`channelId` names no channel", body = ErrorBody),
        (status = 429, description = "`rate_limited` (`searches_per_user`)", body = ErrorBody)))]
pub async fn search<D: Database>(
    State(st): State<AppState<D>>,
    Auth(who): Auth,
    Query(p): Query<MessageSearchParams>,
) -> ApiResult<Json<SearchPage>> {
    let search = hermet_app::messages::Search {
        q: p.q,
        channel: p.channel_id,
        sender: p.sender_id,
        before: p.before,
        after: p.after,
        cursor: p.cursor,
        limit: p.limit,
    };
    let page = st.app.search(who, search).await?;
    let items = page
        .items
        .into_iter()
        .map(|f| {
            let mut message = MessageDto::from(f.message);
            message.reply_to = f.quote.map(Into::into);
            SearchHit { message, highlights: f.highlights.into_iter().map(|(a, b)| [a, b]).collect() }
        })
        .collect();
    Ok(Json(SearchPage { items, next_cursor: page.next_cursor }))
}

/// A pinned message.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PinDto {
    pub message: MessageDto,
    pub pinned_by: UserId,
    pub pinned_at: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Pins {
    /// Newest pin first; at most 50, so one page.
    pub items: Vec<PinDto>,
}

/// PUT /api/v1/channels/{id}/pins/{messageId} — pin a message in its channel.
#[utoipa::path(put, path = "/api/v1/channels/{id}/pins/{messageId}", tag = "messages", security(("bearer" = [])),
    params(("id" = inline(ChannelId), Path, description = "channel id"), ("messageId" = inline(MessageId), Path, description = "message id")),
    responses((status = 204, description = "pinned (also when it already was)"),
        (status = 403, description = "not a member; in a group, not its owner or an admin", body = ErrorBody),
        (status = 404, description = "no such message in the channel, or before the caller joined", body = ErrorBody),
        (status = 409, description = "`message_recalled`, `channel_archived`", body = ErrorBody),
        (status = 422, description = "`too_many_pins`", body = ErrorBody)))]
pub async fn pin<D: Database>(
    State(st): State<AppState<D>>,
    Auth(who): Auth,
    IdPath((id, message)): IdPath<(ChannelId, MessageId)>,
) -> ApiResult<StatusCode> {
    st.app.pin_message(who, id, message, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// DELETE /api/v1/channels/{id}/pins/{messageId} — unpin a message.
#[utoipa::path(delete, path = "/api/v1/channels/{id}/pins/{messageId}", tag = "messages", security(("bearer" = [])),
    params(("id" = inline(ChannelId), Path, description = "channel id"), ("messageId" = inline(MessageId), Path, description = "message id")),
    responses((status = 204, description = "not pinned (also when it was not)"),
        (status = 403, description = "not a member; in a group, not its owner or an admin", body = ErrorBody),
        (status = 404, description = "no such message in the channel, or before the caller joined", body = ErrorBody),
        (status = 409, description = "`channel_archived`", body = ErrorBody)))]
pub async fn unpin<D: Database>(
    State(st): State<AppState<D>>,
    Auth(who): Auth,
    IdPath((id, message)): IdPath<(ChannelId, MessageId)>,
) -> ApiResult<StatusCode> {
    st.app.pin_message(who, id, message, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// GET /api/v1/channels/{id}/pins — the channel's pinned messages.
#[utoipa::path(get, path = "/api/v1/channels/{id}/pins", tag = "messages", security(("bearer" = [])),
    params(("id" = inline(ChannelId), Path, description = "channel id")),
    responses((status = 200, body = Pins), (status = 403, description = "not a member of the channel", body = ErrorBody)))]
pub async fn pins<D: Database>(
    State(st): State<AppState<D>>,
    Auth(who): Auth,
    IdPath(id): IdPath<ChannelId>,
) -> ApiResult<Json<Pins>> {
    let mut pins = st.app.pins(who, id).await?;
    let items = pins
        .items
        .into_iter()
        .map(|p| PinDto {
            message: MessageDto::shown(p.message, &mut pins.reactions, &pins.quotes),
            pinned_by: p.pinned_by,
            pinned_at: p.pinned_at,
        })
        .collect();
    Ok(Json(Pins { items }))
}

/// POST /api/v1/channels/{id}/read — I have read up to `seq`.
#[utoipa::path(post, path = "/api/v1/channels/{id}/read", tag = "messages", security(("bearer" = [])), params(("id" = inline(ChannelId), Path, description = "channel id")), request_body = ReadRequest,
    responses((status = 200, body = ConversationDto), (status = 403, description = "not a member of the channel", body = ErrorBody)))]
pub async fn read<D: Database>(
    State(st): State<AppState<D>>,
    Auth(who): Auth,
    IdPath(id): IdPath<ChannelId>,
    Json(req): Json<ReadRequest>,
) -> ApiResult<Json<ConversationDto>> {
    if req.seq < 0 {
        return Err(Error::invalid("seq", "seq must not be negative").into());
    }
    Ok(Json(st.app.mark_read(who, id, req.seq).await?.into()))
}
