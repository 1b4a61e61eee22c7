//! `.authconfig`: the classic developer tool's file of the user's inputs, in the connector
//! folder. JSON (`{"client_id": "..."}`) or `key=value` lines (`#` comments, blank lines, and an
//! optional `export ` in front); keys are lower-cased, as the classic tool did.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::ConnectorError;

/// The file name, in the connector folder.
pub const AUTHCONFIG: &str = ".authconfig";

/// Reads `dir/.authconfig` if there is one.
pub fn read_authconfig(dir: &Path) -> Result<Option<BTreeMap<String, String>>, ConnectorError> {
    let path = dir.join(AUTHCONFIG);
    match std::fs::read_to_string(&path) {
        Ok(text) => parse_authconfig(&path, &text).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ConnectorError::Unreadable { path, reason: e.to_string() }),
    }
}

/// Parses the text of an `.authconfig` file (`path` names it in errors, which never quote a
/// value).
pub fn parse_authconfig(
    path: &Path,
    text: &str,
) -> Result<BTreeMap<String, String>, ConnectorError> {
    let malformed = |line: usize, column: usize, reason: String| ConnectorError::Malformed {
        path: path.to_owned(),
        line,
        column,
        reason,
    };
    // A byte-order mark (as some editors write) is not part of the first key.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim_start().starts_with('{') {
        let value: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text)
            // serde's message may quote the text it choked on: only its category is kept.
            .map_err(|e| {
                malformed(
                    e.line(),
                    e.column(),
                    format!("not a JSON object of strings ({:?} error)", e.classify()),
                )
            })?;
        return value
            .into_iter()
            .map(|(key, value)| match value {
                serde_json::Value::String(text) => Ok((key.to_lowercase(), text)),
                serde_json::Value::Number(n) => Ok((key.to_lowercase(), n.to_string())),
                serde_json::Value::Bool(b) => Ok((key.to_lowercase(), b.to_string())),
                _ => Err(malformed(1, 1, format!("`{key}` is not a string"))),
            })
            .collect();
    }
    let mut values = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let trimmed = trimmed.strip_prefix("export ").unwrap_or(trimmed);
        let Some((key, value)) = trimmed.split_once('=') else {
            let column = line.len() - line.trim_start().len() + 1;
            return Err(malformed(number + 1, column, "expected key=value".into()));
        };
        let at = |offset: usize| number_column(line, offset);
        // Where the value starts in the line (it is a slice of it).
        let value_at = value.as_ptr() as usize - line.as_ptr() as usize;
        let value = value_of(value).map_err(|(offset, reason)| {
            malformed(number + 1, at(value_at + offset), reason.into())
        })?;
        values.insert(key.trim().to_lowercase(), value.to_owned());
    }
    Ok(values)
}

/// A line's value: quoted (`"..."` or `'...'`, taken as written, a comment after it allowed) or
/// bare (trimmed, and ending where ` #` starts a comment, as in shell and dotenv files). An
/// error is its byte offset in `raw` and the reason, which never quotes the value.
fn value_of(raw: &str) -> Result<&str, (usize, &'static str)> {
    let lead = raw.len() - raw.trim_start().len();
    let value = raw.trim_start();
    if let Some(quote) = value.chars().next().filter(|c| *c == '"' || *c == '\'') {
        let Some(close) = value[1..].find(quote).map(|i| i + 1) else {
            return Err((lead, "the quoted value is never closed"));
        };
        let rest = value[close + 1..].trim_start();
        if !rest.is_empty() && !rest.starts_with('#') {
            return Err((lead + close + 1, "text after the closing quote"));
        }
        return Ok(&value[1..close]);
    }
    let end = value
        .char_indices()
        .find(|(i, c)| *c == '#' && value[..*i].ends_with(char::is_whitespace))
        .map_or(value.len(), |(i, _)| i);
    Ok(value[..end].trim_end())
}

/// The 1-based column (in characters) of a byte offset of `line`.
fn number_column(line: &str, offset: usize) -> usize {
    line[..offset.min(line.len())].chars().count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_formats_of_the_classic_tool_are_read_with_lower_cased_keys() {
        let path = Path::new("c/.authconfig");
        let json = parse_authconfig(
            path,
            r#"{"CLIENT_ID": "app", "client_secret": "s3cret", "port": 8080}"#,
        )
        .unwrap();
        assert_eq!(json["client_id"], "app");
        assert_eq!(json["client_secret"], "s3cret");
        assert_eq!(json["port"], "8080");
        let lines = parse_authconfig(
            path,
            "# mine\nCONSUMER_TOKEN=abc=def\n\nexport employee_token = \"xyz\"\n",
        )
        .unwrap();
        assert_eq!(lines["consumer_token"], "abc=def");
        assert_eq!(lines["employee_token"], "xyz");
    }

    #[test]
    fn a_bad_line_is_named_without_its_value() {
        let error =
            parse_authconfig(Path::new("c/.authconfig"), "api_key=1\n  s3cretvalue\n").unwrap_err();
        assert_eq!(error.to_string(), "c/.authconfig:2:3: expected key=value");
        let error =
            parse_authconfig(Path::new("c/.authconfig"), "{\"api_key\": \"s3cret").unwrap_err();
        assert!(!error.to_string().contains("s3cret"), "{error}");
    }

    #[test]
    fn a_byte_order_mark_and_comments_after_values_are_not_part_of_anything() {
        let path = Path::new("c/.authconfig");
        let lines =
            parse_authconfig(path, "\u{feff}api_key=k1 # the sandbox key\nb=x#y\n").unwrap();
        assert_eq!(lines["api_key"], "k1");
        assert_eq!(lines["b"], "x#y", "a # inside a bare value is the value's");
        let quoted = parse_authconfig(path, "a=\"s p # not a comment\"  # a comment\n").unwrap();
        assert_eq!(quoted["a"], "s p # not a comment");
        let json = parse_authconfig(path, "\u{feff}{\"API_KEY\": \"k2\"}").unwrap();
        assert_eq!(json["api_key"], "k2", "JSON with a mark is still JSON");
        let error = parse_authconfig(path, "a = \"s3cret\" trailing\n").unwrap_err();
        assert_eq!(error.to_string(), "c/.authconfig:1:13: text after the closing quote");
        let error = parse_authconfig(path, "a='s3cret\n").unwrap_err();
        assert_eq!(error.to_string(), "c/.authconfig:1:3: the quoted value is never closed");
    }
}
