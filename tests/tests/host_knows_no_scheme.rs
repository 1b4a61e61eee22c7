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
    let host = PluginHost::load(&[
        "api_key",
        "client_credentials",
        "jwt_scheme",
        "oauth2_scheme",
        "poweroffice",
        "superoffice",
        "tripletex",
    ]);
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

/// The string literals of `code` before its test module, with the line each starts on: a small
/// lexer that knows comments (line and block), escapes, strings over several lines, raw strings
/// (`r"…"`, `r#"…"#`) and character literals (`'"'`), so that none of them is misread.
fn literals(code: &str) -> Vec<(usize, String)> {
    let code = match code.find("#[cfg(test)]") {
        Some(at) => &code[..at],
        None => code,
    };
    let chars: Vec<char> = code.chars().collect();
    let line_of = |at: usize| chars[..at].iter().filter(|c| **c == '\n').count() + 1;
    let mut found = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let rest = &chars[i..];
        if rest.starts_with(&['/', '/']) {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if rest.starts_with(&['/', '*']) {
            i += 2;
            while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if chars[i] == 'r'
            && matches!(rest.get(1), Some('"' | '#'))
            && !ident(chars.get(i.wrapping_sub(1)))
        {
            let hashes = rest[1..].iter().take_while(|c| **c == '#').count();
            if rest.get(1 + hashes) != Some(&'"') {
                i += 1;
                continue;
            }
            let start = i + 2 + hashes;
            let mut end = start;
            while end < chars.len()
                && !(chars[end] == '"'
                    && chars[end + 1..].iter().take(hashes).filter(|c| **c == '#').count()
                        == hashes)
            {
                end += 1;
            }
            found.push((line_of(start), chars[start..end.min(chars.len())].iter().collect()));
            i = end + 1 + hashes;
        } else if chars[i] == '\'' {
            // A character literal ('"', '\'') or a lifetime ('a): skip the literal only.
            match (rest.get(1), rest.get(2), rest.get(3)) {
                (Some('\\'), _, _) => {
                    i += 2;
                    while i < chars.len() && chars[i] != '\'' {
                        i += 1;
                    }
                    i += 1;
                }
                (Some(_), Some('\''), _) => i += 3,
                _ => i += 1,
            }
        } else if chars[i] == '"' {
            let start = i + 1;
            let mut end = start;
            while end < chars.len() && chars[end] != '"' {
                end += if chars[end] == '\\' { 2 } else { 1 };
            }
            found.push((line_of(start), chars[start..end.min(chars.len())].iter().collect()));
            i = end + 1;
        } else {
            i += 1;
        }
    }
    found
}

fn ident(c: Option<&char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || *c == '_')
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
    let mut scanned = 0;
    for krate in HOST_CRATES {
        let mut files = Vec::new();
        sources(&root.join(krate).join("src"), &mut files);
        assert!(!files.is_empty(), "{krate} has no sources");
        for file in files {
            let code = std::fs::read_to_string(&file).unwrap();
            let found = literals(&code);
            scanned += found.len();
            for (line, literal) in found {
                if let Some(word) = words(&literal).find(|w| names.contains(*w)) {
                    let place = file.strip_prefix(&root).unwrap().display().to_string();
                    offences.push(format!("{place}:{line}: \"{literal}\" names `{word}`"));
                }
            }
        }
    }
    assert!(scanned > 1000, "the scan reads the host's literals: only {scanned}");
    assert!(offences.is_empty(), "host crates that know a scheme:\n{}", offences.join("\n"));
}

#[test]
fn the_scan_finds_what_it_looks_for() {
    let code = concat!(
        "let a = \"x\"; let c = '\"'; let l: &'static str = \"y\";\n",
        "// \"hidden\"\n/* \"hidden too\" */\n",
        "let b = format!(\"{} \\\"q\\\" \\\n   oauth2.token_url\", a);\n",
        "let r = r#\"raw \"jwt\" block\"#;\n",
        "#[cfg(test)]\nmod tests { \"late\" }",
    );
    let found = literals(code);
    let texts: Vec<&str> = found.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(texts.len(), 4, "{found:?}");
    assert_eq!((texts[0], texts[1]), ("x", "y"), "a char literal is not a string: {found:?}");
    assert_eq!(found[2].0, 4, "a literal's line is where it starts");
    assert!(words(texts[2]).any(|w| w == "oauth2"), "a continued string is read whole");
    assert!(words(texts[3]).any(|w| w == "jwt"), "raw strings are read");
    assert!(!texts.iter().any(|t| t.contains("hidden") || *t == "late"));
}
