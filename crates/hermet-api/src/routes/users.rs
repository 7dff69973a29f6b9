//! `/api/v1/users/*`: my profile, public profiles, user search.

use axum::extract::State;
use hermet_app::users::ProfileChanges;
use hermet_domain::id::UserId;
use hermet_domain::user::{Gender, User, UserStatus};
use hermet_store::Database;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Auth, IdPath, Json, Query};
use crate::schemas;

/// My own profile, with my accounts.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MeResponse {
    pub id: UserId,
    pub email: Option<String>,
    pub mobile: Option<String>,
    pub nickname: String,
    pub avatar: String,
    pub gender: Gender,
    pub region: String,
    /// `YYYY-MM-DD`.
    pub birthday: Option<String>,
    pub tagline: String,
    /// Bumped on every profile change.
    pub profile_ver: i64,
    pub status: UserStatus,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<User> for MeResponse {
    fn from(u: User) -> Self {
        Self {
            id: u.id,
            email: u.email,
            mobile: u.mobile,
            nickname: u.nickname,
            avatar: u.avatar,
            gender: u.gender,
            region: u.region,
            birthday: u.birthday,
            tagline: u.tagline,
            profile_ver: u.profile_ver,
            status: u.status,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

/// What anyone signed in may see of a user.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublicUser {
    pub id: UserId,
    pub nickname: String,
    pub avatar: String,
    pub gender: Gender,
    pub region: String,
    pub tagline: String,
    pub profile_ver: i64,
}

impl From<User> for PublicUser {
    fn from(u: User) -> Self {
        Self {
            id: u.id,
            nickname: u.nickname,
            avatar: u.avatar,
            gender: u.gender,
            region: u.region,
            tagline: u.tagline,
            profile_ver: u.profile_ver,
        }
    }
}

/// Absent fields stay as they are; `birthday: null` clears the birthday.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateProfileRequest {
    #[schema(schema_with = schemas::nickname_patch)]
    pub nickname: Option<String>,
    #[schema(schema_with = schemas::avatar)]
    pub avatar: Option<String>,
    pub gender: Option<Gender>,
    #[schema(schema_with = schemas::region)]
    pub region: Option<String>,
    /// A calendar date `YYYY-MM-DD`; `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, format = Date)]
    pub birthday: Option<Option<String>>,
    #[schema(schema_with = schemas::tagline)]
    pub tagline: Option<String>,
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    pub q: String,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

/// Written out: the derive marks a parameter with a `schema_with` optional whatever its
/// `required` says, and `q` is required.
impl IntoParams for SearchParams {
    fn into_params(
        parameter_in: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        use utoipa::openapi::Required;
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
        let param = |name: &str, required: Required, description: &str, schema: ObjectBuilder| {
            ParameterBuilder::new()
                .name(name)
                .parameter_in(parameter_in().unwrap_or(ParameterIn::Query))
                .required(required)
                .description(Some(description))
                .schema(Some(schema.build()))
        };
        let string = || ObjectBuilder::new().schema_type(SchemaType::Type(Type::String));
        let limit =
            ObjectBuilder::new().schema_type(SchemaType::Type(Type::Integer)).minimum(Some(1)).maximum(Some(200));
        vec![
            param("q", Required::True, "An exact e-mail or mobile number, or the beginning of a nickname.", string())
                .schema(Some(schemas::search()))
                .build(),
            param("cursor", Required::False, "`nextCursor` of the previous page (opaque).", string()).build(),
            param("limit", Required::False, "Page size, 1 to 200; default 50.", limit).build(),
        ]
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserPage {
    pub items: Vec<PublicUser>,
    /// Opaque; pass as `cursor` for the next page. Absent on the last page.
    pub next_cursor: Option<String>,
}

/// GET /api/v1/users/me — my profile.
#[utoipa::path(get, path = "/api/v1/users/me", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = MeResponse)))]
pub async fn me<D: Database>(State(st): State<AppState<D>>, Auth(who): Auth) -> ApiResult<Json<MeResponse>> {
    Ok(Json(st.app.me(who).await?.into()))
}

/// PATCH /api/v1/users/me — change my profile (bumps profileVer).
#[utoipa::path(patch, path = "/api/v1/users/me", tag = "users", security(("bearer" = [])), request_body = UpdateProfileRequest,
    responses((status = 200, body = MeResponse)))]
pub async fn update_me<D: Database>(
    State(st): State<AppState<D>>,
    Auth(who): Auth,
    Json(req): Json<UpdateProfileRequest>,
) -> ApiResult<Json<MeResponse>> {
    let changes = ProfileChanges {
        nickname: req.nickname,
        avatar: req.avatar,
        gender: req.gender,
        region: req.region,
        birthday: req.birthday,
        tagline: req.tagline,
    };
    Ok(Json(st.app.update_me(who, changes).await?.into()))
}

/// GET /api/v1/users/search — find users by exact e-mail/mobile or nickname prefix.
#[utoipa::path(get, path = "/api/v1/users/search", tag = "users", security(("bearer" = [])), params(SearchParams),
    responses((status = 200, body = UserPage), (status = 429, description = "`rate_limited` (`searches_per_user`)", body = ErrorBody)))]
