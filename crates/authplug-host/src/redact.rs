//! Scrubbing known secret values out of text that came from a plugin (errors, panic messages).
//!
//! The host knows every value it handed to a call, so whatever a plugin says back is cleaned of
//! them before it reaches a log line or an error message.

use authplug_protocol::Secret;

/// Values shorter than this are not scrubbed: they would mangle ordinary words, and no real
/// credential is that short.
const MIN_LEN: usize = 4;

/// Replaces every occurrence of each of `secrets` in `text` with `[redacted]`.
pub(crate) fn scrub<'a>(text: &str, secrets: impl IntoIterator<Item = &'a Secret>) -> String {
    let mut values: Vec<&str> =
        secrets.into_iter().map(Secret::expose).filter(|v| v.len() >= MIN_LEN).collect();
    // Longest first, so a value containing another is replaced whole.
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    let mut out = text.to_owned();
    for value in values {
        out = out.replace(value, "[redacted]");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_every_occurrence_longest_first() {
        let secrets = [Secret::new("abcd"), Secret::new("abcdef"), Secret::new("xy")];
        assert_eq!(
            scrub("k=abcdef, again abcd, short xy", &secrets),
            "k=[redacted], again [redacted], short xy"
        );
    }
}
