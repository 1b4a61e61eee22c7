//! Pinning plugin files: a lock file lists each file an operator approved, by name, with its
//! SHA-256 and what it said it was. A host given one refuses any file not in it, or whose bytes
//! changed, before the file is opened or run. And whatever the lock, a plugin file or folder that
//! others may write, or a link that leads out of its folder, is refused.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The lock file's format version.
pub const LOCK_VERSION: u32 = 1;

/// `authplug plugins lock`'s file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginLock {
    pub version: u32,
    /// By file name (`libapi_key.so`): folders may move, names and bytes may not.
    pub plugins: BTreeMap<String, LockedPlugin>,
}

/// One approved file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedPlugin {
    pub sha256: String,
    pub size: u64,
    pub plugin: String,
    pub plugin_version: String,
    pub protocol: String,
    pub schemes: Vec<String>,
}

impl PluginLock {
    /// Reads a lock file; the reason it cannot be used, naming the file.
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("plugin lock {}: {e}", path.display()))?;
        let lock: Self = serde_json::from_str(&text)
            .map_err(|e| format!("plugin lock {}: {e}", path.display()))?;
        if lock.version != LOCK_VERSION {
            return Err(format!(
                "plugin lock {}: version {} (this authplug reads version {LOCK_VERSION})",
                path.display(),
                lock.version
            ));
        }
        Ok(lock)
    }

    /// Whether `path`, whose bytes hash to `sha256`, is approved: the reason it is not.
    pub fn admits(&self, path: &Path, sha256: &str) -> Result<(), String> {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        match self.plugins.get(name) {
            None => Err("not in the plugin lock file".into()),
            Some(locked) if locked.sha256 != sha256 => Err(format!(
                "its SHA-256 {} differs from the lock's {} (rebuilt, replaced or damaged since it was locked)",
                short(sha256),
                short(&locked.sha256)
            )),
            Some(_) => Ok(()),
        }
    }
}

/// The plugin files of `dirs` (as the host would find them) and the folders it could not read.
pub fn plugin_files(dirs: &[std::path::PathBuf]) -> (Vec<std::path::PathBuf>, Vec<crate::Refusal>) {
    let mut refusals = Vec::new();
    let files = crate::loader::discover(dirs, &mut refusals);
    (files, refusals)
}

/// A file's SHA-256, in hex.
pub fn file_sha256(path: &Path) -> Result<String, String> {
    crate::loader::sha256_of(path)
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

/// A plugin file the host must not trust whatever the lock says: a link that leads out of its
/// folder, or a file or folder every user may write (anyone could swap the code, sticky or not).
/// A file owned by another user than this one or root is allowed but said (`Some`).
pub fn permissions(path: &Path) -> Result<Option<String>, String> {
    use std::os::unix::fs::MetadataExt as _;
    let folder = path.parent().ok_or("no folder")?;
    let real = path.canonicalize().map_err(|e| format!("cannot resolve: {e}"))?;
    let real_folder =
        folder.canonicalize().map_err(|e| format!("cannot resolve its folder: {e}"))?;
    if real.parent() != Some(real_folder.as_path()) {
        return Err(format!("a link that leads out of its folder, to {}", real.display()));
    }
    let file = std::fs::metadata(&real).map_err(|e| format!("cannot read: {e}"))?;
    let dir =
        std::fs::metadata(&real_folder).map_err(|e| format!("cannot read its folder: {e}"))?;
    if file.mode() & 0o022 != 0 {
        return Err("writable by group or others (chmod go-w it)".into());
    }
    if dir.mode() & 0o022 != 0 {
        let folder = real_folder.display();
        return Err(format!("its folder {folder} is writable by group or others (chmod go-w it)"));
    }
    let me = rustix::process::getuid().as_raw();
    let owner = file.uid();
    Ok((owner != me && owner != 0)
        .then(|| format!("owned by user {owner}, not by this user ({me}) or root")))
}
