//! API tokens: random, shown once, stored as SHA-256 hashes in a tokens file with their scopes,
//! and compared in constant time.

use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a token may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Everything: list, show, delete, every secret.
    Admin,
    /// The injected secrets of a system (`*` for all), but not its refresh tokens or client
    /// secrets.
    Secrets(String),
    /// Also the refresh tokens and client secrets of a system.
    LongLived(String),
    /// Only the headers and query parameters of one outbound request.
    Authorize(String),
}

impl Scope {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.split_once(':') {
            None if text == "admin" => Ok(Scope::Admin),
            Some(("secrets", id)) if !id.is_empty() => Ok(Scope::Secrets(id.into())),
            Some(("long-lived", id)) if !id.is_empty() => Ok(Scope::LongLived(id.into())),
            Some(("authorize", id)) if !id.is_empty() => Ok(Scope::Authorize(id.into())),
            _ => Err(format!(
                "scope {text:?}: use admin, secrets:<system>, long-lived:<system> or authorize:<system> (* for every system)"
            )),
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Admin => f.write_str("admin"),
            Scope::Secrets(id) => write!(f, "secrets:{id}"),
            Scope::LongLived(id) => write!(f, "long-lived:{id}"),
            Scope::Authorize(id) => write!(f, "authorize:{id}"),
        }
    }
}

/// One line of the tokens file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenEntry {
    pub name: String,
    /// Hex SHA-256 of the token.
    pub sha256: String,
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct TokensFile {
    tokens: Vec<TokenEntry>,
}

/// The known tokens.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    /// Each token's hash and its caller (shared: a request holds it without copying it).
    entries: Vec<([u8; 32], Arc<Caller>)>,
}

/// A caller whose token matched.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub scopes: Vec<Scope>,
}

impl Caller {
    fn grants(&self, system: &str, wanted: impl Fn(&Scope) -> Option<&str>) -> bool {
        self.scopes
            .iter()
            .any(|s| *s == Scope::Admin || wanted(s).is_some_and(|id| id == "*" || id == system))
    }

    pub fn is_admin(&self) -> bool {
        self.scopes.contains(&Scope::Admin)
    }

    /// May read the system's secrets (short-lived ones).
    pub fn may_read(&self, system: &str) -> bool {
        self.grants(system, |s| match s {
            Scope::Secrets(id) | Scope::LongLived(id) => Some(id),
            _ => None,
        })
    }

    /// May read refresh tokens and client secrets too.
    pub fn may_read_long_lived(&self, system: &str) -> bool {
        self.grants(system, |s| match s {
            Scope::LongLived(id) => Some(id),
            _ => None,
        })
    }

    /// May ask for one request's credentials.
    pub fn may_authorize(&self, system: &str) -> bool {
        self.may_read(system)
            || self.grants(system, |s| match s {
                Scope::Authorize(id) => Some(id),
                _ => None,
            })
    }

    /// May see the system's metadata.
    pub fn may_see(&self, system: &str) -> bool {
        self.may_authorize(system)
    }
}

/// A new random token (32 bytes, URL-safe base64, `ap_` in front so it is recognisable in a
/// leak scanner).
pub fn new_token() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| format!("no randomness: {e}"))?;
    Ok(format!("ap_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)))
}

pub fn hash_token(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if text.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

impl Tokens {
    /// Reads the tokens file (JSON: `{"tokens": [{"name", "sha256", "scopes"}]}`); errors name
    /// the file and the entry.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let file: TokensFile = serde_json::from_str(&text).map_err(|e| {
            format!(
                "{}:{}:{}: not a tokens file ({:?} error)",
                path.display(),
                e.line(),
                e.column(),
                e.classify()
            )
        })?;
        let mut tokens = Tokens::default();
        for entry in file.tokens {
            let hash = unhex(&entry.sha256).ok_or_else(|| {
                format!("{}: token {}: sha256 is not 64 hex digits", path.display(), entry.name)
            })?;
            let scopes = entry
                .scopes
                .iter()
                .map(|s| Scope::parse(s))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{}: token {}: {e}", path.display(), entry.name))?;
            tokens.entries.push((hash, Arc::new(Caller { name: entry.name, scopes })));
        }
        Ok(tokens)
    }

    /// Adds a token given in clear (an operator's bootstrap admin token from the environment).
    pub fn with_plain(mut self, name: &str, token: &str, scopes: Vec<Scope>) -> Self {
        let hash = unhex(&hash_token(token)).expect("a hash is 64 hex digits");
        self.entries.push((hash, Arc::new(Caller { name: name.to_owned(), scopes })));
        self
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The caller a bearer token belongs to. Every entry is compared, in constant time, so the
    /// time taken says nothing about which one matched or how much of it.
    pub fn caller(&self, token: &str) -> Option<Arc<Caller>> {
        let hash = Sha256::digest(token.as_bytes());
        let mut found = None;
        for (expected, caller) in &self.entries {
            if bool::from(hash.as_slice().ct_eq(expected)) {
                found = Some(caller.clone());
            }
        }
        found
    }

    /// Appends an entry to a tokens file (created with mode 0600).
    pub fn append(path: &Path, entry: TokenEntry) -> Result<(), String> {
        let mut file: TokensFile = match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|_| format!("{}: not a tokens file", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => TokensFile::default(),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        if file.tokens.iter().any(|t| t.name == entry.name) {
            return Err(format!("{}: a token named {} exists", path.display(), entry.name));
        }
        file.tokens.push(entry);
        let text = serde_json::to_string_pretty(&file).expect("serialisable");
        let temporary = path.with_extension("tmp");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        use std::io::Write;
        options
            .open(&temporary)
            .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|_| f.sync_all()))
            .and_then(|_| std::fs::rename(&temporary, path))
            .map_err(|e| format!("{}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_grant_what_they_say_and_nothing_more() {
        let tokens = Tokens::default()
            .with_plain("worker", "t-worker", vec![Scope::Authorize("crm".into())])
            .with_plain("reader", "t-reader", vec![Scope::Secrets("crm".into())])
            .with_plain("ops", "t-ops", vec![Scope::Admin]);
        let worker = tokens.caller("t-worker").unwrap();
        assert!(
            worker.may_authorize("crm") && !worker.may_read("crm") && !worker.may_authorize("erp")
        );
        let reader = tokens.caller("t-reader").unwrap();
        assert!(reader.may_read("crm") && !reader.may_read_long_lived("crm") && !reader.is_admin());
        assert!(tokens.caller("t-ops").unwrap().may_read_long_lived("anything"));
        assert!(tokens.caller("t-nobody").is_none());
        assert!(Scope::parse("secrets:").is_err() && Scope::parse("root").is_err());
        assert_eq!(Scope::parse("long-lived:*").unwrap(), Scope::LongLived("*".into()));
    }
}
