//! 64-bit snowflake ids and the typed id newtypes built on them.
//!
//! Layout (most significant first): 1 sign bit (always 0), 41 bits of milliseconds since
//! 2025-01-01T00:00:00Z, 10 bits of node id, 12 bits of sequence. In JSON an id is a
//! string (JavaScript numbers hold only 53 bits); requests accept a string or a number.

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// 2025-01-01T00:00:00Z in Unix milliseconds.
pub const EPOCH_MS: i64 = 1_735_689_600_000;
const NODE_BITS: u32 = 10;
const SEQ_BITS: u32 = 12;
pub const MAX_NODE_ID: u16 = (1 << NODE_BITS) - 1;
const MAX_SEQ: i64 = (1 << SEQ_BITS) - 1;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error("node id {0} is out of range 0..=1023")]
    NodeOutOfRange(u16),
    #[error("system clock moved backwards by {0} ms, more than the tolerated skew")]
    ClockMovedBackwards(i64),
}

struct GenState {
    last_ms: i64,
    seq: i64,
}

/// Generates unique, time-ordered ids for one node.
///
/// When the clock steps back by at most `max_backward_ms`, the generator keeps issuing
/// ids from the last millisecond it used (ids stay monotonic) and, if that millisecond's
/// sequence runs out, waits for the clock to catch up. A larger step is refused: issuing
/// ids would risk duplicates with those already given out.
pub struct IdGenerator {
    node: i64,
    max_backward_ms: i64,
    state: Mutex<GenState>,
    clock: fn() -> i64,
}

impl fmt::Debug for IdGenerator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdGenerator").field("node", &self.node).finish()
    }
}

impl IdGenerator {
    pub fn new(node_id: u16) -> Result<Self, IdError> {
        Self::with_clock(node_id, 1_000, crate::time::now_ms)
    }

    /// A generator reading time from `clock` (tests use a fake clock).
    pub fn with_clock(node_id: u16, max_backward_ms: i64, clock: fn() -> i64) -> Result<Self, IdError> {
        if node_id > MAX_NODE_ID {
            return Err(IdError::NodeOutOfRange(node_id));
        }
        Ok(Self { node: node_id as i64, max_backward_ms, state: Mutex::new(GenState { last_ms: 0, seq: 0 }), clock })
    }

    pub fn node_id(&self) -> u16 {
        self.node as u16
    }

    /// The next id as a raw i64.
    pub fn next_raw(&self) -> Result<i64, IdError> {
        loop {
            let now = (self.clock)() - EPOCH_MS;
            let mut st = match self.state.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            if now > st.last_ms {
                st.last_ms = now;
                st.seq = 0;
            } else {
                let behind = st.last_ms - now;
                if behind > self.max_backward_ms {
                    return Err(IdError::ClockMovedBackwards(behind));
                }
                if st.seq >= MAX_SEQ {
                    // This millisecond is used up: wait for the clock to pass it.
                    drop(st);
                    std::thread::sleep(Duration::from_micros(100));
                    continue;
                }
                st.seq += 1;
            }
            return Ok((st.last_ms << (NODE_BITS + SEQ_BITS)) | (self.node << SEQ_BITS) | st.seq);
        }
    }

    /// `n` ids at once (bulk inserts).
    pub fn next_many(&self, n: usize) -> Result<Vec<i64>, IdError> {
        (0..n).map(|_| self.next_raw()).collect()
    }

    pub fn next<T: From<i64>>(&self) -> Result<T, IdError> {
        self.next_raw().map(T::from)
    }
}

/// The Unix millisecond timestamp embedded in a snowflake id.
pub fn id_timestamp_ms(id: i64) -> i64 {
    (id >> (NODE_BITS + SEQ_BITS)) + EPOCH_MS
}

macro_rules! typed_id {
    ($($(#[$meta:meta])* $name:ident),* $(,)?) => {$(
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub i64);

        impl $name {
            pub fn get(self) -> i64 { self.0 }
        }
        impl From<i64> for $name {
            fn from(v: i64) -> Self { Self(v) }
        }
        impl From<$name> for i64 {
            fn from(v: $name) -> i64 { v.0 }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { self.0.fmt(f) }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0)
            }
        }
        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, InvalidId> { parse_id(s).map(Self) }
        }
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(&self.0)
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(IdVisitor).map(Self)
            }
        }
        #[cfg(feature = "openapi")]
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                id_schema()
            }
        }
        #[cfg(feature = "openapi")]
        impl utoipa::ToSchema for $name {}
    )*};
}

