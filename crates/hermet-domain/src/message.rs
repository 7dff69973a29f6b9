//! Messages: types, content rules and the list preview.

use serde::{Deserialize, Serialize};

use crate::channel::text_enum;
use crate::error::{Error, Result};
use crate::id::{ChannelId, MessageId, UserId};

text_enum!(
    MessageType { Text = "text", Image = "image", Voice = "voice", Video = "video", File = "file", Custom = "custom", System = "system", Recalled = "recalled" }
);

/// Longest preview kept in a conversation view (`003_0aed9671e6f5a289.txt`: 512 characters).
pub const PREVIEW_MAX: usize = 512;
/// Largest serialized message content.
pub const CONTENT_MAX_BYTES: usize = 64 * 1024;
pub const TEXT_MAX_CHARS: usize = 10_000;
pub const CLIENT_MSG_ID_MAX: usize = 64;
pub const MENTIONS_MAX: usize = 1_000;

/// Checks a message's content for its type: a JSON object; `text` needs a non-empty
/// `text` string.
pub fn validate_content(t: MessageType, content: &serde_json::Value) -> Result<()> {
    let obj = content.as_object().ok_or_else(|| Error::invalid("content", "content must be a JSON object"))?;
    let size = serde_json::to_vec(content).map(|v| v.len()).unwrap_or(usize::MAX);
    if size > CONTENT_MAX_BYTES {
        return Err(Error::invalid("content", format!("content must be at most {CONTENT_MAX_BYTES} bytes of JSON")));
    }
    no_nul("content", content)?;
    match t {
        MessageType::Text => {
            let text = obj.get("text").and_then(|v| v.as_str()).unwrap_or("");
            if text.trim().is_empty() {
                return Err(Error::invalid("content.text", "a text message needs a non-empty content.text"));
            }
            if text.chars().any(|c| c.is_ascii_control() && !matches!(c, '\t' | '\n' | '\r')) {
                return Err(Error::invalid(
                    "content.text",
                    "content.text must not contain control characters other than tab and line breaks",
                ));
            }
            if text.chars().count() > TEXT_MAX_CHARS {
                return Err(Error::invalid(
                    "content.text",
                    format!("content.text must be at most {TEXT_MAX_CHARS} characters"),
                ));
            }
        }
        MessageType::System => return Err(Error::invalid("type", "system messages are sent by the server only")),
        MessageType::Recalled => {
            return Err(Error::invalid("type", "recalled is what a message becomes when recalled, not a type to send"));
        }
        _ => {}
    }
    Ok(())
}

/// No string in `v` (keys included) holds U+0000: PostgreSQL cannot store it in text or
/// JSON, and SQLite would, so both refuse it alike. The error names the first place.
fn no_nul(path: &str, v: &serde_json::Value) -> Result<()> {
    let bad = |at: String| Err(Error::invalid(at.clone(), format!("{at} must not contain the NUL character")));
    match v {
        serde_json::Value::String(s) if s.contains('\0') => bad(path.to_owned()),
        serde_json::Value::Array(a) => a.iter().enumerate().try_for_each(|(i, x)| no_nul(&format!("{path}[{i}]"), x)),
        serde_json::Value::Object(o) => o.iter().try_for_each(|(k, x)| {
            let at = format!("{path}.{k}");
            if k.contains('\0') { bad(at) } else { no_nul(&at, x) }
        }),
        _ => Ok(()),
    }
}

/// The preview a conversation list shows: the text (at most 512 characters) or a
/// placeholder such as `[image]`.
pub fn preview(t: MessageType, content: &serde_json::Value) -> String {
    match t {
        MessageType::Text => {
            content.get("text").and_then(|v| v.as_str()).unwrap_or("").chars().take(PREVIEW_MAX).collect()
        }
        other => format!("[{}]", other.as_str()),
    }
}

/// Who a message mentions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Mentions {
    #[default]
    None,
    Users(Vec<UserId>),
    All,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub id: MessageId,
    pub channel_id: ChannelId,
    pub seq: i64,
    pub sender_id: UserId,
    pub sender_name: String,
    pub msg_type: MessageType,
    pub content: serde_json::Value,
    pub mentions: Vec<UserId>,
    pub mention_all: bool,
    pub client_msg_id: Option<String>,
    pub created_at: i64,
    /// Set when the message was recalled: its type reads `recalled`, its content `{}`,
    /// and it mentions nobody (docs/API.md "Recall").
    pub recalled: Option<Recall>,
    /// When it was last edited, and how many times (docs/API.md "Edit").
    pub edited_at: Option<i64>,
    pub edit_count: i32,
    /// The message this one replies to (docs/API.md "Replies"): its quote is read from it.
    pub reply_to: Option<MessageId>,
    /// Where a forwarded message came from (docs/API.md "Forward").
    pub forwarded_from: Option<Forwarded>,
}

/// Longest preview in a reply's quote.
pub const QUOTE_PREVIEW_MAX: usize = 100;
/// Most messages one forward takes, and most channels it goes to.
pub const FORWARD_MESSAGES_MAX: usize = 20;
pub const FORWARD_CHANNELS_MAX: usize = 20;
/// Most pinned messages in one channel.
pub const PINS_MAX: i64 = 50;

