//! The OpenAPI document, generated from the handlers' annotations.
//!
//! Each handler's `#[utoipa::path]` declares its success and the errors only it can
//! return (403, 404 beyond the path's ids, 409, 422, 429). [`ShapeResponses`] adds to
//! every operation the errors that follow from its shape, so no handler repeats them:
//!
//! | shape | adds |
//! |---|---|
//! | a parameter (path or query) or a body | 400 `malformed_request`, `validation_failed` |
//! | secured (`bearer`) | 401 `invalid_token`, `account_disabled`, with `WWW-Authenticate` |
//! | an id in the path | 404 `not_found` |
//! | a body | 413 `payload_too_large` |
//! | any (the database guard, the request timeout) | 503 `service_unavailable`, `database_unavailable` |
//!
//! and gives every error response the `ErrorBody` schema, a description listing the
//! catalogue's codes of its status, and the headers it carries (`Retry-After` on 429 and
//! 503). docs/API.md ("The contract") describes the result.

use std::collections::BTreeMap;

use hermet_domain::ErrorCode;
use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::path::{Operation, ParameterIn, PathItem};
use utoipa::openapi::response::Response;
use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, Ref, RefOr};

use crate::routes::{admin, auth, channels, contacts, conversations, users};

#[derive(OpenApi)]
#[openapi(
    info(title = "hermet", description = "Instant-messaging backend. JSON is camelCase; ids are strings; errors are {\"error\": {code, message, field?, details?}}. docs/API.md has the conventions."),
    paths(
        auth::sign_up, auth::sign_in, auth::refresh_token, auth::sign_out,
        users::me, users::update_me, users::search, users::profiles, users::get_user, users::presence,
        admin::bulk_create, admin::disable, admin::enable, admin::delete,
        contacts::apply, contacts::applications, contacts::accept, contacts::reject, contacts::list, contacts::update, contacts::delete,
        channels::create_group, channels::mine, channels::get, channels::update, channels::dismiss, channels::members, channels::add_members,
        channels::remove_member, channels::update_member, channels::ban, channels::unban, channels::bans, channels::leave, channels::apply, channels::applications,
        channels::accept_application, channels::reject_application, channels::send, channels::messages, channels::edit, channels::delete_for_me, channels::recall, channels::versions, channels::receipts, channels::react, channels::unreact, channels::forward, channels::search, channels::pin, channels::unpin, channels::pins, channels::read,
        conversations::list, conversations::get_one, conversations::update, conversations::close,
    ),
    components(schemas(crate::error::ErrorBody)),
    modifiers(&BearerAuth, &ShapeResponses, &ContentValue),
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

/// The recursive `ContentValue` component a message's content refers to.
struct ContentValue;

impl Modify for ContentValue {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.schemas.insert(crate::schemas::CONTENT_VALUE.to_owned(), crate::schemas::content_value());
    }
}

/// Adds the responses that follow from an operation's shape (the table in the module
/// documentation) and completes every error response.
pub struct ShapeResponses;

impl Modify for ShapeResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for op in operations_mut(item) {
                let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
                let params = op.parameters.as_deref().unwrap_or_default();
                let path_id = params.iter().any(|p| p.parameter_in == ParameterIn::Path);
                let body = op.request_body.is_some();
                let mut add = |status: u16| {
                    op.responses.responses.entry(status.to_string()).or_insert_with(|| RefOr::T(Response::new("")));
                };
                if !params.is_empty() || body {
                    add(400);
                }
                if secured {
                    add(401);
                }
                if path_id {
                    add(404);
                }
                if body {
                    add(413);
                }
                add(503);
                for (status, response) in op.responses.responses.iter_mut() {
                    if let (Ok(status), RefOr::T(response)) = (status.parse::<u16>(), response)
                        && status >= 400
                    {
                        complete_error(status, secured, response);
                    }
                }
            }
        }
    }
}

/// Every operation of a path.
pub fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// The catalogue's codes an operation may answer with `status`. A 401 of a secured
/// operation is about its access token; the sign-in and refresh operations declare their
/// own 401s with a description.
fn codes(status: u16, secured: bool) -> Vec<&'static str> {
    let auth = [ErrorCode::InvalidToken, ErrorCode::AccountDisabled];
    ErrorCode::ALL
        .iter()
        .filter(|c| c.status() == status && (status != 401 || !secured || auth.contains(c)))
        .map(|c| c.as_str())
        .collect()
}

