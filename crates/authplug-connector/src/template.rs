//! Finding the references in a template's text: `$SECRET(name)` and `$ENV(name)` (resolved when
//! the system is configured), `secret('name')` (read by runtime Jinja) and `{{@ name @}}`
//! (expanded when the templates are rendered). Runtime Jinja (`{{ ... }}`) is not ours to read.
//!
//! Templates are scanned as text, not parsed as JSON: before expansion a `{{@ @}}` may stand
//! where JSON expects a value.

use serde::Serialize;

use crate::manifest::line_column;

/// What a reference refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReferenceKind {
    /// `$SECRET(name)`: a secret of the system.
    Secret,
    /// `secret('name')`: a secret read by runtime Jinja.
    RuntimeSecret,
    /// `$ENV(name)`: a global environment variable.
    Env,
    /// `{{@ name @}}`: an expansion-time variable.
    Variable,
    /// An opening that is never closed on its line (`name` holds the opening).
    Unclosed,
}

/// One reference, with its 1-based line and column (in characters).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reference {
    pub kind: ReferenceKind,
    pub name: String,
    pub line: usize,
    pub column: usize,
    /// Where the reference's text ends (a byte offset in the template), for rendering.
    #[serde(skip)]
    pub end: usize,
    /// Where it starts (a byte offset).
    #[serde(skip)]
    pub start: usize,
}

impl Reference {
    /// How the reference is written, for messages.
    pub fn display(&self) -> String {
        match self.kind {
            ReferenceKind::Secret => format!("$SECRET({})", self.name),
            ReferenceKind::RuntimeSecret => format!("secret('{}')", self.name),
            ReferenceKind::Env => format!("$ENV({})", self.name),
            ReferenceKind::Variable => format!("{{{{@ {} @}}}}", self.name),
            ReferenceKind::Unclosed => self.name.clone(),
        }
    }
}

/// Every reference in `text`, in order.
pub fn scan(text: &str) -> Vec<Reference> {
    let mut found = Vec::new();
    let mut at = 0;
    while at < text.len() {
        let rest = &text[at..];
        let matched = if rest.starts_with("$SECRET(") {
            call(text, at, "$SECRET(", ReferenceKind::Secret)
        } else if rest.starts_with("$ENV(") {
            call(text, at, "$ENV(", ReferenceKind::Env)
        } else if rest.starts_with("secret(") && !follows_identifier(text, at) {
            runtime_secret(text, at)
        } else if rest.starts_with("{{@") {
            variable(text, at)
        } else {
            None
        };
        match matched {
            Some(reference) => {
                at = reference.end.max(at + 1);
                found.push(reference);
            }
            None => at += rest.chars().next().map_or(1, char::len_utf8),
        }
    }
    found
}

fn follows_identifier(text: &str, at: usize) -> bool {
    text[..at].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.')
}

fn reference(text: &str, kind: ReferenceKind, name: &str, start: usize, end: usize) -> Reference {
    let (line, column) = line_column(text, start);
    Reference { kind, name: name.to_owned(), line, column, start, end }
}

/// The rest of the line from `from`.
fn line_from(text: &str, from: usize) -> &str {
    let rest = &text[from..];
    &rest[..rest.find('\n').unwrap_or(rest.len())]
}

/// `$SECRET(name)` or `$ENV(name)`.
fn call(text: &str, start: usize, opening: &str, kind: ReferenceKind) -> Option<Reference> {
    let inner = start + opening.len();
    let line = line_from(text, inner);
    match line.find(')') {
        Some(close) => {
            let name = &line[..close];
            Some(reference(text, kind, name.trim(), start, inner + close + 1))
        }
        None => Some(reference(text, ReferenceKind::Unclosed, opening, start, inner)),
    }
}

/// `secret('name')` or `secret("name")`; anything else named `secret(` is not ours.
fn runtime_secret(text: &str, start: usize) -> Option<Reference> {
    let inner = start + "secret(".len();
    let line = line_from(text, inner);
    let quote = line.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let close = line[1..].find(quote)? + 1;
    if !line[close + 1..].starts_with(')') {
        return None;
    }
    let name = &line[1..close];
    Some(reference(text, ReferenceKind::RuntimeSecret, name, start, inner + close + 2))
}

/// `{{@ expression @}}`: the variable is the expression's leading name (`{{@ x | upper @}}`
/// reads `x`); an expression that starts with anything else reads no variable.
fn variable(text: &str, start: usize) -> Option<Reference> {
    let inner = start + 3;
    let line = line_from(text, inner);
    let Some(close) = line.find("@}}") else {
        return Some(reference(text, ReferenceKind::Unclosed, "{{@", start, inner));
    };
    let expression = line[..close].trim();
    let name: String =
        expression.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return None; // a literal, or an expression of no variable
    }
    let end = inner + close + 3;
    Some(reference(text, ReferenceKind::Variable, &name, start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(text: &str) -> Vec<(ReferenceKind, String, usize, usize)> {
        scan(text).into_iter().map(|r| (r.kind, r.name, r.line, r.column)).collect()
    }

    #[test]
    fn every_kind_is_found_with_its_place() {
        let text = "{\n  \"headers\": {\"Authorization\": \"Bearer $SECRET(api_key)\", \"SO-Apptoken\": \"$SECRET(SO-Apptoken)\"},\n  \"url\": \"$ENV(base_url)/{{@ datatype @}}\",\n  \"check\": \"{{ secret('webhook_secret') }} {{ get_secret('no') }}\",\n  \"n\": {{@ page_size|int @}}\n}";
        use ReferenceKind::*;
        assert_eq!(
            seen(text),
            [
                (Secret, "api_key".into(), 2, 40),
                (Secret, "SO-Apptoken".into(), 2, 75),
                (Env, "base_url".into(), 3, 11),
                (Variable, "datatype".into(), 3, 26),
                (RuntimeSecret, "webhook_secret".into(), 4, 16),
                (Variable, "page_size".into(), 5, 8),
            ]
        );
    }

    #[test]
    fn runtime_jinja_and_literals_are_left_alone() {
        assert_eq!(seen("{{ system }} {{@ 'text' @}} {% if x %}"), []);
        assert_eq!(seen("\"$SECRET(x)\" and ünïcode $ENV(y)")[1].3, 26, "columns count characters");
    }

    #[test]
    fn an_unclosed_opening_is_reported_where_it_opens() {
        use ReferenceKind::*;
        assert_eq!(
            seen("ok\n  \"$SECRET(api_key\"\n{{@ system }}"),
            [(Unclosed, "$SECRET(".into(), 2, 4), (Unclosed, "{{@".into(), 3, 1)]
        );
    }
}
