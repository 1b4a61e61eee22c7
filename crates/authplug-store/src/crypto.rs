//! Encryption at rest: XChaCha20-Poly1305 with a random 192-bit nonce per value, the value's place
//! (system id, kind, secret name, key id) bound as associated data, and a keyring of master keys.
//!
//! The keyring's first key seals; every key opens. A key's id is derived from the key itself, so
//! a value names the key it needs and a wrong master key is recognised before anything is read.
//!
//! Keys come from `AUTHPLUG_MASTER_KEY` (comma-separated base64 keys, the first current) or from
//! a key file (one base64 key per line, the first current), created with mode 0600 on first use.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::xchacha::{KEY_LEN, NONCE_LEN};
use crate::StoreError;

/// The environment variable holding the master key(s).
pub const MASTER_KEY_ENV: &str = "AUTHPLUG_MASTER_KEY";

/// One master key.
#[derive(Clone)]
pub struct MasterKey {
    id: String,
    bytes: Zeroizing<[u8; KEY_LEN]>,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({})", self.id)
    }
}

impl MasterKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self, StoreError> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        getrandom::getrandom(bytes.as_mut())
            .map_err(|e| StoreError::key(format!("no randomness for a new key: {e}")))?;
        Ok(Self::from_bytes(bytes))
    }

    fn from_bytes(bytes: Zeroizing<[u8; KEY_LEN]>) -> Self {
        let digest = Sha256::new()
            .chain_update(b"authplug key id\0")
            .chain_update(bytes.as_ref())
            .finalize();
        let id =
            format!("k{}", digest.iter().take(6).map(|b| format!("{b:02x}")).collect::<String>());
        Self { id, bytes }
    }

    /// Parses base64 text (standard alphabet) of exactly 32 bytes.
    pub fn parse(text: &str, origin: &str) -> Result<Self, StoreError> {
        let decoded =
            Zeroizing::new(STANDARD.decode(text.trim()).map_err(|_| {
                StoreError::key(format!("{origin}: a master key is not valid base64"))
            })?);
        let bytes: [u8; KEY_LEN] = decoded.as_slice().try_into().map_err(|_| {
            StoreError::key(format!(
                "{origin}: a master key must be {KEY_LEN} bytes (base64 of 32 random bytes), not {}",
                decoded.len()
            ))
        })?;
        Ok(Self::from_bytes(Zeroizing::new(bytes)))
    }

    /// The id values sealed with this key carry, e.g. `k3f9a0c12b4de`.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn encoded(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(self.bytes.as_ref()))
    }
}

/// Where the keyring comes from, so it can be re-read when another process rotated the key.
#[derive(Debug, Clone, PartialEq)]
pub enum KeySource {
    /// `AUTHPLUG_MASTER_KEY` (read once).
    Env,
    /// A key file, re-read when a value names a key the ring lacks.
    File(PathBuf),
    /// Keys given in code (tests, benchmarks).
    Fixed,
}

/// The master keys: the first seals, all open.
#[derive(Debug)]
pub struct Keyring {
    source: KeySource,
    keys: RwLock<Vec<MasterKey>>,
    /// The key file's modification time when it was last read: a change means another process
    /// rotated the key, and new values must be sealed under the new current key.
    loaded: RwLock<Option<std::time::SystemTime>>,
}

impl Keyring {
    /// Keys given in code; the first is current.
    pub fn fixed(keys: Vec<MasterKey>) -> Self {
        assert!(!keys.is_empty(), "a keyring needs a key");
        Self { source: KeySource::Fixed, keys: RwLock::new(keys), loaded: RwLock::new(None) }
    }

    /// `AUTHPLUG_MASTER_KEY` if set, else the key file at `path`, created on first use.
    pub fn from_env_or_file(path: &Path) -> Result<Self, StoreError> {
        match std::env::var(MASTER_KEY_ENV) {
            Ok(text) if !text.trim().is_empty() => Self::from_env_text(&text),
            _ => Self::from_file(path),
        }
    }

