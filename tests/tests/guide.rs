//! `docs/writing-a-scheme.md` stays true: every Rust block is quoted, character for character,
//! from the crate `tests/fixtures/membercare-scheme` (which `cargo xtask test` builds and whose
//! conformance test it runs), every JSON block parses, and the guide's exercise file passes the
//! conformance kit against the built MemberCare plugin.

use std::path::Path;

use authplug_testkit::conformance::Exercises;
use tests::{authplug_bin, fixture, stdout};

fn repository(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The fenced blocks of `language` in `markdown`.
fn blocks(markdown: &str, language: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in markdown.lines() {
        match &mut current {
            None if line.trim_start() == format!("```{language}") => current = Some(Vec::new()),
            Some(lines) if line.trim_start() == "```" => {
                found.push(lines.join("\n"));
                current = None;
            }
            Some(lines) => lines.push(line),
            None => {}
        }
    }
    found
}

#[test]
fn every_rust_block_of_the_guide_is_quoted_from_the_compiled_fixture() {
    let guide = repository("docs/writing-a-scheme.md");
    let sources = [
        repository("tests/fixtures/membercare-scheme/src/lib.rs"),
        repository("tests/fixtures/membercare-scheme/tests/conformance.rs"),
    ];
    let rust = blocks(&guide, "rust");
    assert!(rust.len() >= 5, "the guide shows its code: {} blocks", rust.len());
    for block in &rust {
        assert!(
            sources.iter().any(|source| source.contains(block.as_str())),
            "this block of the guide is not in the MemberCare crate (copy it from there):\n{block}"
        );
    }
}

#[test]
fn the_guides_json_parses_and_its_exercise_passes_the_kit() {
    let guide = repository("docs/writing-a-scheme.md");
    let json = blocks(&guide, "json");
    assert!(json.len() >= 2);
    for block in &json {
        serde_json::from_str::<serde_json::Value>(block)
            .unwrap_or_else(|e| panic!("a JSON block of the guide does not parse ({e}):\n{block}"));
    }
    let exercise = json.iter().find(|b| b.contains("\"schemes\"")).expect("the exercise file");
    serde_json::from_str::<Exercises>(exercise).expect("the shape `--exercise` reads");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("exercise.json");
    std::fs::write(&file, exercise).unwrap();
    let output = std::process::Command::new(authplug_bin())
        .args(["schemes", "test"])
        .arg(fixture("membercare_scheme"))
        .arg("--exercise")
        .arg(&file)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}{}", stdout(&output), tests::stderr(&output));
    assert!(stdout(&output).contains("ok   membercare refresh.503"));
}
