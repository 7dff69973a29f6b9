//! Validated values. Each parser names the field it checks so a 400 can say which
//! input was wrong. Lengths are counted in Unicode scalar values, not bytes.

use crate::error::{Error, Result};

/// Checks `value` is at most `max` characters as sent (spaces around included), trims it
/// and checks it has no control characters.
pub fn text(field: &str, value: &str, max: usize, allow_empty: bool) -> Result<String> {
    let v = value.trim();
    if !allow_empty && v.is_empty() {
        return Err(Error::invalid(field, format!("{field} must not be empty")));
    }
    let n = value.chars().count();
    if n > max {
        return Err(Error::invalid(field, format!("{field} must be at most {max} characters (got {n})")));
    }
    if v.chars().any(char::is_control) {
        return Err(Error::invalid(field, format!("{field} must not contain control characters")));
    }
    Ok(v.to_owned())
}

pub const REACTION_MAX: usize = 32;

/// A reaction (`…/reactions/{emoji}`): an emoji, or a short code such as `:+1:`; 1 to 32
/// characters, none of them a control, whitespace or bidirectional control. Taken as it
/// is (not trimmed), so one reaction has one spelling.
pub fn reaction(field: &str, v: &str) -> Result<String> {
    let n = v.chars().count();
    if n == 0 || n > REACTION_MAX {
        return Err(Error::invalid(field, format!("{field} must be 1 to {REACTION_MAX} characters (got {n})")));
    }
    if v.chars().any(|c| c.is_control() || c.is_whitespace() || in_ranges(BIDI_CONTROL, c)) {
        return Err(Error::invalid(
            field,
            format!("{field} must not contain control, whitespace or bidirectional control characters"),
        ));
    }
    // `.` and `..` are path segments a client resolves away before sending
    if v.chars().all(|c| c == '.') {
        return Err(Error::invalid(field, format!("{field} must not be only dots")));
    }
    Ok(v.to_owned())
}

pub const NICKNAME_MAX: usize = 64;
pub const AVATAR_MAX: usize = 256;
pub const REGION_MAX: usize = 64;
pub const TAGLINE_MAX: usize = 256;
pub const PASSWORD_MIN: usize = 8;
pub const PASSWORD_MAX: usize = 128;

pub fn nickname(field: &str, v: &str) -> Result<String> {
    display_name(field, v, NICKNAME_MAX, false)
}

/// Inclusive ranges of code points.
type Ranges = &'static [(u32, u32)];

fn in_ranges(ranges: Ranges, c: char) -> bool {
    ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&(c as u32)))
}

/// `char::is_control` (general category Cc).
#[cfg(feature = "openapi")]
const CONTROL: Ranges = &[(0x00, 0x1F), (0x7F, 0x9F)];
/// `char::is_whitespace` (Unicode White_Space): what `str::trim` removes.
#[cfg(feature = "openapi")]
const WHITESPACE: Ranges = &[
    (0x09, 0x0D),
    (0x20, 0x20),
    (0x85, 0x85),
    (0xA0, 0xA0),
    (0x1680, 0x1680),
    (0x2000, 0x200A),
    (0x2028, 0x2029),
    (0x202F, 0x202F),
    (0x205F, 0x205F),
    (0x3000, 0x3000),
];
/// Unicode's default-ignorable code points (zero-width spaces and joiners, marks,
/// fillers, variation selectors, the BOM, …) and the braille blank often used to fake an
/// empty name.
const IGNORABLE: Ranges = &[
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x2800, 0x2800),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
];
/// Embeddings, overrides and isolates.
const BIDI_CONTROL: Ranges = &[(0x202A, 0x202E), (0x2066, 0x2069)];

/// Characters that show nothing: whitespace and [`IGNORABLE`].
fn invisible(c: char) -> bool {
    c.is_whitespace() || in_ranges(IGNORABLE, c)
}

/// Embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069), which can make a
/// name display as something else ("gnp.exe"): refused in names. The marks LRM, RLM and
/// ALM are allowed (right-to-left names need them); they just do not count as visible.
fn bidi_control(c: char) -> bool {
    in_ranges(BIDI_CONTROL, c)
}

/// A name others see (nickname, group name, remark, group nickname): [`text`], plus at
/// least one visible character when not empty, and no bidirectional controls.
pub fn display_name(field: &str, v: &str, max: usize, allow_empty: bool) -> Result<String> {
    let v = text(field, v, max, allow_empty)?;
    if v.chars().any(bidi_control) {
        return Err(Error::invalid(field, format!("{field} must not contain bidirectional control characters")));
    }
    if !v.is_empty() && v.chars().all(invisible) {
        return Err(Error::invalid(field, format!("{field} must contain a visible character")));
    }
    Ok(v)
}

