//! Keyset pagination with opaque cursors: a cursor is the base64url JSON of the sort key
//! of the last item of the previous page. Clients must treat it as opaque.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hermet_domain::{Error, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// One page of a list.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// A page from up to `limit + 1` fetched rows: the extra row only says that there is
    /// a next page, whose cursor is the sort key of the last row kept.
    pub fn from_overfetch<K: Serialize>(mut items: Vec<T>, limit: u32, key: impl Fn(&T) -> K) -> Self {
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let next_cursor = if more { items.last().map(|t| encode_cursor(&key(t))) } else { None };
        Page { items, next_cursor }
    }
}

pub fn encode_cursor<K: Serialize>(key: &K) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(key).unwrap_or_default())
}

pub fn decode_cursor<K: DeserializeOwned>(cursor: &str) -> Result<K> {
    let bad = || Error::invalid("cursor", "cursor is not a cursor returned by this list");
    let bytes = URL_SAFE_NO_PAD.decode(cursor.as_bytes()).map_err(|_| bad())?;
    serde_json::from_slice(&bytes).map_err(|_| bad())
}
