//! What an `apply` may hand a connector: header names that are HTTP tokens and values an HTTP
//! header can carry. A stored secret holding CR, LF or NUL (pasted with its line end, or planted
//! to split a request) never leaves as a header value.

use authplug_protocol::ApplyResponse;

/// Why `answer` cannot be sent as headers, if it cannot; never quoting a value.
pub(crate) fn unsendable(answer: &ApplyResponse) -> Option<String> {
    for (name, value) in &answer.headers {
        let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if name.is_empty() || !name.bytes().all(token) {
            return Some(format!("header name {:?} is not an HTTP token", name.escape_default()));
        }
        // RFC 9110 field values: visible characters, spaces and tabs; no CR, LF, NUL or other
        // control character.
        let bad =
            value.expose().bytes().find(|b| (b.is_ascii_control() && *b != b'\t') || *b == 0x7f);
        if let Some(byte) = bad {
            let what = match byte {
                b'\r' => "CR".to_owned(),
                b'\n' => "LF".to_owned(),
                0 => "NUL".to_owned(),
                other => format!("the control character 0x{other:02x}"),
            };
            return Some(format!(
                "header `{name}`'s value holds {what}, which a header cannot carry (a stored secret pasted with a line end?): store the secret again without it"
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use authplug_protocol::Secret;

    use super::*;

    fn answer(name: &str, value: &str) -> ApplyResponse {
        ApplyResponse { headers: vec![(name.into(), Secret::new(value))], query: vec![] }
    }

    #[test]
    fn values_with_line_ends_or_nul_and_names_that_are_not_tokens_are_refused() {
        assert_eq!(unsendable(&answer("Authorization", "Bearer a\tb")), None);
        for (value, what) in [("k\r\nX-Evil: 1", "CR"), ("k\n", "LF"), ("k\0", "NUL")] {
            let why = unsendable(&answer("X-Api-Key", value)).unwrap();
            assert!(why.starts_with(&format!("header `X-Api-Key`'s value holds {what}")), "{why}");
            assert!(!why.contains("Evil"), "the value is not quoted");
        }
        assert!(unsendable(&answer("X Api Key", "k")).unwrap().contains("not an HTTP token"));
    }
}
