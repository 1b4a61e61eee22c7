//! Finding plugin files and turning each into schemes, or into a one-line refusal.

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use authplug_abi::LoadError;
use authplug_protocol::{PluginManifest, ProtocolVersion, SchemeDescriptor};

/// Where to look for plugins, and whether to include statically linked schemes.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Folders searched, in order, for files with the platform's shared-library suffix.
    pub dirs: Vec<PathBuf>,
    /// Also register the schemes linked into this binary (through `authplug_sdk::register_scheme!`).
    pub include_static: bool,
    /// Which files run in a child process.
    pub isolation: crate::IsolationPolicy,
    /// The approved files: with one, any other file is refused before it is opened.
    pub lock: Option<crate::PluginLock>,
}

impl LoadOptions {
    pub fn from_dirs<P: Into<PathBuf>>(dirs: impl IntoIterator<Item = P>) -> Self {
        Self {
            dirs: dirs.into_iter().map(Into::into).collect(),
            include_static: false,
            isolation: crate::IsolationPolicy::default(),
            lock: None,
        }
    }
}

/// A file (or several, for a conflict) that was not loaded, and why. Displays as one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub files: Vec<PathBuf>,
    pub reason: String,
}

/// The longest line a refusal displays as; longer reasons are cut.
pub const MAX_REFUSAL_LINE: usize = 300;

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let files: Vec<String> = self.files.iter().map(|p| p.display().to_string()).collect();
        let head = format!("plugin refused: {}: ", files.join(" and "));
        let room = MAX_REFUSAL_LINE.saturating_sub(head.chars().count()).max(20);
        let mut reason: String = self.reason.replace(['\n', '\r'], " ");
        if reason.chars().count() > room {
            reason = reason.chars().take(room - 1).collect::<String>() + "…";
        }
        write!(f, "{head}{reason}")
    }
}

/// One plugin file that loaded and described itself acceptably.
#[derive(Debug)]
pub(crate) struct LoadedFile {
    pub plugin: authplug_abi::Plugin,
    pub manifest: PluginManifest,
    pub protocol: ProtocolVersion,
}

/// The candidate files of `dirs`, sorted by name within each folder, each real file once.
pub(crate) fn discover(dirs: &[PathBuf], refusals: &mut Vec<Refusal>) -> Vec<PathBuf> {
    let mut seen = BTreeSet::new();
    let mut files = Vec::new();
    for dir in dirs {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::debug!(dir = %dir.display(), "plugin folder does not exist");
                continue;
            }
            Err(e) => {
                refusals.push(Refusal {
                    files: vec![dir.clone()],
                    reason: format!("cannot read plugin folder: {e}"),
                });
                continue;
            }
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            if path.extension().and_then(|e| e.to_str()) != Some(crate::PLUGIN_SUFFIX) {
                tracing::debug!(file = %path.display(), "not a plugin file name, skipped");
                continue;
            }
            let real = fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            if seen.insert(real) {
                files.push(path);
            }
        }
    }
    files
}

/// Loads one file: checks it looks like a shared library, dlopens it, checks the root module and
/// the protocol version, and validates what it describes.
/// A plugin file opened for the registry: in this process, or served by a child.
pub(crate) struct Opened {
    pub manifest: PluginManifest,
    pub protocol: ProtocolVersion,
    pub provider: crate::registry::Provider,
    pub isolated: bool,
    pub sha256: String,
    /// What the operator should know of a file that loads (its owner).
    pub warning: Option<String>,
}

/// Opens `path` as `policy` says: dlopened here, or started in a child process (the host never
/// dlopens a file it isolates, so not even its initialisers run here).
pub(crate) fn open(path: &Path, options: &LoadOptions) -> Result<Opened, String> {
    use crate::registry::Provider;
    let policy = &options.isolation;
    let warning = crate::permissions(path)?;
    precheck(path)?;
    let sha256 = sha256_of(path)?;
    if let Some(lock) = &options.lock {
        lock.admits(path, &sha256)?;
    }
    if policy.mode == crate::Isolation::Process && policy.runner.is_none() {
        return Err("--isolation process, but this host cannot start plugin processes".into());
    }
    if let (true, Some(runner)) = (policy.isolates(path), &policy.runner) {
        let limits = policy.limits;
        let (child, described) = crate::isolate::Isolated::start(path, &sha256, runner, limits)?;
        let (manifest, protocol) = check_manifest(&described)?;
        let provider = Provider::Isolated(std::sync::Arc::new(child));
        return Ok(Opened { manifest, protocol, provider, isolated: true, sha256, warning });
    }
    let file = load_file(path)?;
    let provider = Provider::Plugin(file.plugin);
    let (manifest, protocol) = (file.manifest, file.protocol);
    Ok(Opened { manifest, protocol, provider, isolated: false, sha256, warning })
}

