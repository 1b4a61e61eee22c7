//! Opening a store that cannot be written. A read-only connection still needs the WAL's
//! shared-memory index (`-shm`): on a read-only file system with no write-ahead log left to
//! apply, the file cannot change, so it is opened immutable and needs none. On a full file
//! system with no process holding the store open, the index cannot be created, and nothing
//! can be read: said so, in one line.

use std::path::Path;

use rustix::fs::{statvfs, StatVfsMountFlags};

use super::{connect, Access};
use crate::{Result, StoreError};

/// The connection for reading `path` after a writable and a read-only one failed (the first
/// with `writable`), or why there is none.
pub(super) fn unwritable(path: &Path, writable: StoreError) -> Result<rusqlite::Connection> {
    let folder = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let Ok(fs) = statvfs(folder) else { return Err(writable) };
    let wal = path.with_file_name(format!("{}-wal", name(path)));
    let pending_log = std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0);
    if fs.f_flag.contains(StatVfsMountFlags::RDONLY) {
        if pending_log {
            return Err(StoreError::unavailable(
                format!(
                    "{} is on a read-only file system with a write-ahead log ({}) not yet applied: it cannot be read consistently until the file system is writable",
                    path.display(),
                    wal.display()
                ),
                Some(writable),
            ));
        }
        return connect(path, Access::Immutable);
    }
    if fs.f_bavail == 0 {
        return Err(StoreError::unavailable(
            format!(
                "{}: the file system is full: with no other process holding the store open, SQLite cannot create the shared-memory index it reads through; free some space",
                path.display()
            ),
            Some(writable),
        ));
    }
    Err(writable)
}

fn name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// `file:PATH?immutable=1`, the path percent-encoded where a URI needs it.
pub(super) fn immutable_uri(path: &Path) -> String {
    let mut uri = String::from("file:");
    for byte in path.to_string_lossy().bytes() {
        match byte {
            b'%' | b'?' | b'#' | 0x80.. => uri.push_str(&format!("%{byte:02X}")),
            _ => uri.push(byte as char),
        }
    }
    uri.push_str("?immutable=1");
    uri
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_immutable_uri_escapes_what_a_uri_reads() {
        assert_eq!(immutable_uri(Path::new("/a/s.db")), "file:/a/s.db?immutable=1");
        assert_eq!(immutable_uri(Path::new("/a%b/s?#.db")), "file:/a%25b/s%3F%23.db?immutable=1");
        assert_eq!(immutable_uri(Path::new("/ø")), "file:/%C3%B8?immutable=1");
    }
}
