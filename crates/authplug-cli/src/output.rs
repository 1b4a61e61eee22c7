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

/// Prints an aligned table; each cell escaped first (a stored id or name may hold control
/// characters or bidirectional overrides from before ids were checked).
pub fn print_table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) {
    let rows: Vec<[String; N]> = rows
        .iter()
        .map(|row| row.clone().map(|cell| authplug_store::escaped(&cell, usize::MAX)))
        .collect();
    let rows = rows.as_slice();
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

/// Writes a file that holds secrets, readable by its owner only (mode 0600), whatever was at
/// `path` before: the bytes go to a new file created exclusively beside it (`O_CREAT|O_EXCL`
/// never follows a link), which is then renamed over `path`. A link planted at `path` is
/// replaced, not followed, and an existing file's looser mode is not kept.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let fail = |e: std::io::Error| {
        Failure::new(Code::Failure, format!("cannot write {}: {e}", path.display()))
    };
    let name = path.file_name().ok_or_else(|| fail(std::io::ErrorKind::InvalidInput.into()))?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
        return Err(fail(std::io::ErrorKind::IsADirectory.into()));
    }
    let mut attempt = 0u32;
    let (temporary, mut file) = loop {
        let temporary =
            dir.join(format!(".{}.{}-{attempt}.tmp", name.to_string_lossy(), std::process::id()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(&temporary) {
            Ok(file) => break (temporary, file),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 100 => {
                attempt += 1
            }
            Err(e) => return Err(fail(e)),
        }
    };
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&temporary, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(fail(e));
    }
    // The rename itself survives a crash once the folder is synced.
    let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    Ok(())
}

/// Creates `dir` (and its parents) for files that hold secrets: a folder it creates is readable
/// by its owner only (0700); an existing one is used as it is.
pub fn private_dir(dir: &Path) -> Result<(), Failure> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|e| Failure::new(Code::Failure, format!("cannot create {}: {e}", dir.display())))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::{time, write_private};

    #[test]
    fn a_private_file_replaces_a_planted_link_and_a_loose_mode() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere");
        std::fs::write(&elsewhere, "untouched").unwrap();
        let link = dir.path().join("system.json");
        std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
        write_private(&link, b"secret").unwrap();
        assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "untouched", "not followed");
        assert!(!std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        let loose = dir.path().join("loose.json");
        std::fs::write(&loose, "old").unwrap();
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o666)).unwrap();
        write_private(&loose, b"secret").unwrap();
        let mode = std::fs::metadata(&loose).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read_to_string(&loose).unwrap(), "secret");
        let names: Vec<_> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 3, "no temporary file is left: {names:?}");
    }

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(time(Some(0)), "1970-01-01 00:00:00");
        assert_eq!(time(Some(1_900_000_000)), "2030-03-17 17:46:40");
        assert_eq!(time(Some(951_782_400)), "2000-02-29 00:00:00");
        assert_eq!(time(None), "-");
    }
}
