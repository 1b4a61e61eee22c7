//! The checks that need no call: a descriptor's shape, its reference page, an applied header.
//! Each answers the problem and how to fix it, or nothing.

use std::collections::{BTreeMap, BTreeSet};

use authplug_protocol::{ApplyResponse, SchemeDescriptor, Secret, Source};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// A problem and its fix.
pub(crate) type Problem = (String, String);

fn problem(what: impl Into<String>, fix: &str) -> Option<Problem> {
    Some((what.into(), fix.to_owned()))
}

/// `[a-z][a-z0-9_-]*`.
fn is_identifier(text: &str) -> bool {
    text.starts_with(|c: char| c.is_ascii_lowercase())
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Names, descriptions, pairs and paths, as the host and the reference page need them.
pub(crate) fn descriptor(d: &SchemeDescriptor) -> Option<Problem> {
    if !is_identifier(&d.id) {
        return problem(format!("id {:?} is not [a-z][a-z0-9_-]*", d.id), "rename the scheme");
    }
    if d.display_name.trim().is_empty() {
        return problem("display_name is empty", "name the scheme for its reference page");
    }
    if d.serves.is_empty() {
        return problem(
            "serves no (auth, auth_variant) pair",
            "list the pairs of the manifests it serves",
        );
    }
    for pair in &d.serves {
        if !is_identifier(&pair.auth)
            || pair.auth_variant.as_deref().is_some_and(|v| !is_identifier(v))
        {
            return problem(
                format!("serves {pair}: auth and auth_variant must be [a-z][a-z0-9_-]*"),
                "write the pair as manifests do",
            );
        }
    }
    let required: BTreeSet<&str> = d.required.iter().map(|r| r.name.as_str()).collect();
    for (kind, names) in [
        ("required", d.required.iter().map(|r| (&r.name, &r.description)).collect::<Vec<_>>()),
        ("injected", d.injected.iter().map(|i| (&i.name, &i.description)).collect()),
    ] {
        let mut seen = BTreeSet::new();
        for (name, description) in names {
            if name.trim().is_empty() || !seen.insert(name) {
                return problem(
                    format!("{kind} secret {name:?} is empty or declared twice"),
                    "give each secret one unique name",
                );
            }
            if description.trim().is_empty() {
                return problem(
                    format!("{kind} secret `{name}` has no description"),
                    "describe it: the reference page shows it",
                );
            }
        }
    }
    for injected in &d.injected {
        if let Source::Copied { from } = &injected.source {
            if !required.contains(from.as_str()) {
                return problem(
                    format!(
                        "injected `{}` is copied from `{from}`, which is not a required secret",
                        injected.name
                    ),
                    "name a required secret in Source::Copied",
                );
            }
        }
    }
    let renewed = d.injected.iter().any(|i| i.source == Source::Renewed);
    if renewed && !d.refresh.renews {
        return problem(
            "an injected secret is Source::Renewed but refresh.renews is false",
            "set refresh: RefreshPolicy { renews: true, .. } and implement refresh",
        );
    }
    let mut parameters = BTreeSet::new();
    for field in &d.manifest_fields {
        if field.path.split('.').any(str::is_empty) {
            return problem(
                format!("manifest field {:?} is not a dotted path", field.path),
                "write it as in manifest.json, e.g. `membercare.base_url`",
            );
        }
        let name = field.parameter();
        if !parameters.insert(name) {
            return problem(
                format!("two manifest fields arrive as the parameter `{name}`"),
                "a field arrives under its path's last segment: make those unique",
            );
        }
    }
    None
}

/// The scheme's section of the reference page: every table row present, every cell one line.
pub(crate) fn docs(d: &SchemeDescriptor) -> Option<Problem> {
    let mut page = String::new();
    authplug_sdk::docs::section(&mut page, d);
    let shown = d.required.iter().filter(|r| !r.operator).map(|r| (&r.name, &r.description));
    let shown =
        shown.chain(d.injected.iter().filter(|i| !i.compat).map(|i| (&i.name, &i.description)));
    for (name, description) in shown {
        if description.contains('\n') || name.contains('\n') {
            return problem(
                format!("the description of `{name}` spans lines, which breaks the page's table"),
                "keep a description on one line; put more in notes",
            );
        }
        if !page.contains(&format!("``{name}``")) {
            return problem(
                format!("the reference page lacks `{name}`"),
                "report this page to authplug",
            );
        }
    }
    if d.intro.as_deref().is_some_and(|i| i.contains('\n'))
        || d.notes.iter().any(|n| n.contains('\n'))
    {
        return problem("the intro or a note spans lines", "keep each on one line");
    }
    None
}

/// A header an `apply` answer adds: an RFC 9110 token for a name, a value without line breaks.
pub(crate) fn header(name: &str, value: &str) -> Option<Problem> {
    let tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(tchar) {
        return problem(
            format!("header name {name:?} is not an HTTP token"),
            "use a name such as `Authorization` or `X-Api-Key`",
        );
    }
    if value.chars().any(|c| c == '\r' || c == '\n' || c == '\0') {
        return problem(
            format!("the value of header `{name}` holds a line break or NUL"),
            "trim the secret before applying it",
        );
    }
    None
}

/// A scheme that declares its `apply` output short-lived must not put a secret the user gave
/// (an API key, a password) on the request, as it is or inside a Basic credential.
pub(crate) fn short_lived(
    d: &SchemeDescriptor,
    required: &BTreeMap<String, Secret>,
    applied: &ApplyResponse,
) -> Option<Problem> {
    if !d.apply_output.is_short_lived() {
        return None;
    }
    let carries = |value: &str, secret: &str| {
        let basic = value.strip_prefix("Basic ").and_then(|b| STANDARD.decode(b.trim()).ok());
        value.contains(secret)
            || basic.is_some_and(|d| String::from_utf8_lossy(&d).contains(secret))
    };
    let given = d.required.iter().filter(|r| r.secret);
    for r in given {
        let Some(secret) = required.get(&r.name).map(Secret::expose) else { continue };
        let all = applied.headers.iter().chain(&applied.query);
        if let Some((name, _)) = all.clone().find(|(_, v)| carries(v.expose(), secret)) {
            return problem(
                format!(
                    "apply_output is ShortLived, but `{name}` carries the required secret `{}`",
                    r.name
                ),
                "declare apply_output: ApplyOutput::LongLived",
            );
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use authplug_protocol::{AuthPair, InjectedSecret, ManifestField, RequiredSecret};

    fn good() -> SchemeDescriptor {
        SchemeDescriptor {
            id: "demo".into(),
            display_name: "Demo".into(),
            serves: vec![AuthPair::new("api_key", Some("demo"))],
            required: vec![RequiredSecret::new("key", "The key.")],
            injected: vec![InjectedSecret::new(
                "key",
                "The key.",
                Source::Copied { from: "key".into() },
            )],
            manifest_fields: vec![ManifestField::required("demo.base_url", "Where.")],
            ..SchemeDescriptor::default()
        }
    }

    #[test]
    fn a_good_descriptor_passes_and_each_flaw_is_named() {
        assert_eq!(descriptor(&good()), None);
        assert_eq!(docs(&good()), None);
        let mut copied = good();
        copied.injected[0].source = Source::Copied { from: "nope".into() };
        assert!(descriptor(&copied).unwrap().0.contains("`nope`"));
        let mut fields = good();
        fields.manifest_fields.push(ManifestField::optional("other.base_url", "Clash."));
        assert!(descriptor(&fields).unwrap().0.contains("`base_url`"));
        let mut id = good();
        id.id = "Demo".into();
        assert!(descriptor(&id).is_some());
        let mut lines = good();
        lines.required[0].description = "two\nlines".into();
        assert!(docs(&lines).unwrap().0.contains("spans lines"));
    }

    #[test]
    fn header_names_are_tokens_and_values_single_lines() {
        assert_eq!(header("Authorization", "Bearer x"), None);
        assert!(header("Bad Header", "x").is_some());
        assert!(header("X-Key", "a\r\nInjected: 1").is_some());
    }

    #[test]
    fn a_short_lived_apply_output_carries_no_secret_the_user_gave() {
        let mut d = good();
        d.required[0].secret = true;
        let given = BTreeMap::from([("key".to_owned(), Secret::new("k-123456"))]);
        let header = |v: &str| ApplyResponse {
            headers: vec![("Authorization".into(), Secret::new(v))],
            ..ApplyResponse::default()
        };
        let basic = format!("Basic {}", STANDARD.encode("user:k-123456"));
        d.apply_output = authplug_protocol::ApplyOutput::ShortLived;
        assert_eq!(short_lived(&d, &given, &header("Bearer session-1")), None);
        assert!(short_lived(&d, &given, &header("Key k-123456")).unwrap().0.contains("`key`"));
        assert!(short_lived(&d, &given, &header(&basic)).is_some(), "inside a Basic credential");
        d.apply_output = authplug_protocol::ApplyOutput::LongLived;
        assert_eq!(short_lived(&d, &given, &header("Key k-123456")), None, "as declared");
    }
}