    fn from_env_text(text: &str) -> Result<Self, StoreError> {
        let keys = text
            .split(',')
            .filter(|part| !part.trim().is_empty())
            .map(|part| MasterKey::parse(part, MASTER_KEY_ENV))
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(StoreError::key(format!("{MASTER_KEY_ENV} holds no key")));
        }
        Ok(Self { source: KeySource::Env, keys: RwLock::new(keys), loaded: RwLock::new(None) })
    }

    /// The key file at `path`; a new one with a fresh key (mode 0600) if there is none.
    pub fn from_file(path: &Path) -> Result<Self, StoreError> {
        if !path.exists() {
            write_key_file(path, &[MasterKey::generate()?], true)?;
        }
        let modified = modified(path);
        let keys = read_key_file(path)?;
        Ok(Self {
            source: KeySource::File(path.to_owned()),
            keys: RwLock::new(keys),
            loaded: RwLock::new(modified),
        })
    }

    pub fn source(&self) -> &KeySource {
        &self.source
    }

    /// The key that seals new values. With a key file, re-read first if the file changed (one
    /// `stat` per call), so that this process follows a rotation made by another.
    pub fn current(&self) -> MasterKey {
        if let KeySource::File(path) = &self.source {
            let now = modified(path);
            if now.is_some() && now != *self.loaded.read().expect("keyring lock") {
                self.reload(path);
            }
        }
        self.keys.read().expect("keyring lock")[0].clone()
    }

    /// Re-reads the key file; keeps the keys it has if the file is unreadable for a moment.
    fn reload(&self, path: &Path) {
        let modified = modified(path);
        if let Ok(keys) = read_key_file(path) {
            *self.keys.write().expect("keyring lock") = keys;
            *self.loaded.write().expect("keyring lock") = modified;
        }
    }

    /// The ids of every key, current first.
    pub fn ids(&self) -> Vec<String> {
        self.keys.read().expect("keyring lock").iter().map(|k| k.id.clone()).collect()
    }

    /// The key with `id`, re-reading a key file once if the ring lacks it (another process may have
    /// rotated the key meanwhile).
    fn key(&self, id: &str) -> Option<MasterKey> {
        let find = |keys: &Vec<MasterKey>| keys.iter().find(|k| k.id == id).cloned();
        if let Some(key) = find(&self.keys.read().expect("keyring lock")) {
            return Some(key);
        }
        if let KeySource::File(path) = &self.source {
            self.reload(path);
            return find(&self.keys.read().expect("keyring lock"));
        }
        None
    }

    pub(crate) fn has(&self, id: &str) -> bool {
        self.key(id).is_some()
    }

    /// Starts a rotation: a new current key, the old ones kept for opening. Persisted first for a
    /// key file, so a crash right after leaves every value readable.
    pub(crate) fn begin_rotation(&self) -> Result<MasterKey, StoreError> {
        let new = MasterKey::generate()?;
        let mut keys = self.keys.write().expect("keyring lock");
        let mut next = vec![new.clone()];
        next.extend(keys.iter().cloned());
        if let KeySource::File(path) = &self.source {
            write_key_file(path, &next, false)?;
            *self.loaded.write().expect("keyring lock") = modified(path);
        }
        *keys = next;
        Ok(new)
    }

    /// Drops keys no value uses any more (key file only; environment keys are the operator's).
    pub(crate) fn retire_except(&self, in_use: &[String]) -> Result<Vec<String>, StoreError> {
        let mut keys = self.keys.write().expect("keyring lock");
        let current = keys[0].id.clone();
        let kept: Vec<MasterKey> =
            keys.iter().filter(|k| k.id == current || in_use.contains(&k.id)).cloned().collect();
        let retired: Vec<String> = keys
            .iter()
            .filter(|k| !kept.iter().any(|c| c.id == k.id))
            .map(|k| k.id.clone())
            .collect();
        if let KeySource::File(path) = &self.source {
            if !retired.is_empty() {
                write_key_file(path, &kept, false)?;
                *self.loaded.write().expect("keyring lock") = modified(path);
                *keys = kept;
            }
        }
        Ok(retired)
    }

    /// Seals `plaintext` under the current key for the place described by `aad`.
    pub fn seal(&self, place: &Place<'_>, plaintext: &[u8]) -> Result<Sealed, StoreError> {
        let key = self.current();
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::getrandom(&mut nonce)
            .map_err(|e| StoreError::key(format!("no randomness for a nonce: {e}")))?;
        let aad = place.aad(&key.id);
        let ciphertext = crate::xchacha::seal(&key.bytes, &nonce, aad.as_bytes(), plaintext)
            .map_err(|_| StoreError::key("encryption failed"))?;
        Ok(Sealed { key_id: key.id, nonce: nonce.to_vec(), ciphertext })
    }

    /// Opens a sealed value found at `place`. Fails, naming the place, if the key is unknown or the
    /// ciphertext does not authenticate (tampered with, or moved from another row).
    pub fn open(
        &self,
        place: &Place<'_>,
        sealed: &Sealed,
    ) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        let key = self.key(&sealed.key_id).ok_or_else(|| StoreError::WrongKey {
            needed: vec![sealed.key_id.clone()],
            have: self.ids(),
        })?;
        let Ok(nonce) = <&[u8; NONCE_LEN]>::try_from(sealed.nonce.as_slice()) else {
            return Err(StoreError::tampered(place.describe()));
        };
        let aad = place.aad(&key.id);
        crate::xchacha::open(&key.bytes, nonce, aad.as_bytes(), &sealed.ciphertext)
            .map_err(|_| StoreError::tampered(place.describe()))
    }
}