typed_id!(
    /// A user account.
    UserId,
    /// A channel (one-to-one or group).
    ChannelId,
    /// A message.
    MessageId,
    /// A sign-in session (one refresh-token family).
    SessionId,
    /// A domain event in the outbox.
    EventId,
    /// A friend or join application.
    ApplicationId,
);

/// The schema of every id: a decimal string from 1 to `i64::MAX` without sign, spaces or
/// leading zeros (what [`parse_id`] accepts), or the same value as a JSON number.
#[cfg(feature = "openapi")]
fn id_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, SchemaType, Type};
    let text = ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .pattern(Some(ID_PATTERN.as_str()))
        .examples([serde_json::json!("7203944071286784")]);
    let number = ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::Integer))
        .format(Some(utoipa::openapi::schema::SchemaFormat::KnownFormat(utoipa::openapi::schema::KnownFormat::Int64)))
        .minimum(Some(1))
        .maximum(Some(i64::MAX));
    OneOfBuilder::new()
        .item(text)
        .item(number)
        .description(Some("64-bit id; responses send it as a decimal string, requests also accept a JSON number"))
        .into()
}

/// `^…$` matching exactly the decimal numbers from 1 to `i64::MAX`.
#[cfg(feature = "openapi")]
pub static ID_PATTERN: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("^(?:{})$", decimal_up_to(&i64::MAX.to_string())));

/// A regular expression (without anchors) for the decimal numbers from 1 to `max`, no
/// leading zeros: every shorter length, then per digit of `max` a smaller digit there
/// after the same prefix, then `max` itself.
#[cfg(feature = "openapi")]
fn decimal_up_to(max: &str) -> String {
    let digits: Vec<u32> = max.chars().filter_map(|c| c.to_digit(10)).collect();
    let n = digits.len();
    let mut alts = Vec::new();
    if n > 1 {
        alts.push(format!("[1-9][0-9]{{0,{}}}", n - 2));
    }
    for (i, &d) in digits.iter().enumerate() {
        let low = u32::from(i == 0);
        if d > low {
            let prefix: String = digits[..i].iter().map(|d| d.to_string()).collect();
            let class = if d - 1 == low { low.to_string() } else { format!("[{low}-{}]", d - 1) };
            let rest = n - i - 1;
            let tail = if rest == 0 { String::new() } else { format!("[0-9]{{{rest}}}") };
            alts.push(format!("{prefix}{class}{tail}"));
        }
    }
    alts.push(max.to_owned());
    alts.join("|")
}

#[derive(Debug, thiserror::Error)]
#[error("not a valid id: expected a positive 64-bit integer")]
pub struct InvalidId;

/// Decimal digits only, no sign, spaces or leading zeros, from 1 to `i64::MAX`.
fn parse_id(s: &str) -> Result<i64, InvalidId> {
    if s.is_empty() || s.starts_with('0') || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(InvalidId);
    }
    s.parse::<i64>().map_err(|_| InvalidId)
}

struct IdVisitor;

