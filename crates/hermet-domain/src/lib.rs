//! Domain types of hermet: ids, validated values, users, domain events and the one
//! closed error enum. This crate does no I/O and depends on no other hermet crate.

pub mod channel;
pub mod contact;
pub mod error;
pub mod event;
pub mod id;
pub mod message;
pub mod projection;
pub mod time;
pub mod user;
pub mod validate;

pub use error::{Error, ErrorCode, Result};

/// `v` as an `i64` when it is a whole number in range (`13.0` → 13): JSON Schema's
/// `integer` admits a number written with a zero fraction, so requests may carry one.
pub fn whole_number(v: f64) -> Option<i64> {
    // 2^63 is the first float past i64::MAX
    let past = 2f64.powi(63);
    (v.is_finite() && v.fract() == 0.0 && v >= -past && v < past).then_some(v as i64)
}

/// Deserializes an `i64` from a JSON integer or a whole number written as a float.
/// [`deserialize_whole`] of an optional field (absent or `null`: `None`).
pub fn deserialize_whole_opt<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<i64>, D::Error> {
    #[derive(serde::Deserialize)]
    struct W(#[serde(deserialize_with = "deserialize_whole")] i64);
    Ok(<Option<W> as serde::Deserialize>::deserialize(d)?.map(|w| w.0))
}

/// [`deserialize_whole_opt`] of a field whose presence counts (`null`: `Some(None)`).
pub fn deserialize_whole_present<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Option<i64>>, D::Error> {
    deserialize_whole_opt(d).map(Some)
}

pub fn deserialize_whole<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<i64, D::Error> {
    struct Whole;
    impl serde::de::Visitor<'_> for Whole {
        type Value = i64;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an integer")
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<i64, E> {
            Ok(v)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<i64, E> {
            i64::try_from(v).map_err(|_| E::custom("out of range"))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> std::result::Result<i64, E> {
            whole_number(v).ok_or_else(|| E::custom("expected an integer"))
        }
    }
    d.deserialize_any(Whole)
}