/// The quote a reply carries of the message it answers: who sent it, its type and a
/// short preview, as that message is now (a recalled one reads `recalled`, no preview).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Quote {
    pub message_id: MessageId,
    pub sender_id: UserId,
    pub sender_name: String,
    pub msg_type: MessageType,
    pub preview: String,
}

impl Quote {
    pub fn of(m: &Message) -> Self {
        let preview = match m.msg_type {
            MessageType::Recalled => String::new(),
            t => preview(t, &m.content).chars().take(QUOTE_PREVIEW_MAX).collect(),
        };
        Self {
            message_id: m.id,
            sender_id: m.sender_id,
            sender_name: m.sender_name.clone(),
            msg_type: m.msg_type,
            preview,
        }
    }
}

/// A forwarded message's origin: the first message of a chain of forwards (forwarding a
/// forwarded message keeps its origin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Forwarded {
    pub message_id: MessageId,
    pub sender_id: UserId,
    pub sender_name: String,
    pub sent_at: i64,
}

impl Forwarded {
    pub fn of(m: &Message) -> Self {
        m.forwarded_from.clone().unwrap_or_else(|| Self {
            message_id: m.id,
            sender_id: m.sender_id,
            sender_name: m.sender_name.clone(),
            sent_at: m.created_at,
        })
    }
}

/// Longest search text, in characters.
pub const SEARCH_MAX_CHARS: usize = 100;

/// Where `needle` occurs in `text`, ignoring case: `[start, end)` offsets in characters
/// (Unicode scalar values), left to right, not overlapping.
pub fn highlights(text: &str, needle: &str) -> Vec<(usize, usize)> {
    fn fold(c: char) -> char {
        c.to_lowercase().next().unwrap_or(c)
    }
    let hay: Vec<char> = text.chars().map(fold).collect();
    let pin: Vec<char> = needle.chars().map(fold).collect();
    let mut out = Vec::new();
    if pin.is_empty() {
        return out;
    }
    let mut i = 0;
    while i + pin.len() <= hay.len() {
        if hay[i..i + pin.len()] == pin[..] {
            out.push((i, i + pin.len()));
            i += pin.len();
        } else {
            i += 1;
        }
    }
    out
}

/// A pinned message of a channel: who pinned it and when.
#[derive(Debug, Clone, PartialEq)]
pub struct Pin {
    pub message: Message,
    pub pinned_by: UserId,
    pub pinned_at: i64,
}

/// Most reactions one member may put on one message.
pub const REACTIONS_PER_MEMBER: i64 = 20;

/// How many members reacted to a message with one reaction, and whether the reader did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReactionCount {
    pub emoji: String,
    pub count: i64,
    pub me: bool,
}

/// An earlier version of an edited message (`GET …/{messageId}/versions`).
#[derive(Debug, Clone, PartialEq)]
pub struct MessageVersion {
    /// 1 is the message as sent; the current one is `edit_count + 1`.
    pub version: i32,
    pub content: serde_json::Value,
    pub mentions: Vec<UserId>,
    pub mention_all: bool,
    /// When this version was written (sent or edited).
    pub written_at: i64,
}

/// Who recalled a message, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recall {
    pub by: UserId,
    pub at: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn highlights_ignore_case_in_any_script() {
        assert_eq!(highlights("Hello hello HELLO", "hello"), [(0, 5), (6, 11), (12, 17)]);
        assert_eq!(highlights("今天天气很好，天气", "天气"), [(2, 4), (7, 9)]);
        assert_eq!(highlights("aaaa", "aa"), [(0, 2), (2, 4)]);
        assert!(highlights("abc", "").is_empty());
        assert!(highlights("ab", "abc").is_empty());
    }

    #[test]
    fn previews() {
        assert_eq!(preview(MessageType::Image, &json!({"url": "x"})), "[image]");
        let long = "字".repeat(600);
        assert_eq!(preview(MessageType::Text, &json!({ "text": long })).chars().count(), 512);
    }

    #[test]
    fn content_rules() {
        assert!(validate_content(MessageType::Text, &json!({"text": "hi"})).is_ok());
        assert!(validate_content(MessageType::Text, &json!({"text": "line\n\tnext\r\n"})).is_ok());
        assert_eq!(
            validate_content(MessageType::Text, &json!({"text": "a\u{0000}b"})).unwrap_err().field(),
            Some("content.text")
        );
        assert_eq!(
            validate_content(MessageType::Text, &json!({"text": "bell \u{0007}"})).unwrap_err().field(),
            Some("content.text")
        );
        assert_eq!(
            validate_content(MessageType::Image, &json!({"urls": ["ok", "x\u{0000}"]})).unwrap_err().field(),
            Some("content.urls[1]")
        );
        assert_eq!(
            validate_content(MessageType::Text, &json!({"text": " "})).unwrap_err().field(),
            Some("content.text")
        );
        assert_eq!(validate_content(MessageType::Image, &json!("x")).unwrap_err().field(), Some("content"));
        assert!(validate_content(MessageType::System, &json!({})).is_err());
        assert_eq!(validate_content(MessageType::Recalled, &json!({})).unwrap_err().field(), Some("type"));
    }
}
