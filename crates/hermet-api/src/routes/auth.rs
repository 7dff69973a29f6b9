//! `/api/v1/auth/*`: sign-up, sign-in, refresh-token rotation, sign-out.

use axum::extract::State;
use axum::http::StatusCode;
use hermet_app::auth::{IssuedTokens, SignUp};
use hermet_app::rate_limits::{Key, Limit};
use hermet_domain::id::UserId;
use hermet_domain::user::AccountType;
use hermet_domain::validate::schema;
use hermet_store::Database;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, SchemaType, Type};
use utoipa::openapi::{RefOr, Schema};

use crate::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Auth, ClientIp, Json, UserAgent};
use crate::schemas;

/// The document's schema is [`SignUpRequest::schema`]'s: one shape per `accountType`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignUpRequest {
    /// An e-mail address or an E.164 mobile number, per `accountType`.
    pub account: String,
    pub account_type: AccountType,
    /// The password, 8 to 128 characters.
    pub credential: String,
    /// 1 to 64 characters.
    pub nickname: String,
    /// Avatar URL, at most 256 characters.
    #[serde(default)]
    pub avatar: Option<String>,
}

/// `account` and `accountType` as the sign-up's, or anything: an account that cannot exist
/// is an unknown account (401).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignInRequest {
    pub account: String,
    pub account_type: AccountType,
    #[schema(schema_with = schemas::credential)]
    pub credential: String,
}

/// An e-mail address (at most 254 characters) with `accountType: email`, or an E.164
/// mobile number with `accountType: mobile`; the password 8 to 128 characters; the
/// nickname 1 to 64 with a visible character.
impl utoipa::PartialSchema for SignUpRequest {
    fn schema() -> RefOr<Schema> {
        let shape = |account_type: &str, account: ObjectBuilder| {
            schemas::object([
                ("account", account.into(), true),
                ("accountType", schemas::one_of_strings(&[account_type]), true),
                ("credential", schemas::password().into(), true),
                ("nickname", schemas::nickname().into(), true),
                ("avatar", schemas::avatar().into(), false),
            ])
        };
        let string = || ObjectBuilder::new().schema_type(SchemaType::Type(Type::String));
        let email = string().pattern(Some(schema::EMAIL_PATTERN)).max_length(Some(254));
        let mobile = string().pattern(Some(schema::MOBILE_PATTERN));
        OneOfBuilder::new()
            .item(shape("email", email))
            .item(shape("mobile", mobile))
            .description(Some("One shape per `accountType`."))
            .into()
    }
}

impl ToSchema for SignUpRequest {}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenResponse {
    pub user_id: UserId,
    /// JWT for `Authorization: Bearer …` (or the `x-access-token` header).
    pub access_token: String,
    /// Single-use: each refresh returns a new one and retires this one.
    pub refresh_token: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    pub token_type: &'static str,
}

impl From<IssuedTokens> for TokenResponse {
    fn from(t: IssuedTokens) -> Self {
        Self {
            user_id: t.user_id,
            access_token: t.access_token,
            refresh_token: t.refresh_token,
            expires_in: t.expires_in,
            token_type: "Bearer",
        }
    }
}

/// POST /api/v1/auth/sign-up — create an account and a first session.
#[utoipa::path(post, path = "/api/v1/auth/sign-up", tag = "auth", request_body = SignUpRequest,
    responses((status = 201, body = TokenResponse), (status = 409, description = "`account_taken`", body = ErrorBody),
        (status = 429, description = "`rate_limited` (`sign_up_per_ip`)", body = ErrorBody)))]
pub async fn sign_up<D: Database>(
    State(st): State<AppState<D>>,
    UserAgent(ua): UserAgent,
    ClientIp(ip): ClientIp,
    Json(req): Json<SignUpRequest>,
) -> ApiResult<(StatusCode, Json<TokenResponse>)> {
    st.app.rate_limit(Limit::SignUpPerIp, Key::Ip(ip)).await?;
    let tokens = st
        .app
        .sign_up(SignUp {
            account_type: req.account_type,
            account: req.account,
            credential: req.credential,
            nickname: req.nickname,
            avatar: req.avatar,
            user_agent: ua,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(tokens.into())))
}

/// POST /api/v1/auth/sign-in — wrong account or wrong password: the same 401.
#[utoipa::path(post, path = "/api/v1/auth/sign-in", tag = "auth", request_body = SignInRequest,
    responses((status = 200, body = TokenResponse), (status = 401, description = "`invalid_credentials`, `account_disabled`", body = ErrorBody),
        (status = 429, description = "`rate_limited` (`sign_in_per_ip`, `sign_in_failures_per_account`)", body = ErrorBody)))]
pub async fn sign_in<D: Database>(
    State(st): State<AppState<D>>,
    UserAgent(ua): UserAgent,
    ClientIp(ip): ClientIp,
    Json(req): Json<SignInRequest>,
) -> ApiResult<Json<TokenResponse>> {
    st.app.rate_limit(Limit::SignInPerIp, Key::Ip(ip)).await?;
    let tokens = st.app.sign_in(req.account_type, &req.account, req.credential, ua).await?;
    Ok(Json(tokens.into()))
}

/// POST /api/v1/auth/refresh-token — rotate the refresh token; reuse of a rotated-out
/// token revokes the session.
#[utoipa::path(post, path = "/api/v1/auth/refresh-token", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = TokenResponse), (status = 401, description = "`invalid_refresh_token`, `refresh_token_reused`, `account_disabled`", body = ErrorBody),
        (status = 429, description = "`rate_limited` (`refresh_per_ip`)", body = ErrorBody)))]
pub async fn refresh_token<D: Database>(
    State(st): State<AppState<D>>,
    ClientIp(ip): ClientIp,
    Json(req): Json<RefreshRequest>,
) -> ApiResult<Json<TokenResponse>> {
    st.app.rate_limit(Limit::RefreshPerIp, Key::Ip(ip)).await?;
    Ok(Json(st.app.refresh(&req.refresh_token).await?.into()))
}

/// POST /api/v1/auth/sign-out — revoke the caller's session at once.
#[utoipa::path(post, path = "/api/v1/auth/sign-out", tag = "auth", security(("bearer" = [])),
    responses((status = 204)))]
pub async fn sign_out<D: Database>(State(st): State<AppState<D>>, Auth(who): Auth) -> ApiResult<StatusCode> {
    st.app.sign_out(who).await?;
    // this node's sockets of the session close now (other nodes: not yet, see docs/PROTOCOL.md)
    if let Err(e) = st.cluster.revoke(who.user_id, Some(who.session_id)).await {
        tracing::warn!(error = %e, "cannot close the session's sockets on other nodes");
    }
    Ok(StatusCode::NO_CONTENT)
}
