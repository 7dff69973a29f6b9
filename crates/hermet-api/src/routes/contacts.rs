//! `/api/v1/contacts/*`: friend applications and the contact list.

use axum::extract::State;
use axum::http::StatusCode;
use hermet_app::contacts::ContactChanges;
use hermet_domain::contact::{ApplicationStatus, ContactApplication, FriendSource};
use hermet_domain::id::{ApplicationId, ChannelId, UserId};
use hermet_store::{ContactRow, Database};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Auth, IdPath, Json, Query};
use crate::schemas;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApplyRequest {
    pub contact_id: UserId,
    #[serde(default)]
    #[schema(schema_with = schemas::application_message)]
    pub message: String,
    /// How you found them (default `search`).
    #[serde(default = "default_source")]
    pub source: FriendSource,
}

fn default_source() -> FriendSource {
    FriendSource::Search
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationDto {
    pub id: ApplicationId,
    pub applicant_id: UserId,
    pub target_id: UserId,
    pub message: String,
    pub source: FriendSource,
    pub status: ApplicationStatus,
    pub created_at: i64,
    pub updated_at: i64,
    pub reviewed_at: Option<i64>,
}

impl From<ContactApplication> for ApplicationDto {
    fn from(a: ContactApplication) -> Self {
        Self {
            id: a.id,
            applicant_id: a.applicant_id,
            target_id: a.target_id,
            message: a.message,
            source: a.source,
            status: a.status,
            created_at: a.created_at,
            updated_at: a.updated_at,
            reviewed_at: a.reviewed_at,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    #[default]
    Incoming,
    Outgoing,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ApplicationsQuery {
    /// `incoming` (default: applications to me) or `outgoing`.
    #[param(inline)]
    pub direction: Option<Direction>,
    pub status: Option<ApplicationStatus>,
    /// `nextCursor` of the previous page (opaque).
    pub cursor: Option<String>,
    /// Page size, 1 to 200; default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// An application in the list, with both users' nicknames and avatars as they are now.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationListItem {
    #[serde(flatten)]
    pub application: ApplicationDto,
    pub applicant_nickname: String,
    pub applicant_avatar: String,
    pub target_nickname: String,
    pub target_avatar: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationPage {
    pub items: Vec<ApplicationListItem>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AcceptResponse {
    /// The pair's one-to-one channel.
    pub channel_id: ChannelId,
    pub contact_id: UserId,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContactDto {
    pub contact_id: UserId,
    pub nickname: String,
    pub avatar: String,
    /// The contact's profile version.
    pub info_ver: i64,
    pub remark_name: String,
    /// Remark if set, else nickname.
    pub display_name: String,
    /// First letter of the display name (A–Z, else `#`).
    pub initial: String,
    pub group_name: String,
    pub tags: Vec<String>,
    pub is_starred: bool,
    pub is_blocked: bool,
    pub source: String,
    pub added_at: i64,
}

impl From<ContactRow> for ContactDto {
    fn from(c: ContactRow) -> Self {
        let display_name = if c.remark_name.is_empty() { c.contact_nickname.clone() } else { c.remark_name.clone() };
        Self {
            contact_id: c.contact_id,
            nickname: c.contact_nickname,
            avatar: c.contact_avatar,
            info_ver: c.contact_info_ver,
            remark_name: c.remark_name,
            display_name,
            initial: c.initial,
            group_name: c.group_name,
            tags: serde_json::from_value(c.tags).unwrap_or_default(),
            is_starred: c.is_starred,
            is_blocked: c.is_blocked,
            source: c.source,
            added_at: c.added_at,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ContactsQuery {
    /// Only this contact group.
    #[param(schema_with = schemas::contact_group_filter)]
    pub group: Option<String>,
    /// Only display names starting with this letter (A–Z or `#`).
    #[param(schema_with = schemas::initial)]
    pub initial: Option<String>,
    /// `nextCursor` of the previous page (opaque).
    pub cursor: Option<String>,
    /// Page size, 1 to 200; default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContactPage {
    pub items: Vec<ContactDto>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateContactRequest {
    #[schema(schema_with = schemas::remark)]
    pub remark_name: Option<String>,
    #[schema(schema_with = schemas::contact_group)]
    pub group_name: Option<String>,
    /// At most 20, each 1 to 32 characters; repeats are kept once.
    #[schema(schema_with = schemas::tags)]
    pub tags: Option<Vec<String>>,
    pub is_starred: Option<bool>,
    pub is_blocked: Option<bool>,
}

/// POST /api/v1/contacts/applications — ask someone to be friends.
#[utoipa::path(post, path = "/api/v1/contacts/applications", tag = "contacts", security(("bearer" = [])), request_body = ApplyRequest,
    responses((status = 201, body = ApplicationDto), (status = 404, description = "no such active user", body = ErrorBody),
        (status = 409, description = "`already_friends`, `application_pending`", body = ErrorBody), (status = 422, description = "`cannot_add_self`", body = ErrorBody),
        (status = 429, description = "`rate_limited` (`applications_per_user`)", body = ErrorBody)))]
pub async fn apply<D: Database>(
    State(st): State<AppState<D>>,
    Auth(who): Auth,
    Json(req): Json<ApplyRequest>,
) -> ApiResult<(StatusCode, Json<ApplicationDto>)> {
    let a = st.app.apply_contact(who, req.contact_id, &req.message, req.source).await?;
    Ok((StatusCode::CREATED, Json(a.into())))
}

/// GET /api/v1/contacts/applications — my incoming or outgoing applications.
#[utoipa::path(get, path = "/api/v1/contacts/applications", tag = "contacts", security(("bearer" = [])), params(ApplicationsQuery),
    responses((status = 200, body = ApplicationPage)))]
pub async fn applications<D: Database>(
    State(st): State<AppState<D>>,
    Auth(who): Auth,
    Query(q): Query<ApplicationsQuery>,
) -> ApiResult<Json<ApplicationPage>> {
    let incoming = matches!(q.direction.unwrap_or_default(), Direction::Incoming);
    let page = st.app.contact_applications(who, incoming, q.status, q.cursor.as_deref(), q.limit).await?;
    let ids: Vec<UserId> = page.items.iter().flat_map(|a| [a.applicant_id, a.target_id]).collect();
    let users = st.app.profiles_by_id(&ids).await?;
    let of = |id: UserId| users.get(&id).map(|u| (u.nickname.clone(), u.avatar.clone())).unwrap_or_default();
    let items = page
        .items
        .into_iter()
        .map(|a| {
            let ((applicant_nickname, applicant_avatar), (target_nickname, target_avatar)) =
                (of(a.applicant_id), of(a.target_id));
            ApplicationListItem {
                application: a.into(),
                applicant_nickname,
                applicant_avatar,
                target_nickname,
                target_avatar,
            }
        })
        .collect();
    Ok(Json(ApplicationPage { items, next_cursor: page.next_cursor }))
}

/// POST /api/v1/contacts/applications/{id}/accept — become friends (target only).
#[utoipa::path(post, path = "/api/v1/contacts/applications/{id}/accept", tag = "contacts", security(("bearer" = [])), params(("id" = inline(ApplicationId), Path, description = "application id")),
    responses((status = 200, body = AcceptResponse), (status = 409, description = "`application_not_pending`", body = ErrorBody), (status = 422, description = "`applicant_inactive`", body = ErrorBody)))]
pub async fn accept<D: Database>(
    State(st): State<AppState<D>>,
    Auth(who): Auth,
    IdPath(id): IdPath<ApplicationId>,
) -> ApiResult<Json<AcceptResponse>> {
    let f = st.app.accept_contact(who, id).await?;
    Ok(Json(AcceptResponse { channel_id: f.channel_id, contact_id: f.contact_id }))
}

/// POST /api/v1/contacts/applications/{id}/reject — decline (target only).
#[utoipa::path(post, path = "/api/v1/contacts/applications/{id}/reject", tag = "contacts", security(("bearer" = [])), params(("id" = inline(ApplicationId), Path, description = "application id")),
    responses((status = 200, body = ApplicationDto), (status = 409, description = "`application_not_pending`", body = ErrorBody)))]
pub async fn reject<D: Database>(
    State(st): State<AppState<D>>,
    Auth(who): Auth,
    IdPath(id): IdPath<ApplicationId>,
) -> ApiResult<Json<ApplicationDto>> {
    Ok(Json(st.app.reject_contact(who, id).await?.into()))
}

/// GET /api/v1/contacts — my contacts: starred first, then by display name.
#[utoipa::path(get, path = "/api/v1/contacts", tag = "contacts", security(("bearer" = [])), params(ContactsQuery),
    responses((status = 200, body = ContactPage)))]
pub async fn list<D: Database>(
    State(st): State<AppState<D>>,
    Auth(who): Auth,
    Query(q): Query<ContactsQuery>,
) -> ApiResult<Json<ContactPage>> {
    let page = st.app.contacts(who, q.group, q.initial, q.cursor.as_deref(), q.limit).await?;
    Ok(Json(ContactPage { items: page.items.into_iter().map(Into::into).collect(), next_cursor: page.next_cursor }))
}

/// PATCH /api/v1/contacts/{contactId} — remark, group, tags, star, block.
#[utoipa::path(patch, path = "/api/v1/contacts/{contactId}", tag = "contacts", security(("bearer" = [])), params(("contactId" = inline(UserId), Path, description = "the contact's user id")),
    request_body = UpdateContactRequest, responses((status = 200, body = ContactDto)))]
pub async fn update<D: Database>(
    State(st): State<AppState<D>>,
    Auth(who): Auth,
    IdPath(contact): IdPath<UserId>,
    Json(req): Json<UpdateContactRequest>,
) -> ApiResult<Json<ContactDto>> {
    let changes = ContactChanges {
        remark_name: req.remark_name,
        group_name: req.group_name,
        tags: req.tags,
        is_starred: req.is_starred,
        is_blocked: req.is_blocked,
    };
    Ok(Json(st.app.update_contact(who, contact, changes).await?.into()))
}

/// DELETE /api/v1/contacts/{contactId} — remove a friend (my side).
#[utoipa::path(delete, path = "/api/v1/contacts/{contactId}", tag = "contacts", security(("bearer" = [])), params(("contactId" = inline(UserId), Path, description = "the contact's user id")),
    responses((status = 204)))]
pub async fn delete<D: Database>(
    State(st): State<AppState<D>>,
    Auth(who): Auth,
    IdPath(contact): IdPath<UserId>,
) -> ApiResult<StatusCode> {
    st.app.delete_contact(who, contact).await?;
    Ok(StatusCode::NO_CONTENT)
}