pub fn avatar(field: &str, v: &str) -> Result<String> {
    let v = text(field, v, AVATAR_MAX, true)?;
    if v.chars().any(char::is_whitespace) {
        return Err(Error::invalid(field, format!("{field} must be a URL without spaces")));
    }
    Ok(v)
}

/// Lower-cased, trimmed e-mail address with a minimal shape check (one `@`, a dot in
/// the domain). Deliverability is not our business; uniqueness is.
pub fn email(field: &str, v: &str) -> Result<String> {
    let v = v.trim().to_lowercase();
    let bad = || Error::invalid(field, format!("{field} must be an e-mail address such as name@example.com"));
    if v.len() > 254 || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    let (local, domain) = v.split_once('@').ok_or_else(bad)?;
    if local.is_empty()
        || local.len() > 64
        || domain.contains('@')
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
    {
        return Err(bad());
    }
    Ok(v)
}

/// A mobile number in E.164 form (`+` then 6 to 15 digits); spaces and dashes are dropped.
pub fn mobile(field: &str, v: &str) -> Result<String> {
    let v: String = v.trim().chars().filter(|c| *c != ' ' && *c != '-').collect();
    let digits = v.strip_prefix('+').unwrap_or("");
    let ok = (6..=15).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit()) && !digits.starts_with('0');
    if !ok {
        return Err(Error::invalid(
            field,
            format!("{field} must be a mobile number in E.164 form such as +8613800138000"),
        ));
    }
    Ok(v)
}

pub fn password(field: &str, v: &str) -> Result<()> {
    let n = v.chars().count();
    if !(PASSWORD_MIN..=PASSWORD_MAX).contains(&n) {
        return Err(Error::invalid(field, format!("{field} must be {PASSWORD_MIN} to {PASSWORD_MAX} characters")));
    }
    Ok(())
}

/// A birthday: a calendar date written `YYYY-MM-DD` (RFC 3339's `full-date`, what the
/// OpenAPI document's `format: date` says), nothing around it. Its plausibility is the
/// client's to judge: any real date is kept as given.
pub fn birthday(field: &str, v: &str) -> Result<String> {
    let bad = || Error::invalid(field, format!("{field} must be a calendar date YYYY-MM-DD"));
    let b = v.as_bytes();
    let shape = b.len() == 10
        && b.iter().enumerate().all(|(i, c)| if i == 4 || i == 7 { *c == b'-' } else { c.is_ascii_digit() });
    if !shape {
        return Err(bad());
    }
    chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").map_err(|_| bad())?;
    Ok(v.to_owned())
}

/// Page size: default 50, at most 200.
pub fn limit(v: Option<u32>) -> Result<u32> {
    match v {
        None => Ok(50),
        Some(n) if (1..=200).contains(&n) => Ok(n),
        Some(_) => Err(Error::invalid("limit", "limit must be between 1 and 200")),
    }
}

