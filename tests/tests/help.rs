//! The command line is a user-facing contract: the `--help` of every command is compared with
//! the copy kept in `tests/golden/help/`, so that a change to it is seen in review (the diff of
//! the golden file) rather than found by users. `AUTHPLUG_BLESS=1` writes the current text.

use std::path::{Path, PathBuf};
use std::process::Command;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("golden/help")
}

/// `authplug ARGS --help`, in an environment that cannot change the text (no `AUTHPLUG_*`
/// values shown as `[env: ...]`, no terminal width).
fn help(args: &[String]) -> String {
    let output = Command::new(tests::authplug_bin())
        .args(args)
        .arg("--help")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .expect("authplug runs");
    assert!(output.status.success(), "{args:?} --help: {}", tests::stderr(&output));
    tests::stdout(&output)
}

/// The subcommands a help text lists under `Commands:` (but `help`).
fn subcommands(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut listing = false;
    for line in text.lines() {
        if line == "Commands:" {
            listing = true;
        } else if listing && line.trim().is_empty() {
            break;
        } else if listing && line.starts_with("  ") && !line.starts_with("   ") {
            let name = line.split_whitespace().next().unwrap_or_default();
            if name != "help" {
                names.push(name.to_owned());
            }
        }
    }
    names
}

#[test]
fn the_help_of_every_command_is_unchanged() {
    let bless = std::env::var_os("AUTHPLUG_BLESS").is_some();
    let mut pending = vec![Vec::<String>::new()];
    let mut seen = Vec::new();
    let mut changed = Vec::new();
    while let Some(args) = pending.pop() {
        let text = help(&args);
        for name in subcommands(&text) {
            let mut deeper = args.clone();
            deeper.push(name);
            pending.push(deeper);
        }
        let file =
            if args.is_empty() { "authplug.txt".to_owned() } else { args.join("-") + ".txt" };
        let path = golden_dir().join(&file);
        seen.push(file.clone());
        if bless {
            std::fs::create_dir_all(golden_dir()).unwrap();
            std::fs::write(&path, &text).unwrap();
            continue;
        }
        let kept = std::fs::read_to_string(&path).unwrap_or_default();
        if kept != text {
            changed.push(format!("{file}:\n--- kept\n{kept}\n--- now\n{text}"));
        }
    }
    assert!(seen.len() >= 20, "every command was reached: {seen:?}");
    let mut kept: Vec<String> = std::fs::read_dir(golden_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    kept.sort();
    seen.sort();
    assert_eq!(kept, seen, "a golden file for every command, and none for a command gone");
    assert!(
        changed.is_empty(),
        "--help changed (AUTHPLUG_BLESS=1 to accept):\n{}",
        changed.join("\n")
    );
}
