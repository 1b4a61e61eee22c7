//! System ids: what every command and route accepts, and the store refuses to create anything
//! else. An id travels in URLs, file names, log lines and an operator's terminal, so it is plain:
//! 1 to 128 of `A-Z a-z 0-9 . _ -`, starting with a letter, a digit or `_` (a leading `-` would
//! read as a flag, a leading `.` as a hidden file).

use crate::StoreError;

/// The longest id.
pub const MAX_SYSTEM_ID: usize = 128;

/// `id` if it is a valid system id, or why not (the id shown escaped, never raw).
pub fn check_system_id(id: &str) -> Result<&str, StoreError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    let why = if id.is_empty() {
        "it is empty".to_owned()
    } else if id.chars().count() > MAX_SYSTEM_ID {
        format!("it is {} characters long, more than {MAX_SYSTEM_ID}", id.chars().count())
    } else if let Some(c) = id.chars().find(|c| !allowed(*c)) {
        format!("it holds {}", c.escape_default())
    } else if id.starts_with(['-', '.']) {
        "it starts with `-` or `.`".to_owned()
    } else {
        return Ok(id);
    };
    Err(StoreError::InvalidId { shown: escaped(id, 40), why })
}

/// `text` as a terminal may show it: control characters, bidirectional overrides and other
/// invisible formatting escaped (`\u{202e}`), and cut after `max` characters.
pub fn escaped(text: &str, max: usize) -> String {
    let mut shown = String::new();
    for (n, c) in text.chars().enumerate() {
        if n == max {
            shown.push('…');
            break;
        }
        let invisible = c.is_control()
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}');
        match invisible {
            true => shown.extend(c.escape_unicode()),
            false => shown.push(c),
        }
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_ids_pass_and_every_probe_is_refused_with_its_reason_escaped() {
        for good in ["hubspot-acme", "crm_1", "t.2", "A", &"x".repeat(128)] {
            assert!(check_system_id(good).is_ok(), "{good}");
        }
        let refused = |id: &str| check_system_id(id).unwrap_err().to_string();
        assert_eq!(refused(""), "system id \"\": it is empty; an id is 1 to 128 of A-Z, a-z, 0-9, `.`, `_` and `-`, not starting with `-` or `.`");
        assert!(refused("a\u{0}b").starts_with("system id \"a\\u{0}b\": it holds \\u{0}"));
        assert!(refused("a\r\nb").contains("it holds \\r"));
        assert!(refused("\u{1b}[31mred").starts_with("system id \"\\u{1b}[31mred\""));
        assert!(refused("evil\u{202e}txt").contains("\\u{202e}"));
        assert!(refused(&"x".repeat(10_000)).contains("it is 10000 characters long"));
        assert!(refused("-rf").contains("starts with"));
        assert!(refused("a/b").contains("it holds /"));
    }
}
