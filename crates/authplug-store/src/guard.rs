//! Files that hold secrets or decide who may read them (the master key file, the store file, the
//! API tokens file) are used only when nobody else could have written them, as ssh does with its
//! keys: not writable by group or others, in a folder that is not either, owned by this user
//! (or root). The key file must not be readable by others either.

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use crate::StoreError;

/// How a file is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holds {
    /// Secret bytes in plain (the master key file): readable by its owner only.
    Secret,
    /// Sealed values or token hashes: nobody else may write it.
    Guarded,
}

/// Refuses `path` (an existing file) if someone other than this user could have written it, or
/// (for [`Holds::Secret`]) could read it: [`StoreError::Unsafe`] naming the file and the fix.
pub fn check_private_file(path: &Path, holds: Holds) -> Result<(), StoreError> {
    let unsafe_ = |why: String| StoreError::Unsafe { path: path.display().to_string(), why };
    let meta = std::fs::metadata(path)
        .map_err(|e| StoreError::io(format!("cannot read {}", path.display()), e))?;
    let me = rustix::process::geteuid().as_raw();
    let mode = meta.mode() & 0o7777;
    if meta.uid() != me && meta.uid() != 0 {
        return Err(unsafe_(format!(
            "it is owned by user {}, not by this user ({me}) or root (chown it)",
            meta.uid()
        )));
    }
    if mode & 0o022 != 0 {
        return Err(unsafe_(format!(
            "it is writable by group or others (mode {mode:04o}; chmod 600 it)"
        )));
    }
    if holds == Holds::Secret && mode & 0o044 != 0 {
        return Err(unsafe_(format!(
            "it is readable by group or others (mode {mode:04o}; chmod 600 it)"
        )));
    }
    let folder = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if let Ok(dir) = std::fs::metadata(folder) {
        let sticky = dir.mode() & 0o1000 != 0;
        if dir.mode() & 0o022 != 0 && !sticky {
            return Err(unsafe_(format!(
                "its folder {} is writable by group or others, so the file can be replaced (chmod go-w the folder)",
                folder.display()
            )));
        }
    }
    Ok(())
}

/// Tightens an existing file to mode 0600 if group or others may read it (after
/// [`check_private_file`]: nobody else could have written it).
pub fn tighten(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::metadata(path)
        .map_err(|e| StoreError::io(format!("cannot read {}", path.display()), e))?;
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| StoreError::io(format!("cannot chmod 600 {}", path.display()), e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn file(dir: &Path, mode: u32) -> std::path::PathBuf {
        let path = dir.join(format!("f{mode:o}"));
        std::fs::write(&path, "x").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn files_others_could_write_or_read_are_refused_and_readable_ones_tightened() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_private_file(&file(dir.path(), 0o600), Holds::Secret).is_ok());
        assert!(check_private_file(&file(dir.path(), 0o644), Holds::Guarded).is_ok());
        let loose = check_private_file(&file(dir.path(), 0o644), Holds::Secret).unwrap_err();
        assert!(loose.to_string().contains("readable by group or others (mode 0644"), "{loose}");
        let open = check_private_file(&file(dir.path(), 0o666), Holds::Guarded).unwrap_err();
        assert!(open.to_string().contains("writable by group or others (mode 0666"), "{open}");
        let readable = file(dir.path(), 0o640);
        tighten(&readable).unwrap();
        assert_eq!(std::fs::metadata(&readable).unwrap().mode() & 0o777, 0o600);
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
        let inside = file(&shared, 0o600);
        let replaceable = check_private_file(&inside, Holds::Secret).unwrap_err();
        assert!(replaceable.to_string().contains("folder"), "{replaceable}");
    }
}