impl serde::de::Visitor<'_> for IdVisitor {
    type Value = i64;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an id as a string or a number")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<i64, E> {
        parse_id(v).map_err(|_| E::custom("not a valid id: expected a positive 64-bit integer"))
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<i64, E> {
        if v > 0 { Ok(v) } else { Err(E::custom("not a valid id: must be positive")) }
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<i64, E> {
        match i64::try_from(v) {
            Ok(v) if v > 0 => Ok(v),
            Ok(_) => Err(E::custom("not a valid id: must be positive")),
            Err(_) => Err(E::custom("not a valid id: out of range")),
        }
    }
    /// A whole number written with a fraction (`13.0`) is the integer JSON Schema says it
    /// is; any other float is not an id.
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<i64, E> {
        match crate::whole_number(v) {
            Some(v) if v > 0 => Ok(v),
            _ => Err(E::custom("not a valid id: expected a positive 64-bit integer")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicI64, Ordering};

    #[test]
    fn ids_are_unique_and_increasing() {
        let g = IdGenerator::new(7).unwrap();
        let ids = g.next_many(20_000).unwrap();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len());
        assert!(ids.iter().all(|id| (id >> SEQ_BITS) & MAX_NODE_ID as i64 == 7));
        let ts = id_timestamp_ms(ids[0]);
        assert!((ts - crate::time::now_ms()).abs() < 5_000);
    }

    #[test]
    fn whole_numbers_written_as_floats_are_ids() {
        // 17 significant digits: parsed exactly (serde_json's `float_roundtrip`), it is a
        // whole number; the fast parser put it a quarter off and refused it.
        let ids: Vec<UserId> = serde_json::from_str("[2064440712915265.0, 13.0, \"7\", 8]").unwrap();
        assert_eq!(ids, [UserId(2064440712915265), UserId(13), UserId(7), UserId(8)]);
        assert!(serde_json::from_str::<UserId>("13.5").is_err());
    }

    #[test]
    fn node_id_out_of_range_is_refused() {
        assert_eq!(IdGenerator::new(1024).unwrap_err(), IdError::NodeOutOfRange(1024));
    }

    static FAKE_NOW: AtomicI64 = AtomicI64::new(0);
    fn fake_clock() -> i64 {
        FAKE_NOW.load(Ordering::SeqCst)
    }

    #[test]
    fn clock_going_backwards() {
        FAKE_NOW.store(EPOCH_MS + 10_000, Ordering::SeqCst);
        let g = IdGenerator::with_clock(1, 50, fake_clock).unwrap();
        let a = g.next_raw().unwrap();
        // Small step back: ids keep increasing.
        FAKE_NOW.store(EPOCH_MS + 9_990, Ordering::SeqCst);
        let b = g.next_raw().unwrap();
        assert!(b > a);
        // Large step back: refused.
        FAKE_NOW.store(EPOCH_MS + 9_000, Ordering::SeqCst);
        assert_eq!(g.next_raw().unwrap_err(), IdError::ClockMovedBackwards(1_000));
    }

    #[test]
    fn json_ids_are_strings_and_accept_numbers() {
        let id = UserId(9_007_199_254_740_993);
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"9007199254740993\"");
        let a: UserId = serde_json::from_str("\"42\"").unwrap();
        let b: UserId = serde_json::from_str("42").unwrap();
        assert_eq!(a, b);
        assert!(serde_json::from_str::<UserId>("\"abc\"").is_err());
        assert!(serde_json::from_str::<UserId>("-3").is_err());
        for bad in ["\"0\"", "\"007\"", "\"+5\"", "\" 5\"", "\"5 \"", "\"9223372036854775808\"", "\"\""] {
            assert!(serde_json::from_str::<UserId>(bad).is_err(), "{bad}");
        }
    }

    #[cfg(feature = "openapi")]
    #[test]
    fn the_id_pattern_matches_exactly_what_parses() {
        let re = regex::Regex::new(&ID_PATTERN).unwrap();
        let max = i64::MAX.to_string();
        for ok in ["1", "9", "10", "7203944071286784", "999999999999999999", "9223372036854775806", max.as_str()] {
            assert!(re.is_match(ok) && parse_id(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "0",
            "01",
            "-1",
            "+1",
            " 1",
            "1 ",
            "9223372036854775808",
            "9300000000000000000",
            "10000000000000000000",
        ] {
            assert!(!re.is_match(bad) && parse_id(bad).is_err(), "{bad}");
        }
        // every prefix boundary of i64::MAX
        let digits: Vec<char> = max.chars().collect();
        for i in 0..digits.len() {
            let mut above = digits.clone();
            if above[i] < '9' {
                above[i] = char::from_digit(above[i].to_digit(10).unwrap() + 1, 10).unwrap();
                let above: String = above.into_iter().collect();
                assert!(!re.is_match(&above) && parse_id(&above).is_err(), "{above}");
            }
        }
    }
}
