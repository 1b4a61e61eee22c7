//! Finding the references in a template's text: `$SECRET(name)` and `$ENV(name)` (resolved when
//! the system is configured), `secret('name')` (read by runtime Jinja) and `{{@ name @}}`
//! (expanded when the templates are rendered). Runtime Jinja (`{{ ... }}`) is not ours to read.
//!
//! Templates are scanned as text, not parsed as JSON: before expansion a `{{@ @}}` may stand
//! where JSON expects a value.

use serde::Serialize;

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

/// Every reference in `text`, in order. Linear in the text's length: each closing token is
/// searched for once per stretch of text, and places are counted as the scan moves on.
pub fn scan(text: &str) -> Vec<Reference> {
    let mut scanner = Scanner::new(text);
    let mut found = Vec::new();
    let bytes = text.as_bytes();
    let mut at = 0;
    while let Some(next) = bytes[at..].iter().position(|b| matches!(b, b'$' | b's' | b'{')) {
        // An ASCII byte: `at` stays on a character boundary.
        at += next;
        let rest = &text[at..];
        let matched = if rest.starts_with("$SECRET(") {
            scanner.call(at, "$SECRET(", ReferenceKind::Secret)
        } else if rest.starts_with("$ENV(") {
            scanner.call(at, "$ENV(", ReferenceKind::Env)
        } else if rest.starts_with("secret(") && !follows_identifier(text, at) {
            scanner.runtime_secret(at)
        } else if rest.starts_with("{{@") {
            scanner.variable(at)
        } else {
            None
        };
        match matched {
            Some(reference) => {
                at = reference.end.max(at + 1);
                found.push(reference);
            }
            None => at += 1,
        }
    }
    found
}

fn follows_identifier(text: &str, at: usize) -> bool {
    text[..at].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.')
}

/// The next occurrence of a token at or after a place, remembered: a later question answered
/// by the same stretch of text does not search it again.
struct Next {
    token: &'static str,
    /// The last search: where it started and what it found.
    last: Option<(usize, Option<usize>)>,
}

impl Next {
    fn new(token: &'static str) -> Self {
        Self { token, last: None }
    }

    fn at_or_after(&mut self, text: &str, from: usize) -> Option<usize> {
        match self.last {
            Some((origin, Some(found))) if origin <= from && from <= found => return Some(found),
            Some((origin, None)) if origin <= from => return None,
            _ => {}
        }
        let found = text[from..].find(self.token).map(|i| from + i);
        self.last = Some((from, found));
        found
    }
}

struct Scanner<'t> {
    text: &'t str,
    newline: Next,
    paren: Next,
    single: Next,
    double: Next,
    close: Next,
    /// A byte offset and its line and column, moved forward as references are found.
    place: (usize, usize, usize),
}

impl<'t> Scanner<'t> {
    fn new(text: &'t str) -> Self {
        Self {
            text,
            newline: Next::new("\n"),
            paren: Next::new(")"),
            single: Next::new("'"),
            double: Next::new("\""),
            close: Next::new("@}}"),
            place: (0, 1, 1),
        }
    }

    /// `token`'s next occurrence at or after `from` on the same line.
    fn on_line(&mut self, which: fn(&mut Self) -> &mut Next, from: usize) -> Option<usize> {
        let text = self.text;
        let found = which(self).at_or_after(text, from)?;
        let line_end = self.newline.at_or_after(text, from).unwrap_or(text.len());
        (found < line_end).then_some(found)
    }

    fn reference(
        &mut self,
        kind: ReferenceKind,
        name: &str,
        start: usize,
        end: usize,
    ) -> Reference {
        let (mut offset, mut line, mut column) = self.place;
        if start < offset {
            (offset, line, column) = (0, 1, 1);
        }
        for c in self.text[offset..start].chars() {
            if c == '\n' {
                (line, column) = (line + 1, 1);
            } else {
                column += 1;
            }
        }
        self.place = (start, line, column);
        Reference { kind, name: name.to_owned(), line, column, start, end }
    }

    /// `$SECRET(name)` or `$ENV(name)`.
    fn call(&mut self, start: usize, opening: &str, kind: ReferenceKind) -> Option<Reference> {
        let inner = start + opening.len();
        match self.on_line(|s| &mut s.paren, inner) {
            Some(close) => {
                let name = self.text[inner..close].trim();
                Some(self.reference(kind, name, start, close + 1))
            }
            None => Some(self.reference(ReferenceKind::Unclosed, opening, start, inner)),
        }
    }

    /// `secret('name')` or `secret("name")`; anything else named `secret(` is not ours.
    fn runtime_secret(&mut self, start: usize) -> Option<Reference> {
        let inner = start + "secret(".len();
        let quote = self.text[inner..].chars().next().filter(|c| *c == '\'' || *c == '"')?;
        let which: fn(&mut Self) -> &mut Next =
            if quote == '\'' { |s| &mut s.single } else { |s| &mut s.double };
        let close = self.on_line(which, inner + 1)?;
        if !self.text[close + 1..].starts_with(')') {
            return None;
        }
        let name = &self.text[inner + 1..close];
        Some(self.reference(ReferenceKind::RuntimeSecret, name, start, close + 2))
    }

    /// `{{@ expression @}}`: the variable is the expression's leading name (`{{@ x | upper @}}`
    /// reads `x`); an expression that starts with anything else reads no variable.
    fn variable(&mut self, start: usize) -> Option<Reference> {
        let inner = start + 3;
        let Some(close) = self.on_line(|s| &mut s.close, inner) else {
            return Some(self.reference(ReferenceKind::Unclosed, "{{@", start, inner));
        };
        let expression = self.text[inner..close].trim();
        let name: String =
            expression.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return None; // a literal, or an expression of no variable
        }
        Some(self.reference(ReferenceKind::Variable, &name, start, close + 3))
    }
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
