//! What a connector folder may make authplug read or write: file names that stay names, template
//! paths that stay inside the folder, and files of a bounded size. A connector folder comes from
//! another team; none of it may reach outside the folder or exhaust the machine.

use std::io::Read as _;
use std::path::{Component, Path};

use crate::error::ConnectorError;

/// The largest `manifest.json` read (the shared connectors' largest is 7 KB).
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// The largest template read (the shared connectors' largest is 55 KB).
pub const MAX_TEMPLATE_BYTES: u64 = 16 << 20;
/// The longest datatype name.
const MAX_NAME: usize = 100;

/// Why `name` cannot name a file written in an output folder (`<name>.json`), if it cannot: a
/// name is 1 to 100 of `A-Z a-z 0-9 _ - .`, not starting with `.`.
pub fn unsafe_name(name: &str) -> Option<String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    let why = if name.is_empty() || name.len() > MAX_NAME {
        format!("it is {} characters long, not 1 to {MAX_NAME}", name.chars().count())
    } else if name.starts_with('.') {
        "it starts with `.`".into()
    } else if let Some(c) = name.chars().find(|c| !allowed(*c)) {
        format!("it holds {}", shown(c))
    } else {
        return None;
    };
    Some(format!("{why}: a datatype's name names its rendered file (`<name>.json`), so it is written with A-Z, a-z, 0-9, `_`, `-` and `.`, and does not start with `.`"))
}

/// A character as a message shows it: printable ones quoted, others by code point.
fn shown(c: char) -> String {
    match c {
        c if c.is_ascii_graphic() || c == ' ' => format!("`{c}`"),
        c => format!("U+{:04X}", c as u32),
    }
}

/// Why a template path of the manifest is not one inside the folder, if it is not: relative,
/// without `..`.
pub fn unsafe_template_path(path: &str) -> Option<&'static str> {
    let path = Path::new(path);
    if path.as_os_str().is_empty() {
        return Some("it is empty");
    }
    let mut components = path.components();
    components.find_map(|component| match component {
        Component::Normal(_) | Component::CurDir => None,
        Component::ParentDir => Some("it climbs out of the connector folder with `..`"),
        Component::RootDir | Component::Prefix(_) => {
            Some("it is absolute: a template path is relative to the connector folder")
        }
    })
}

/// Reads `dir/relative` whole if it resolves inside `dir` (a link out of the folder is refused)
/// and is at most `limit` bytes, as UTF-8 text.
pub fn read_inside(dir: &Path, relative: &str, limit: u64) -> Result<String, ConnectorError> {
    let path = dir.join(relative);
    let refuse = |reason: String| ConnectorError::Unreadable { path: path.clone(), reason };
    let io = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::NotFound => refuse("not found".into()),
        _ => refuse(e.to_string()),
    };
    let folder = dir.canonicalize().map_err(io)?;
    let real = path.canonicalize().map_err(io)?;
    if !real.starts_with(&folder) {
        let outside = real.display();
        return Err(refuse(format!(
            "it resolves to {outside}, outside the connector folder (a link?)"
        )));
    }
    read_limited(&real, limit).map_err(refuse)
}

/// Reads `path` whole if it is a file of at most `limit` bytes, as UTF-8 text.
pub fn read_limited(path: &Path, limit: u64) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "not found".to_owned(),
        _ => e.to_string(),
    })?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a file".into());
    }
    let too_big = |size: u64| format!("it is {size} bytes; the largest read is {limit} bytes");
    if meta.len() > limit {
        return Err(too_big(meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1).read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    if bytes.len() as u64 > limit {
        return Err(too_big(bytes.len() as u64));
    }
    String::from_utf8(bytes)
        .map_err(|e| format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_would_leave_the_folder_are_refused() {
        for good in ["contact", "quote-line", "v2.orders", "Person_1"] {
            assert_eq!(unsafe_name(good), None, "{good}");
        }
        for bad in ["../../x", "/abs/path", "a/b", ".hidden", "", "a\u{0}b", "a\u{202e}b", "nl\n"] {
            assert!(unsafe_name(bad).is_some(), "{bad:?}");
        }
        assert!(unsafe_name(&"x".repeat(101)).unwrap().starts_with("it is 101 characters"));
        assert!(unsafe_name("a\u{202e}b").unwrap().starts_with("it holds U+202E"));
    }

    #[test]
    fn template_paths_stay_relative_and_inside() {
        assert_eq!(unsafe_template_path("templates/system.json"), None);
        assert_eq!(unsafe_template_path("./templates/a.json"), None);
        assert!(unsafe_template_path("/etc/passwd").unwrap().contains("absolute"));
        assert!(unsafe_template_path("templates/../../secret.json").unwrap().contains(".."));
    }

    #[test]
    fn a_link_out_of_the_folder_and_an_oversized_file_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("elsewhere.json"), "{}").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("templates")).unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("elsewhere.json"),
            dir.path().join("templates/link.json"),
        )
        .unwrap();
        std::fs::write(dir.path().join("templates/big.json"), vec![b' '; 2048]).unwrap();
        std::fs::write(dir.path().join("templates/ok.json"), "{}").unwrap();
        let link = read_inside(dir.path(), "templates/link.json", 1024).unwrap_err().to_string();
        assert!(link.contains("outside the connector folder"), "{link}");
        let big = read_inside(dir.path(), "templates/big.json", 1024).unwrap_err().to_string();
        assert!(big.ends_with("it is 2048 bytes; the largest read is 1024 bytes"), "{big}");
        assert_eq!(read_inside(dir.path(), "templates/ok.json", 1024).unwrap(), "{}");
    }
}
