//! The host knows no scheme: outside tests, no host crate's string literal names a built-in
//! scheme's id, the `auth`/`auth_variant` values it serves, a manifest block it reads or a
//! secret it requires or injects. What a scheme needs reaches it through its descriptor
//! (`manifest_fields`, `required`, `injected`) and what it learns comes back as `outputs`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use tests::host::PluginHost;

const HOST_CRATES: &[&str] = &[
    "authplug-cli",
    "authplug-server",
    "authplug-engine",
    "authplug-host",
    "authplug-connector",
    "authplug-store",
    "authplug-onboard",
];

/// Names of the platform's connector format, which schemes share with the host on purpose
/// (`shared/spec/sesam-connectors.md`): not a scheme's own.
const PLATFORM_NAMES: &[&str] = &["account_id", "base_url", "service_url"];

/// Every name the built-in schemes own.
fn scheme_names() -> BTreeSet<String> {
    let host =
        PluginHost::load(&["api_key", "jwt_scheme", "oauth2_scheme", "superoffice", "tripletex"]);
    let mut names = BTreeSet::new();
    for scheme in host.registry.schemes() {
        let d = scheme.descriptor();
        names.insert(d.id.clone());
        for pair in &d.serves {
            names.insert(pair.auth.clone());
            names.extend(pair.auth_variant.clone());
        }
        for field in &d.manifest_fields {
            names.extend(field.path.split('.').next().map(str::to_owned));
        }
        names.extend(d.required.iter().map(|r| r.name.clone()));
        names.extend(d.injected.iter().map(|i| i.name.clone()));
    }
    names.retain(|n| !PLATFORM_NAMES.contains(&n.as_str()));
    assert!(names.len() > 10, "the plugins' descriptors name too little: {names:?}");
    names
}

/// The crate's source files, but test files.
fn sources(dir: &Path, into: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            sources(&path, into);
        } else if name.ends_with(".rs") && name != "tests.rs" && !name.ends_with("_tests.rs") {
            into.push(path);
        }
    }
}

/// The string literals of `code` before its test module, with their line numbers.
fn literals(code: &str) -> Vec<(usize, String)> {
    let code = match code.find("#[cfg(test)]") {
        Some(at) => &code[..at],
        None => code,
    };
    let mut found = Vec::new();
    for (number, line) in code.lines().enumerate() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        let mut rest = line;
        while let Some(start) = rest.find('"') {
            let after = &rest[start + 1..];
            let mut end = None;
            let mut escaped = false;
            for (i, c) in after.char_indices() {
                match c {
                    '\\' if !escaped => escaped = true,
                    '"' if !escaped => {
                        end = Some(i);
                        break;
                    }
                    _ => escaped = false,
                }
            }
            let Some(end) = end else { break };
            found.push((number + 1, after[..end].to_owned()));
            rest = &after[end + 1..];
        }
    }
    found
}

/// The words of a literal: runs of `[A-Za-z0-9_-]`, and their dotted prefixes' first parts.
fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .filter(|w| !w.is_empty())
}

#[test]
fn no_host_crate_names_a_scheme_its_manifest_block_or_its_secrets() {
    let names = scheme_names();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("crates");
    let mut offences = Vec::new();
    for krate in HOST_CRATES {
        let mut files = Vec::new();
        sources(&root.join(krate).join("src"), &mut files);
        assert!(!files.is_empty(), "{krate} has no sources");
        for file in files {
            let code = std::fs::read_to_string(&file).unwrap();
            for (line, literal) in literals(&code) {
                if let Some(word) = words(&literal).find(|w| names.contains(*w)) {
                    let place = file.strip_prefix(&root).unwrap().display().to_string();
                    offences.push(format!("{place}:{line}: \"{literal}\" names `{word}`"));
                }
            }
        }
    }
    assert!(offences.is_empty(), "host crates that know a scheme:\n{}", offences.join("\n"));
}

#[test]
fn the_scan_finds_what_it_looks_for() {
    let code = "let a = \"x\";\n// \"hidden\"\nlet b = format!(\"{} \\\"q\\\" oauth2.token_url\", a);\n#[cfg(test)]\nmod tests { \"late\" }";
    let found = literals(code);
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[1].0, 3);
    assert!(words(&found[1].1).any(|w| w == "oauth2"));
    assert!(!found.iter().any(|(_, l)| l == "hidden" || l == "late"));
}
