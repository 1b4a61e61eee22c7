//! What commands print: JSON for scripts, aligned tables and times for people. Results go to
//! stdout; progress, warnings and errors to stderr, so that stdout stays clean for `--json`.

use std::io::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::exit::{Code, Failure};

pub fn print_json(value: &impl Serialize) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Failure::new(Code::Failure, format!("cannot print JSON: {e}")))?;
    println!("{text}");
    Ok(())
}

pub fn print_table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header = header.map(str::to_owned);
    for row in std::iter::once(&header).chain(rows) {
        let cells: Vec<String> =
            row.iter().zip(widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        println!("{}", cells.join("  ").trim_end());
    }
}

/// Unix seconds as UTC `YYYY-MM-DD HH:MM:SS`, or `-`.
pub fn time(at: Option<i64>) -> String {
    at.and_then(|at| chrono::DateTime::from_timestamp(at, 0))
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "-".into())
}

/// Writes a file that holds secrets: readable by its owner only (mode 0600).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let fail = |e: std::io::Error| {
        Failure::new(Code::Failure, format!("cannot write {}: {e}", path.display()))
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(fail)?;
    file.write_all(bytes).map_err(fail)?;
    file.sync_all().map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::time;

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(time(Some(0)), "1970-01-01 00:00:00");
        assert_eq!(time(Some(1_900_000_000)), "2030-03-17 17:46:40");
        assert_eq!(time(Some(951_782_400)), "2000-02-29 00:00:00");
        assert_eq!(time(None), "-");
    }
}
