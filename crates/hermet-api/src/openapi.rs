//! The OpenAPI document, generated from the handlers' annotations.

use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::routes::{admin, auth, channels, contacts, conversations, users};

#[derive(OpenApi)]
#[openapi(
    info(title = "hermet", description = "Instant-messaging backend. JSON is camelCase; ids are strings; errors are {\"error\": {code, message, field?}}."),
    paths(
        auth::sign_up, auth::sign_in, auth::refresh_token, auth::sign_out,
        users::me, users::update_me, users::search, users::get_user, users::presence,
        admin::bulk_create, admin::disable, admin::enable, admin::delete,
        contacts::apply, contacts::applications, contacts::accept, contacts::reject, contacts::list, contacts::update, contacts::delete,
        channels::create_group, channels::get, channels::update, channels::dismiss, channels::members, channels::add_members,
        channels::remove_member, channels::update_member, channels::leave, channels::apply, channels::applications,
        channels::accept_application, channels::reject_application, channels::send, channels::messages, channels::read,
        conversations::list, conversations::update, conversations::close,
    ),
    modifiers(&BearerAuth),
    tags((name = "auth"), (name = "users"), (name = "contacts"), (name = "channels"), (name = "messages"), (name = "conversations"), (name = "admin")),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}