/// The same rules as JSON Schemas, for the OpenAPI document: each pattern matches exactly
/// the strings its parser above accepts (the length is `maxLength`). Patterns are ECMA-262
/// with the `u` flag, and read the same by Python's `re` and Rust's `regex`: BMP code points
/// as `\uXXXX`, others as themselves.
#[cfg(feature = "openapi")]
pub mod schema {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};

    use super::{BIDI_CONTROL, CONTROL, IGNORABLE, Ranges, WHITESPACE};

    /// A character class of the union of `sets`, negated or not.
    fn class(negated: bool, sets: &[Ranges]) -> String {
        let mut all: Vec<(u32, u32)> = sets.iter().flat_map(|s| s.iter().copied()).collect();
        all.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::new();
        for (lo, hi) in all {
            match merged.last_mut() {
                Some(last) if lo <= last.1 + 1 => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        let one = |c: u32| match char::from_u32(c) {
            Some(ch) if c > 0xFFFF => ch.to_string(),
            _ => format!("\\u{c:04X}"),
        };
        let mut out = String::from(if negated { "[^" } else { "[" });
        for (lo, hi) in merged {
            out.push_str(&one(lo));
            if hi > lo {
                out.push('-');
                out.push_str(&one(hi));
            }
        }
        out.push(']');
        out
    }

    /// `core` with whitespace around it, which the parsers trim.
    pub fn trimmed(core: &str) -> String {
        let ws = class(false, &[WHITESPACE]);
        format!("^{ws}*{core}{ws}*$")
    }

    /// A trimmed text of [`super::text`]: no control character; not empty unless `allow_empty`.
    pub fn text_pattern(allow_empty: bool) -> String {
        let edge = class(true, &[CONTROL, WHITESPACE]);
        let inner = class(true, &[CONTROL]);
        let core = format!("{edge}(?:{inner}*{edge})?");
        trimmed(&if allow_empty { format!("(?:{core})?") } else { core })
    }

    /// A name of [`super::display_name`]: [`text_pattern`], no bidirectional control and
    /// at least one visible character.
    pub fn display_name_pattern(allow_empty: bool) -> String {
        let edge = class(true, &[CONTROL, BIDI_CONTROL, WHITESPACE]);
        let inner = class(true, &[CONTROL, BIDI_CONTROL]);
        let visible = class(true, &[CONTROL, BIDI_CONTROL, WHITESPACE, IGNORABLE]);
        let core = format!("(?:{edge}{inner}*)?{visible}(?:{inner}*{edge})?");
        trimmed(&if allow_empty { format!("(?:{core})?") } else { core })
    }

    /// `content.text` of a text message: something besides whitespace, no ASCII control
    /// character other than tab and line breaks.
    pub fn message_text_pattern() -> String {
        let ascii_control: Ranges = &[(0x00, 0x08), (0x0B, 0x0C), (0x0E, 0x1F), (0x7F, 0x7F)];
        let any = class(true, &[ascii_control]);
        let solid = class(true, &[ascii_control, WHITESPACE]);
        format!("^{any}*{solid}{any}*$")
    }

    /// A reaction of [`super::reaction`] (its length is the schema's `minLength` and
    /// `maxLength`): something besides dots.
    pub fn reaction_pattern() -> String {
        let any = class(true, &[CONTROL, WHITESPACE, BIDI_CONTROL]);
        let solid = class(true, &[CONTROL, WHITESPACE, BIDI_CONTROL, &[(0x2E, 0x2E)]]);
        format!("^{any}*{solid}{any}*$")
    }

    /// Any text without control characters, as it is (not trimmed).
    pub fn no_control_pattern() -> String {
        format!("^{}*$", class(true, &[CONTROL]))
    }

    /// An e-mail address [`super::email`] accepts (ASCII only here; `maxLength` 254).
    pub const EMAIL_PATTERN: &str = r"^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})+$";
    /// A mobile number [`super::mobile`] accepts, written without spaces or dashes.
    pub const MOBILE_PATTERN: &str = r"^\+[1-9][0-9]{5,14}$";

    fn string(nullable: bool) -> ObjectBuilder {
        if nullable {
            ObjectBuilder::new().schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        } else {
            ObjectBuilder::new().schema_type(SchemaType::Type(Type::String))
        }
    }

    /// A string of [`super::text`] with at most `max` characters.
    pub fn text(max: usize, allow_empty: bool, nullable: bool) -> ObjectBuilder {
        string(nullable).pattern(Some(text_pattern(allow_empty))).max_length(Some(max))
    }

    /// A string of [`super::display_name`] with at most `max` characters.
    pub fn display_name(max: usize, allow_empty: bool, nullable: bool) -> ObjectBuilder {
        string(nullable).pattern(Some(display_name_pattern(allow_empty))).max_length(Some(max))
    }

    /// [`super::password`]: 8 to 128 characters.
    pub fn password() -> ObjectBuilder {
        string(false).min_length(Some(super::PASSWORD_MIN)).max_length(Some(super::PASSWORD_MAX))
    }

    /// [`super::avatar`]: at most 256 characters, no whitespace or control character.
    pub fn avatar(nullable: bool) -> ObjectBuilder {
        let solid = class(true, &[CONTROL, WHITESPACE]);
        string(nullable).pattern(Some(trimmed(&format!("{solid}*")))).max_length(Some(super::AVATAR_MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_limits_count_characters() {
        assert!(nickname("nickname", &"字".repeat(64)).is_ok());
        let e = nickname("nickname", &"字".repeat(65)).unwrap_err();
        assert_eq!(e.field(), Some("nickname"));
        assert!(nickname("nickname", "   ").is_err());
        assert!(nickname("nickname", "a\u{0007}b").is_err());
        assert_eq!(nickname("nickname", "  Ann ").unwrap(), "Ann");
        for fake in ["\u{200B}", "\u{200B}\u{200D}\u{FEFF}", "\u{2800}", "\u{3164}"] {
            let e = nickname("nickname", fake).unwrap_err();
            assert!(e.to_string().contains("visible") || format!("{e:?}").contains("visible"), "{fake:?}: {e:?}");
        }
        assert!(format!("{:?}", nickname("nickname", "abc\u{202E}exe.gnp").unwrap_err()).contains("bidirectional"));
        assert!(nickname("nickname", "\u{200F}שלום").is_ok(), "an RTL mark in a Hebrew name");
        assert!(display_name("remarkName", "", 64, true).is_ok(), "an empty remark clears it");
    }

    #[test]
    fn reactions() {
        for ok in ["👍", "👨\u{200D}👩\u{200D}👧", "❤\u{FE0F}", ":+1:", &"字".repeat(32), "...!"] {
            assert_eq!(reaction("emoji", ok).unwrap(), ok);
        }
        for bad in ["", " ", "a b", "\u{7}", "\u{202E}x", &"x".repeat(33), ".", ".."] {
            assert_eq!(reaction("emoji", bad).unwrap_err().field(), Some("emoji"), "{bad:?}");
        }
    }

    /// Each pattern of [`schema`] against its parser, on every BMP character and a
    /// sample of the others, alone and among letters and spaces.
    #[cfg(feature = "openapi")]
    #[test]
    fn the_schema_patterns_accept_exactly_what_the_parsers_accept() {
        type Parser = Box<dyn Fn(&str) -> bool>;
        let cases: Vec<(String, Parser)> = vec![
            (schema::text_pattern(false), Box::new(|v| text("f", v, usize::MAX, false).is_ok())),
            (schema::text_pattern(true), Box::new(|v| text("f", v, usize::MAX, true).is_ok())),
            (schema::display_name_pattern(false), Box::new(|v| display_name("f", v, usize::MAX, false).is_ok())),
            (schema::display_name_pattern(true), Box::new(|v| display_name("f", v, usize::MAX, true).is_ok())),
            (
                schema::message_text_pattern(),
                Box::new(|v| {
                    crate::message::validate_content(
                        crate::message::MessageType::Text,
                        &serde_json::json!({ "text": v }),
                    )
                    .is_ok()
                }),
            ),
            (schema::reaction_pattern(), Box::new(|v| reaction("f", v).is_ok())),
        ];
        let astral = [0x1_0000, 0x1_F600, 0x1BC9F, 0x1BCA0, 0x1BCA3, 0x1BCA4, 0x1D172, 0x1D173, 0x1D17A, 0x1D17B];
        let astral = astral.into_iter().chain([0xDFFFF, 0xE0000, 0xE0001, 0xE0FFF, 0xE1000, 0x10FFFF]);
        let chars: Vec<char> = (0..=0xFFFF).chain(astral).filter_map(char::from_u32).collect();
        for (pattern, parses) in &cases {
            let re = regex::Regex::new(pattern).unwrap();
            for c in &chars {
                for v in [c.to_string(), format!("a{c}"), format!("{c}b"), format!(" {c}{c} "), format!("a {c} b")] {
                    assert_eq!(re.is_match(&v), parses(&v), "{pattern} on {v:?}");
                }
            }
            for v in ["", " ", "\t", " \n ", "a\tb", "\u{200B}", "\u{200F}שלום", ".", "..", "a."] {
                assert_eq!(re.is_match(v), parses(v), "{pattern} on {v:?}");
            }
        }
        let re = regex::Regex::new(schema::EMAIL_PATTERN).unwrap();
        for ok in ["ann@example.com", "a.b+c@mail.example.co.uk"] {
            assert!(re.is_match(ok) && email("a", ok).is_ok(), "{ok}");
        }
        let re = regex::Regex::new(schema::MOBILE_PATTERN).unwrap();
        for ok in ["+8613800138000", "+123456"] {
            assert!(re.is_match(ok) && mobile("a", ok).is_ok(), "{ok}");
        }
    }

    #[cfg(feature = "openapi")]
    #[test]
    fn the_character_tables_are_the_standard_library_s() {
        for c in (0..=0x10FFFF).filter_map(char::from_u32) {
            assert_eq!(in_ranges(CONTROL, c), c.is_control(), "{c:?}");
            assert_eq!(in_ranges(WHITESPACE, c), c.is_whitespace(), "{c:?}");
        }
    }

    #[test]
    fn accounts() {
        assert_eq!(email("account", " Ann@Example.COM ").unwrap(), "ann@example.com");
        for bad in ["ann", "ann@", "@x.com", "a@b", "a b@c.com", "a@@b.com"] {
            assert!(email("account", bad).is_err(), "{bad}");
        }
        assert_eq!(mobile("account", "+86 138-0013-8000").unwrap(), "+8613800138000");
        for bad in ["13800138000", "+0123456", "+12", "+1234567890123456", "+12a4567"] {
            assert!(mobile("account", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn birthdays() {
        for good in ["1990-02-28", "0001-01-01", "2999-12-31", "2000-02-29"] {
            assert_eq!(birthday("birthday", good).unwrap(), good);
        }
        for bad in ["1990-02-30", "1900-02-29", " 1990-02-28", "1990-2-3", "+1990-02-28", "yesterday", ""] {
            assert!(birthday("birthday", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn limits() {
        assert_eq!(limit(None).unwrap(), 50);
        assert_eq!(limit(Some(200)).unwrap(), 200);
        assert!(limit(Some(0)).is_err());
        assert!(limit(Some(201)).is_err());
    }
}