/// The file's SHA-256, in hex.
pub(crate) fn sha256_of(path: &Path) -> Result<String, String> {
    use sha2::{Digest, Sha256};
    let bytes = fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    Ok(Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect())
}

pub(crate) fn load_file(path: &Path) -> Result<LoadedFile, String> {
    precheck(path)?;
    let plugin = authplug_abi::load(path).map_err(|e| match e {
        LoadError::Open(message) => format!("cannot open: {}", strip_path(&message, path)),
        LoadError::NotAPlugin => "not an authplug plugin: a shared library without the authplug \
                                  root module (build it with authplug_sdk::export_plugin!)"
            .to_owned(),
        LoadError::AbiVersion(message) => format!("incompatible binary interface: {message}"),
        LoadError::Layout(message) => format!("incompatible binary interface: {message}"),
        LoadError::Init(message) => format!("root module failed to initialise: {message}"),
    })?;
    let (manifest, protocol) = check_manifest(&plugin.describe())?;
    Ok(LoadedFile { plugin, manifest, protocol })
}

/// A plugin's `describe` answer, read and held to the host's rules (protocol version, descriptors):
/// the same for a file loaded here and for one a child process loaded.
pub(crate) fn check_manifest(json: &str) -> Result<(PluginManifest, ProtocolVersion), String> {
    if !json.trim_start().starts_with('{') {
        let shown: String = json.chars().take(200).filter(|c| !c.is_control()).collect();
        return Err(format!("describe failed: {shown}"));
    }
    let manifest: PluginManifest = serde_json::from_str(json)
        .map_err(|e| format!("unreadable manifest from describe ({e})"))?;
    let protocol = ProtocolVersion::parse(&manifest.protocol).map_err(|e| e.to_string())?;
    ProtocolVersion::current().accepts(protocol).map_err(|e| e.to_string())?;
    if manifest.schemes.is_empty() {
        return Err("the plugin registers no scheme".to_owned());
    }
    for descriptor in &manifest.schemes {
        validate(descriptor).map_err(|e| format!("scheme {:?}: {e}", descriptor.id))?;
    }
    Ok((manifest, protocol))
}

pub(crate) fn precheck(path: &Path) -> Result<(), String> {
    let mut file = fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_file() {
        return Err("not a regular file".to_owned());
    }
    if meta.len() == 0 {
        return Err("empty file (0 bytes), not a shared library".to_owned());
    }
    let mut magic = [0u8; 4];
    let read = file.read(&mut magic).map_err(|e| format!("cannot read: {e}"))?;
    let magic = &magic[..read];
    let known = [
        &b"\x7fELF"[..],
        &[0xcf, 0xfa, 0xed, 0xfe],
        &[0xce, 0xfa, 0xed, 0xfe],
        &[0xca, 0xfe, 0xba, 0xbe],
        b"MZ",
    ];
    if known.iter().any(|m| magic.starts_with(m)) {
        Ok(())
    } else {
        Err("not a shared library (no ELF, Mach-O or PE header)".to_owned())
    }
}

/// dlerror() repeats the path; the refusal line already names the file.
fn strip_path(message: &str, path: &Path) -> String {
    message.replace(&format!("{}: ", path.display()), "").replace(&path.display().to_string(), "")
}

/// The descriptor rules every scheme must meet, whatever its origin.
pub(crate) fn validate(d: &SchemeDescriptor) -> Result<(), String> {
    let id_ok = d.id.starts_with(|c: char| c.is_ascii_lowercase())
        && d.id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !id_ok {
        return Err("scheme id must match [a-z][a-z0-9_-]*".to_owned());
    }
    if d.display_name.trim().is_empty() {
        return Err("empty display name".to_owned());
    }
    if d.serves.is_empty() {
        return Err("serves no (auth, auth_variant) pair".to_owned());
    }
    for (kind, names) in [
        ("required", d.required.iter().map(|s| s.name.as_str()).collect::<Vec<_>>()),
        ("injected", d.injected.iter().map(|s| s.name.as_str()).collect()),
    ] {
        let mut seen = BTreeSet::new();
        for name in names {
            if name.trim().is_empty() {
                return Err(format!("an {kind} secret has an empty name"));
            }
            if !seen.insert(name) {
                return Err(format!("{kind} secret `{name}` is declared twice"));
            }
        }
    }
    let mut parameters = BTreeSet::new();
    for field in &d.manifest_fields {
        if !parameters.insert(field.parameter()) {
            return Err(format!(
                "manifest fields {:?} and another arrive as the same parameter `{}`",
                field.path,
                field.parameter()
            ));
        }
    }
    if let Some(verify) = &d.verify {
        verify_rules(verify).map_err(|why| format!("verify: {why}"))?;
    }
    Ok(())
}

