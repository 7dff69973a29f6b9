//! `/api/v1/admin/*`: bulk user creation and user lock-out. Admins only (accounts listed
//! in `admin_accounts`).

use axum::extract::State;
use axum::http::StatusCode;
use hermet_app::admin::BulkUser;
use hermet_domain::id::UserId;
use hermet_domain::user::{AccountType, UserStatus};
use hermet_store::Database;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Auth, IdPath, Json};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BulkUserItem {
    pub account: String,
    pub account_type: AccountType,
    /// Omit to create an account that cannot sign in with a password.
    #[serde(default)]
    pub credential: Option<String>,
    pub nickname: String,
    #[serde(default)]
    pub avatar: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BulkCreateRequest {
    pub users: Vec<BulkUserItem>,
    /// Also open a session per user and return its tokens.
    #[serde(default)]
    pub issue_tokens: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedUserItem {
    pub user_id: UserId,
    pub account: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BulkCreateResponse {
    pub users: Vec<CreatedUserItem>,
}

/// POST /api/v1/admin/users — create many users in one transaction.
#[utoipa::path(post, path = "/api/v1/admin/users", tag = "admin", security(("bearer" = [])), request_body = BulkCreateRequest,
    responses((status = 201, body = BulkCreateResponse), (status = 403, description = "not an administrator", body = ErrorBody), (status = 409, description = "`account_taken`", body = ErrorBody)))]
pub async fn bulk_create<D: Database>(
    State(st): State<AppState<D>>,
    Auth(who): Auth,
    Json(req): Json<BulkCreateRequest>,
) -> ApiResult<(StatusCode, Json<BulkCreateResponse>)> {
    let users = req
        .users
        .into_iter()
        .map(|u| BulkUser {
            account_type: u.account_type,
            account: u.account,
            credential: u.credential,
            nickname: u.nickname,
            avatar: u.avatar,
        })
        .collect();
    let created = st.app.bulk_create_users(who, users, req.issue_tokens).await?;
    let users = created
        .into_iter()
        .map(|c| {
            let (access_token, refresh_token) = match c.tokens {
                Some(t) => (Some(t.access_token), Some(t.refresh_token)),
                None => (None, None),
            };
            CreatedUserItem { user_id: c.user_id, account: c.account, access_token, refresh_token }
        })
        .collect();
    Ok((StatusCode::CREATED, Json(BulkCreateResponse { users })))
}

async fn set_status<D: Database>(
    st: AppState<D>,
    who: hermet_app::Principal,
    id: UserId,
    status: UserStatus,
) -> ApiResult<StatusCode> {
    st.app.set_user_status(who, id, status).await?;
    if status != UserStatus::Active
        && let Err(e) = st.cluster.revoke(id, None).await
    {
        tracing::warn!(error = %e, "cannot close the user's sockets on other nodes");
    }
    Ok(StatusCode::NO_CONTENT)
}

/// POST /api/v1/admin/users/{id}/disable — lock a user out; their sessions end now.
#[utoipa::path(post, path = "/api/v1/admin/users/{id}/disable", tag = "admin", security(("bearer" = [])), params(("id" = inline(UserId), Path, description = "user id")),
    responses((status = 204), (status = 403, description = "not an administrator", body = ErrorBody), (status = 422, description = "`cannot_lock_out_self`", body = ErrorBody)))]
pub async fn disable<D: Database>(
    State(st): State<AppState<D>>,
    Auth(who): Auth,
    IdPath(id): IdPath<UserId>,
) -> ApiResult<StatusCode> {
    set_status(st, who, id, UserStatus::Disabled).await
}

/// POST /api/v1/admin/users/{id}/enable — let a disabled user sign in again.
#[utoipa::path(post, path = "/api/v1/admin/users/{id}/enable", tag = "admin", security(("bearer" = [])), params(("id" = inline(UserId), Path, description = "user id")),
    responses((status = 204), (status = 403, description = "not an administrator", body = ErrorBody), (status = 422, description = "`cannot_lock_out_self`", body = ErrorBody)))]
pub async fn enable<D: Database>(
    State(st): State<AppState<D>>,
    Auth(who): Auth,
    IdPath(id): IdPath<UserId>,
) -> ApiResult<StatusCode> {
    set_status(st, who, id, UserStatus::Active).await
}

/// DELETE /api/v1/admin/users/{id} — delete a user; the account may be registered again.
#[utoipa::path(delete, path = "/api/v1/admin/users/{id}", tag = "admin", security(("bearer" = [])), params(("id" = inline(UserId), Path, description = "user id")),
    responses((status = 204), (status = 403, description = "not an administrator", body = ErrorBody), (status = 422, description = "`cannot_lock_out_self`", body = ErrorBody)))]
pub async fn delete<D: Database>(
    State(st): State<AppState<D>>,
    Auth(who): Auth,
    IdPath(id): IdPath<UserId>,
) -> ApiResult<StatusCode> {
    set_status(st, who, id, UserStatus::Deleted).await
}
