//! Validated values. Each parser names the field it checks so a 400 can say which
//! input was wrong. Lengths are counted in Unicode scalar values, not bytes.

use crate::error::{Error, Result};

/// Trims `value` and checks it is at most `max` characters with no control characters.
pub fn text(field: &str, value: &str, max: usize, allow_empty: bool) -> Result<String> {
    let v = value.trim();
    if !allow_empty && v.is_empty() {
        return Err(Error::invalid(field, format!("{field} must not be empty")));
    }
    let n = v.chars().count();
    if n > max {
        return Err(Error::invalid(field, format!("{field} must be at most {max} characters (got {n})")));
    }
    if v.chars().any(char::is_control) {
        return Err(Error::invalid(field, format!("{field} must not contain control characters")));
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

/// Characters that show nothing: whitespace and Unicode's default-ignorable code points
/// (zero-width spaces and joiners, marks, fillers, variation selectors, the BOM, …) and
/// the braille blank often used to fake an empty name.
fn invisible(c: char) -> bool {
    c.is_whitespace()
        || matches!(c as u32,
            0x00AD | 0x034F | 0x061C | 0x115F | 0x1160 | 0x17B4 | 0x17B5 | 0x180B..=0x180F
            | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F | 0x2800 | 0x3164
            | 0xFE00..=0xFE0F | 0xFEFF | 0xFFA0 | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A
            | 0xE0000..=0xE0FFF)
}

/// Embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069), which can make a
/// name display as something else ("gnp.exe"): refused in names. The marks LRM, RLM and
/// ALM are allowed (right-to-left names need them); they just do not count as visible.
fn bidi_control(c: char) -> bool {
    matches!(c as u32, 0x202A..=0x202E | 0x2066..=0x2069)
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

/// A birthday as `YYYY-MM-DD`, a real date between 1900-01-01 and today.
pub fn birthday(field: &str, v: &str) -> Result<String> {
    let bad = || Error::invalid(field, format!("{field} must be a date YYYY-MM-DD between 1900-01-01 and today"));
    let d = chrono::NaiveDate::parse_from_str(v.trim(), "%Y-%m-%d").map_err(|_| bad())?;
    let today = chrono::Utc::now().date_naive();
    let min = chrono::NaiveDate::from_ymd_opt(1900, 1, 1).ok_or_else(bad)?;
    if d < min || d > today || v.trim().len() != 10 {
        return Err(bad());
    }
    Ok(d.format("%Y-%m-%d").to_string())
}

/// Page size: default 50, at most 200.
pub fn limit(v: Option<u32>) -> Result<u32> {
    match v {
        None => Ok(50),
        Some(n) if (1..=200).contains(&n) => Ok(n),
        Some(_) => Err(Error::invalid("limit", "limit must be between 1 and 200")),
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
        assert_eq!(birthday("birthday", "1990-02-28").unwrap(), "1990-02-28");
        for bad in ["1990-02-30", "1899-12-31", "2999-01-01", "1990-2-3", "yesterday"] {
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