fn complete_error(status: u16, secured: bool, response: &mut Response) {
    let codes = codes(status, secured);
    let listed = format!("`{}`", codes.join("`, `"));
    response.description = if response.description.is_empty() {
        listed
    } else if response.description.contains('`') {
        response.description.clone()
    } else {
        format!("{}: {listed}", response.description)
    };
    response.content.insert(
        "application/json".into(),
        ContentBuilder::new().schema(Some(RefOr::Ref(Ref::from_schema_name("ErrorBody")))).build(),
    );
    let mut headers = BTreeMap::new();
    let integer = || ObjectBuilder::new().schema_type(SchemaType::Type(Type::Integer)).minimum(Some(0)).build();
    let string = || ObjectBuilder::new().schema_type(SchemaType::Type(Type::String)).build();
    match status {
        401 => {
            headers.insert(
                "WWW-Authenticate".to_owned(),
                HeaderBuilder::new().schema(string()).description(Some("`Bearer`")).build(),
            );
        }
        429 => {
            headers.insert(
                "Retry-After".to_owned(),
                HeaderBuilder::new()
                    .schema(integer())
                    .description(Some("seconds until the budget allows the call"))
                    .build(),
            );
        }
        503 => {
            headers.insert(
                "Retry-After".to_owned(),
                HeaderBuilder::new().schema(integer()).description(Some("seconds; always 1")).build(),
            );
        }
        _ => {}
    }
    response.headers.extend(headers);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;

    /// Routes of the router that are not API operations: probes, metrics, the WebSocket
    /// upgrade and the document itself (docs/API.md "Operations").
    const NOT_IN_THE_DOCUMENT: [&str; 5] = ["/healthz", "/readyz", "/metrics", "/api/v1/ws", "/api/v1/openapi.json"];

    fn document() -> Value {
        serde_json::to_value(ApiDoc::openapi()).unwrap()
    }

    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("$ref", Value::String(r)) => out.push(r),
                        _ => refs(v, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_reference_resolves() {
        let doc = document();
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(!all.is_empty());
        let dangling: Vec<_> =
            all.iter().filter(|r| r.strip_prefix('#').is_none_or(|p| doc.pointer(p).is_none())).collect();
        assert!(dangling.is_empty(), "dangling references: {dangling:?}");
    }

    /// `METHOD /path` of every route `lib.rs` registers, path parameters as `{}`.
    fn routes() -> BTreeSet<String> {
        let src = include_str!("lib.rs");
        let mut out = BTreeSet::new();
        for chunk in src.split(".route(").skip(1) {
            let Some(path) = chunk.split('"').nth(1) else { continue };
            // the handlers up to the end of this call: `get(…).patch(…)`
            let mut depth = 1;
            let end = chunk
                .char_indices()
                .find(|&(_, c)| {
                    depth += match c {
                        '(' => 1,
                        ')' => -1,
                        _ => 0,
                    };
                    depth == 0
                })
                .map_or(chunk.len(), |(i, _)| i);
            let call = &chunk[..end];
            for method in ["get", "post", "put", "patch", "delete"] {
                let called = call
                    .match_indices(&format!("{method}("))
                    .any(|(i, _)| i == 0 || !call[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_'));
                if called {
                    out.insert(format!("{} {}", method.to_uppercase(), normalize(path)));
                }
            }
        }
        out
    }

    fn normalize(path: &str) -> String {
        let mut out = String::new();
        let mut in_param = false;
        for c in path.chars() {
            match c {
                '{' => {
                    in_param = true;
                    out.push_str("{}");
                }
                '}' => in_param = false,
                c if !in_param => out.push(c),
                _ => {}
            }
        }
        out
    }

    #[test]
    fn every_route_of_the_router_is_documented_and_nothing_else() {
        let doc = document();
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                documented.insert(format!("{} {}", method.to_uppercase(), normalize(path)));
            }
        }
        let routes: BTreeSet<String> = routes()
            .into_iter()
            .filter(|r| !NOT_IN_THE_DOCUMENT.iter().any(|p| r.split_once(' ').is_some_and(|(_, path)| path == *p)))
            .collect();
        assert!(routes.len() >= 39, "the router's routes were not found in lib.rs: {routes:?}");
        let undocumented: Vec<_> = routes.difference(&documented).collect();
        assert!(undocumented.is_empty(), "routes missing from the OpenAPI document: {undocumented:?}");
        let unrouted: Vec<_> = documented.difference(&routes).collect();
        assert!(unrouted.is_empty(), "documented operations the router does not have: {unrouted:?}");
    }

    #[test]
    fn every_operation_declares_the_errors_of_its_shape() {
        let doc = document();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let responses = op["responses"].as_object().unwrap();
                let has = |s: &str| responses.contains_key(s);
                let at = format!("{method} {path}");
                assert!(has("503"), "{at}: no 503");
                if op.get("security").is_some_and(|s| s.as_array().is_some_and(|a| !a.is_empty())) {
                    assert!(has("401"), "{at}: secured without 401");
                }
                if op.get("requestBody").is_some() {
                    assert!(has("400") && has("413"), "{at}: a body without 400 and 413");
                }
                if path.contains('{') {
                    assert!(has("400") && has("404"), "{at}: an id without 400 and 404");
                }
                for (status, r) in responses {
                    if status.as_str() >= "400" {
                        assert_eq!(
                            r["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/ErrorBody",
                            "{at} {status}"
                        );
                        assert!(r["description"].as_str().is_some_and(|d| d.contains('`')), "{at} {status}: no codes");
                    }
                }
                for p in op["parameters"].as_array().into_iter().flatten() {
                    if p["name"] == "limit" {
                        assert_eq!(
                            (p["schema"]["minimum"].as_u64(), p["schema"]["maximum"].as_u64()),
                            (Some(1), Some(200)),
                            "{at}"
                        );
                    }
                    if p["in"] == "path" {
                        // ids (a string or a number) and other path values alike
                        let schema = &p["schema"];
                        assert!(
                            schema["oneOf"][0]["pattern"].is_string() || schema["pattern"].is_string(),
                            "{at}: path value {} without its pattern",
                            p["name"]
                        );
                    }
                }
            }
        }
    }
}
