//! `authplug schemes new NAME`: a complete scheme crate a connector team starts from, which
//! builds, passes its own conformance tests and loads into this host with no edit.

use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::json;

use crate::context::Context;
use crate::exit::{Code, Failure};
use crate::output::print_json;

#[derive(Debug, Args)]
pub struct NewArgs {
    /// The scheme id, [a-z][a-z0-9_]* (e.g. membercare_session); the crate is named with
    /// dashes (membercare-session).
    #[arg(value_name = "NAME")]
    pub name: String,

    /// The folder to create the crate in.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,

    /// Depend on the SDK at this path (a checkout's crates/authplug-sdk; the testkit beside it)
    /// instead of by version from crates.io.
    #[arg(long, value_name = "PATH")]
    pub sdk_path: Option<PathBuf>,
}

/// Names a crate cannot be used by (`use NAME as _;`): Rust's keywords and the standard crates.
const RESERVED: &[&str] = &[
    "abstract",
    "alloc",
    "as",
    "async",
    "await",
    "become",
    "box",
    "break",
    "const",
    "continue",
    "core",
    "crate",
    "do",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "final",
    "fn",
    "for",
    "gen",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "macro",
    "match",
    "mod",
    "move",
    "mut",
    "override",
    "priv",
    "proc_macro",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "std",
    "struct",
    "super",
    "test",
    "trait",
    "true",
    "try",
    "type",
    "typeof",
    "unsafe",
    "unsized",
    "use",
    "virtual",
    "where",
    "while",
    "yield",
];

/// The files of a new crate: path in the crate, template.
const FILES: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../../templates/scheme/Cargo.toml.tmpl")),
    ("src/lib.rs", include_str!("../../templates/scheme/lib.rs.tmpl")),
    ("tests/conformance.rs", include_str!("../../templates/scheme/conformance.rs.tmpl")),
    ("exercise.json", include_str!("../../templates/scheme/exercise.json.tmpl")),
    ("connector/manifest.json", include_str!("../../templates/scheme/manifest.json.tmpl")),
    ("connector/templates/system.json", include_str!("../../templates/scheme/system.json.tmpl")),
    ("README.md", include_str!("../../templates/scheme/README.md.tmpl")),
    (".gitignore", include_str!("../../templates/scheme/gitignore.tmpl")),
];

pub fn run(ctx: &Context<'_>, args: &NewArgs) -> Result<(), Failure> {
    let id = &args.name;
    let valid = id.split('_').all(|word| {
        word.starts_with(|c: char| c.is_ascii_lowercase())
            && word.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    });
    if !valid {
        return Err(Failure::bad_input(format!(
            "scheme name {id:?}: use words of [a-z][a-z0-9]* joined by single underscores, e.g. membercare_session"
        )));
    }
    if RESERVED.contains(&id.as_str()) {
        return Err(Failure::bad_input(format!(
            "scheme name {id:?} is a Rust keyword or a standard crate's name: the crate could not be used by that name"
        )));
    }
    let krate = id.replace('_', "-");
    let root = args.dir.join(&krate);
    if root.exists() {
        return Err(Failure::bad_input(format!(
            "{} exists already: choose another --dir or name",
            root.display()
        )));
    }
    let (sdk, testkit) = dependencies(args.sdk_path.as_deref())?;
    let title: String =
        id.split('_').map(|w| w[..1].to_ascii_uppercase() + &w[1..]).collect::<Vec<_>>().join(" ");
    let values = [
        ("{{id}}", id.as_str()),
        ("{{crate}}", &krate),
        ("{{lib}}", id),
        ("{{type}}", &title.replace(' ', "")),
        ("{{title}}", &title),
        ("{{sdk}}", &sdk),
        ("{{testkit}}", &testkit),
    ];
    let mut lines = 0;
    for (path, template) in FILES {
        let text =
            values.iter().fold(template.to_string(), |t, (key, value)| t.replace(key, value));
        lines += text.lines().count();
        let file = root.join(path);
        let written = std::fs::create_dir_all(file.parent().unwrap_or(&root))
            .and_then(|()| std::fs::write(&file, text));
        written.map_err(|e| Failure::new(Code::Failure, format!("{}: {e}", file.display())))?;
    }
    if ctx.json() {
        let files: Vec<&str> = FILES.iter().map(|(path, _)| *path).collect();
        return print_json(&json!({"dir": root, "scheme": id, "files": files, "lines": lines}));
    }
    eprintln!(
        "created {} ({} files, {lines} lines): the {title} scheme",
        root.display(),
        FILES.len()
    );
    eprintln!("next: cd {} && cargo test && cargo build", root.display());
    eprintln!("then: authplug --plugin-dir target/debug schemes show {id}");
    Ok(())
}

/// The SDK and testkit dependencies, by version or beside the given SDK path.
fn dependencies(sdk_path: Option<&Path>) -> Result<(String, String), Failure> {
    let Some(path) = sdk_path else {
        let sdk = format!("\"{}\"", authplug_sdk::VERSION);
        let testkit = format!("\"{}\"", authplug_testkit::VERSION);
        return Ok((sdk, testkit));
    };
    let sdk = path
        .canonicalize()
        .map_err(|e| Failure::bad_input(format!("--sdk-path {}: {e}", path.display())))?;
    if !sdk.join("Cargo.toml").is_file() {
        return Err(Failure::bad_input(format!(
            "--sdk-path {}: no Cargo.toml there (give a checkout's crates/authplug-sdk)",
            path.display()
        )));
    }
    let testkit = sdk.with_file_name("authplug-testkit");
    let quoted = |p: &Path| format!("{{ path = {:?} }}", p.display().to_string());
    Ok((quoted(&sdk), quoted(&testkit)))
}