/// Where a sealed value lives; bound into its associated data.
#[derive(Debug, Clone, Copy)]
pub struct Place<'a> {
    pub system: &'a str,
    pub kind: &'a str,
    pub name: &'a str,
}

impl Place<'_> {
    fn aad(&self, key_id: &str) -> String {
        format!("authplug secret v1\0{}\0{}\0{}\0{key_id}", self.system, self.kind, self.name)
    }

    fn describe(&self) -> String {
        format!("{} secret `{}` of system `{}`", self.kind, self.name, self.system)
    }
}

/// A value as stored: key id, nonce and ciphertext (with its tag).
#[derive(Debug, Clone, PartialEq)]
pub struct Sealed {
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn read_key_file(path: &Path) -> Result<Vec<MasterKey>, StoreError> {
    if path.exists() {
        crate::check_private_file(path, crate::Holds::Secret)?;
    }
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
        StoreError::key_because(format!("cannot read the key file {}", path.display()), e)
    })?);
    let origin = path.display().to_string();
    let keys = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|l| MasterKey::parse(l, &origin))
        .collect::<Result<Vec<_>, _>>()?;
    if keys.is_empty() {
        return Err(StoreError::key(format!("{origin}: the key file holds no key")));
    }
    Ok(keys)
}

/// Writes the keyring file atomically (temporary file, fsync, rename), mode 0600, folder 0700.
fn write_key_file(path: &Path, keys: &[MasterKey], create_only: bool) -> Result<(), StoreError> {
    let failed = |e: std::io::Error| {
        StoreError::key_because(format!("cannot write the key file {}", path.display()), e)
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_private_dir(dir).map_err(failed)?;
    }
    let mut text = Zeroizing::new(String::from(
        "# authplug master keys: the first seals new values, every one opens. Keep this file secret.\n",
    ));
    for key in keys {
        text.push_str(&key.encoded());
        text.push('\n');
    }
    let temporary = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&temporary).map_err(failed)?;
    file.write_all(text.as_bytes()).map_err(failed)?;
    file.sync_all().map_err(failed)?;
    if create_only && path.exists() {
        // Another process created it first: theirs wins, so nobody seals under a lost key.
        let _ = std::fs::remove_file(&temporary);
        return Ok(());
    }
    std::fs::rename(&temporary, path).map_err(failed)?;
    if let Some(dir) = path.parent() {
        if let Ok(dir) = std::fs::File::open(dir) {
            let _ = dir.sync_all();
        }
    }
    Ok(())
}

/// Creates `dir` (and parents) readable by the owner only.
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place() -> Place<'static> {
        Place { system: "sys-1", kind: "injected", name: "api_key" }
    }

    #[test]
    fn sealed_values_open_only_at_their_place() {
        let ring = Keyring::fixed(vec![MasterKey::generate().unwrap()]);
        let sealed = ring.seal(&place(), b"value").unwrap();
        assert_eq!(ring.open(&place(), &sealed).unwrap().as_slice(), b"value");
        let elsewhere = Place { system: "sys-2", ..place() };
        assert!(matches!(ring.open(&elsewhere, &sealed), Err(StoreError::Tampered { .. })));
        let mut flipped = sealed.clone();
        flipped.ciphertext[0] ^= 1;
        assert!(matches!(ring.open(&place(), &flipped), Err(StoreError::Tampered { .. })));
    }

    #[test]
    fn a_wrong_key_is_named_not_guessed() {
        let sealed =
            Keyring::fixed(vec![MasterKey::generate().unwrap()]).seal(&place(), b"v").unwrap();
        let other = Keyring::fixed(vec![MasterKey::generate().unwrap()]);
        match other.open(&place(), &sealed) {
            Err(StoreError::WrongKey { needed, have }) => {
                assert_eq!(needed, vec![sealed.key_id.clone()]);
                assert_eq!(have, other.ids());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn key_files_are_private_and_parse_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("conf/master.key");
        let ring = Keyring::from_file(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let again = Keyring::from_file(&path).unwrap();
        assert_eq!(ring.ids(), again.ids());
        assert!(!format!("{:?}", ring.current()).contains(&*ring.current().encoded()));
    }

    #[test]
    fn bad_keys_are_clear_errors() {
        assert!(MasterKey::parse("not base64!", "X").unwrap_err().to_string().contains("base64"));
        let short = STANDARD.encode([1u8; 16]);
        assert!(MasterKey::parse(&short, "X").unwrap_err().to_string().contains("32 bytes"));
    }
}