pub async fn search<D: Database>(
    State(st): State<AppState<D>>,
    Auth(who): Auth,
    Query(p): Query<SearchParams>,
) -> ApiResult<Json<UserPage>> {
    let page = st.app.search_users(who, &p.q, p.cursor.as_deref(), p.limit).await?;
    Ok(Json(UserPage { items: page.items.into_iter().map(Into::into).collect(), next_cursor: page.next_cursor }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdsParams {
    pub ids: String,
}

/// Written out: `ids` is a comma-separated list of 1 to 100 user ids.
impl IntoParams for IdsParams {
    fn into_params(
        parameter_in: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        use utoipa::openapi::Required;
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
        let ids = ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .pattern(Some("^[1-9][0-9]{0,17}(,[1-9][0-9]{0,17}){0,99}$"));
        vec![
            ParameterBuilder::new()
                .name("ids")
                .parameter_in(parameter_in().unwrap_or(ParameterIn::Query))
                .required(Required::True)
                .description(Some("User ids, comma-separated: 1 to 100 (a repeat counts once)."))
                .schema(Some(ids.build()))
                .build(),
        ]
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Profiles {
    /// In the order asked; unknown and deleted users are left out.
    pub items: Vec<PublicUser>,
}

/// GET /api/v1/users?ids= — public profiles of several users at once.
#[utoipa::path(get, path = "/api/v1/users", tag = "users", security(("bearer" = [])), params(IdsParams),
    responses((status = 200, body = Profiles), (status = 400, description = "`ids` is not a list of 1 to 100 user ids", body = ErrorBody)))]
pub async fn profiles<D: Database>(
    State(st): State<AppState<D>>,
    Auth(who): Auth,
    Query(p): Query<IdsParams>,
) -> ApiResult<Json<Profiles>> {
    let ids = p
        .ids
        .split(',')
        .map(|s| s.trim().parse::<UserId>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| hermet_domain::Error::invalid("ids", "ids must be user ids separated by commas"))?;
    let users = st.app.user_profiles(who, &ids).await?;
    Ok(Json(Profiles { items: users.into_iter().map(Into::into).collect() }))
}

/// GET /api/v1/users/{id} — a user's public profile.
#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "users", security(("bearer" = [])), params(("id" = inline(UserId), Path, description = "user id")),
    responses((status = 200, body = PublicUser)))]
pub async fn get_user<D: Database>(
    State(st): State<AppState<D>>,
    Auth(who): Auth,
    IdPath(id): IdPath<UserId>,
) -> ApiResult<Json<PublicUser>> {
    Ok(Json(st.app.user_profile(who, id).await?.into()))
}

/// A user's presence across the gateway nodes.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PresenceResponse {
    pub user_id: UserId,
    pub online: bool,
    /// Open WebSocket connections (devices), all nodes together.
    pub connections: u64,
    /// When the last connection closed (Unix ms), when offline and known.
    pub last_seen_at: Option<i64>,
}

/// GET /api/v1/users/{id}/presence — online or not; for the user's friends (and the user).
#[utoipa::path(get, path = "/api/v1/users/{id}/presence", tag = "users", security(("bearer" = [])), params(("id" = inline(UserId), Path, description = "user id")),
    responses((status = 200, body = PresenceResponse), (status = 403, description = "not a friend", body = ErrorBody)))]
pub async fn presence<D: Database>(
    State(st): State<AppState<D>>,
    Auth(who): Auth,
    IdPath(id): IdPath<UserId>,
) -> ApiResult<Json<PresenceResponse>> {
    st.app.may_see_presence(who, id).await?;
    let p = st.cluster.presence(id).await.map_err(|e| {
        tracing::warn!(error = %e, "presence lookup failed");
        hermet_domain::Error::Unavailable("presence")
    })?;
    Ok(Json(PresenceResponse {
        user_id: id,
        online: p.online,
        connections: p.connections,
        last_seen_at: p.last_seen_at,
    }))
}
