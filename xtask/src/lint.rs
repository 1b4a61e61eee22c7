//! `cargo xtask lint`: rustfmt --check, no source file over 500 lines, clippy -D warnings.

use std::fs;
use std::process::Command;

use crate::{cargo, root, status, Result};

/// rustfmt, the file lengths, clippy.
pub fn lint() -> Result {
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    status(fmt)?;
    file_lengths()?;
    let mut clippy = cargo();
    clippy.args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]);
    status(clippy)
}

/// The longest a source file may be (DEVELOPERS.md: no file over 500 lines).
const MAX_LINES: usize = 500;

/// Every tracked Rust and JavaScript file within [`MAX_LINES`], or the list of those over it.
fn file_lengths() -> Result {
    let listed = Command::new("git")
        .args(["ls-files", "*.rs", "*.js", "*.mjs"])
        .current_dir(root())
        .output()
        .map_err(|e| format!("git ls-files: {e}"))?;
    let mut long = Vec::new();
    for file in String::from_utf8_lossy(&listed.stdout).lines() {
        let lines = fs::read_to_string(root().join(file)).map(|t| t.lines().count()).unwrap_or(0);
        if lines > MAX_LINES {
            long.push(format!("{file} ({lines} lines)"));
        }
    }
    match long.is_empty() {
        true => Ok(()),
        false => Err(format!("over {MAX_LINES} lines, split them: {}", long.join(", "))),
    }
}
