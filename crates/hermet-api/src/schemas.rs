//! Request-field schemas that state the validation rules (`hermet_domain::validate` and
//! the limits of the domain), for `#[schema(schema_with = …)]` and
//! `#[param(schema_with = …)]`: what the document admits, the server accepts.

use hermet_domain::contact::{APPLICATION_MESSAGE_MAX, GROUP_NAME_MAX, REMARK_MAX, TAG_MAX, TAGS_MAX};
use hermet_domain::validate::{self, schema};
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, Object, ObjectBuilder, OneOfBuilder, SchemaType, Type,
};
use utoipa::openapi::{RefOr, Schema};

/// The longest group name (`hermet_app::channels::CHANNEL_NAME_MAX`).
const CHANNEL_NAME_MAX: usize = 64;
/// The longest user search (`q`).
pub const SEARCH_MAX: usize = 254;

pub fn nickname() -> Object {
    schema::display_name(validate::NICKNAME_MAX, false, false).build()
}

pub fn nickname_patch() -> Object {
    schema::display_name(validate::NICKNAME_MAX, false, true).build()
}

pub fn avatar() -> Object {
    schema::avatar(true).build()
}

pub fn password() -> Object {
    schema::password().build()
}

/// A sign-in password: anything not empty (a wrong one is 401).
pub fn credential() -> Object {
    ObjectBuilder::new().schema_type(SchemaType::Type(Type::String)).min_length(Some(1)).build()
}

pub fn region() -> Object {
    schema::text(validate::REGION_MAX, true, true).build()
}

pub fn tagline() -> Object {
    schema::text(validate::TAGLINE_MAX, true, true).build()
}

pub fn search() -> Object {
    schema::text(SEARCH_MAX, false, false).build()
}

pub fn channel_name() -> Object {
    schema::display_name(CHANNEL_NAME_MAX, false, false).build()
}

pub fn channel_name_patch() -> Object {
    schema::display_name(CHANNEL_NAME_MAX, false, true).build()
}

pub fn group_nickname() -> Object {
    schema::display_name(validate::NICKNAME_MAX, true, true).build()
}

/// The message of a friend or join application.
pub fn application_message() -> Object {
    schema::text(APPLICATION_MESSAGE_MAX, true, false).build()
}

pub fn remark() -> Object {
    schema::display_name(REMARK_MAX, true, true).build()
}

pub fn contact_group() -> Object {
    schema::text(GROUP_NAME_MAX, false, true).build()
}

/// The `group` filter of the contact list.
pub fn contact_group_filter() -> Object {
    schema::text(GROUP_NAME_MAX, false, false).build()
}

/// The `initial` filter: a letter or `#`, case-insensitive (`ı` and `ſ` are upper-cased
/// to `I` and `S`), spaces around ignored.
pub fn initial() -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .pattern(Some(schema::trimmed("[A-Za-z#\\u0131\\u017F]")))
        .build()
}

pub fn tags() -> RefOr<Schema> {
    let tag = schema::text(TAG_MAX, false, false);
    ArrayBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .items(tag)
        .max_items(Some(TAGS_MAX))
        .into()
}

/// `clientMsgId`: 1 to 64 characters, no control character.
pub fn client_msg_id() -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .pattern(Some(schema::no_control_pattern()))
        .min_length(Some(1))
        .max_length(Some(hermet_domain::message::CLIENT_MSG_ID_MAX))
        .build()
}

/// The fields of a request object: `(name, schema, required)`; no others allowed.
pub fn object<S: Into<RefOr<Schema>>>(fields: impl IntoIterator<Item = (&'static str, S, bool)>) -> ObjectBuilder {
    let mut b = ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::Object))
        .additional_properties(Some(AdditionalProperties::FreeForm(false)));
    for (name, schema, required) in fields {
        b = b.property(name, schema);
        if required {
            b = b.required(name);
        }
    }
    b
}

/// A string among `values`.
pub fn one_of_strings(values: &[&str]) -> RefOr<Schema> {
    ObjectBuilder::new().schema_type(SchemaType::Type(Type::String)).enum_values(Some(values.iter().copied())).into()
}

/// `mentions`: user ids, or `"all"`, or nothing.
pub fn mentions() -> RefOr<Schema> {
    OneOfBuilder::new()
        .item(
            ArrayBuilder::new()
                .items(<hermet_domain::id::UserId as utoipa::PartialSchema>::schema())
                .max_items(Some(hermet_domain::message::MENTIONS_MAX)),
        )
        .item(ObjectBuilder::new().schema_type(SchemaType::Type(Type::String)).enum_values(Some(["all"])))
        .item(ObjectBuilder::new().schema_type(SchemaType::Type(Type::Null)))
        .into()
}

/// Strings with no NUL character (U+0000): what a message's content may hold anywhere,
/// keys included (PostgreSQL stores no NUL in JSON, so neither backend accepts one).
fn no_nul() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(SchemaType::Type(Type::String)).pattern(Some("^[^\\u0000]*$"))
}

/// Any JSON value without a NUL character in a string or key: the `ContentValue`
/// component, recursive through arrays and objects.
pub fn content_value() -> RefOr<Schema> {
    let here = || RefOr::Ref(utoipa::openapi::Ref::from_schema_name(CONTENT_VALUE));
    utoipa::openapi::schema::AnyOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(SchemaType::from_iter([Type::Null, Type::Boolean, Type::Number])))
        .item(no_nul())
        .item(ArrayBuilder::new().items(here()))
        .item(content_object())
        .description(Some("Any JSON value; no string or key holds the NUL character."))
        .into()
}

/// The name of [`content_value`]'s component.
pub const CONTENT_VALUE: &str = "ContentValue";

/// A message's content: an object whose keys and values hold no NUL character.
pub fn content_object() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::Object))
        .property_names(Some(no_nul()))
        .additional_properties(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(CONTENT_VALUE))))
}