/// A scheme's verification request: a safe method (GET or HEAD), placeholders that parse, and a URL that is
/// absolute once they are filled (it starts with the scheme or a placeholder).
fn verify_rules(verify: &authplug_protocol::VerifyRequest) -> Result<(), String> {
    if !verify.is_safe() {
        return Err(format!(
            "method {:?} is not one a verification may send ({})",
            verify.method,
            authplug_protocol::SAFE_METHODS.join(" or ")
        ));
    }
    verify.placeholders()?;
    let absolute = ["https://", "http://", "{"].iter().any(|p| verify.url.starts_with(p));
    if !absolute {
        return Err(format!(
            "url {:?} is not absolute (https://... or {{base_url}}...)",
            verify.url
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        fs::File::create(&path).unwrap().write_all(bytes).unwrap();
        path
    }

    #[test]
    fn empty_and_text_files_are_refused_before_dlopen() {
        let dir = tempfile::tempdir().unwrap();
        let empty = file_with(dir.path(), "empty.so", b"");
        let text = file_with(dir.path(), "text.so", b"hello, I am text\n");
        assert!(load_file(&empty).unwrap_err().contains("empty file"));
        assert!(load_file(&text).unwrap_err().contains("not a shared library"));
    }

    #[test]
    fn discovery_sorts_filters_by_suffix_and_dedupes() {
        let dir = tempfile::tempdir().unwrap();
        file_with(dir.path(), "b.so", b"x");
        file_with(dir.path(), "a.so", b"x");
        file_with(dir.path(), "README.txt", b"x");
        let mut refusals = Vec::new();
        let dirs = vec![dir.path().to_owned(), dir.path().to_owned(), dir.path().join("missing")];
        let files = discover(&dirs, &mut refusals);
        let names: Vec<_> = files.iter().map(|p| p.file_name().unwrap().to_owned()).collect();
        assert_eq!(names, ["a.so", "b.so"]);
        assert!(refusals.is_empty());
    }

    #[test]
    fn refusal_lines_are_single_and_bounded() {
        let refusal = Refusal { files: vec!["/p/x.so".into()], reason: "a\nb".repeat(400) };
        let line = refusal.to_string();
        assert!(!line.contains('\n'));
        assert!(line.chars().count() <= MAX_REFUSAL_LINE, "{}", line.len());
        assert!(line.starts_with("plugin refused: /p/x.so: "));
    }

    #[test]
    fn descriptors_are_validated() {
        let mut d: SchemeDescriptor = serde_json::from_value(serde_json::json!({
            "id": "ok_id", "display_name": "Ok", "serves": [{"auth": "x"}],
            "required": [{"name": "a", "description": ""}], "injected": []
        }))
        .unwrap();
        assert_eq!(validate(&d), Ok(()));
        d.id = "Bad Id".into();
        assert!(validate(&d).unwrap_err().contains("scheme id"));
        d.id = "ok".into();
        d.required.push(d.required[0].clone());
        assert!(validate(&d).unwrap_err().contains("declared twice"));
        d.required.pop();
        let verify = |url: &str| Some(authplug_protocol::VerifyRequest::get(url));
        for good in ["https://a.example/me", "{base_url}/me"] {
            d.verify = verify(good);
            assert_eq!(validate(&d), Ok(()), "{good}");
        }
        for (bad, why) in [("me", "not absolute"), ("{base_url/me", "unclosed")] {
            d.verify = verify(bad);
            assert!(validate(&d).unwrap_err().contains(why), "{bad}");
        }
        d.verify.as_mut().unwrap().method = "get it".into();
        assert!(validate(&d).unwrap_err().starts_with("verify: method"));
    }
}
