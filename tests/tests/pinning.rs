//! Pinning plugin files: `authplug plugins lock` writes the approved files' names and hashes;
//! with `--plugins-lock`, a replaced, an added and a truncated file are each refused in one line
//! and the others load; `plugins verify` says the same without loading anything. Whatever the
//! lock, a file others may write, or a link out of the plugin folder, is refused.

use std::os::unix::fs::PermissionsExt as _;

use tests::{authplug, fixture, library_file, plugin, plugin_folder, stderr, stdout};

fn refused(output: &std::process::Output) -> Vec<String> {
    stderr(output).lines().filter(|l| l.contains("plugin refused:")).map(str::to_owned).collect()
}

#[test]
fn a_lock_refuses_exactly_the_replaced_added_and_truncated_files() {
    let names = ["api_key", "jwt_scheme", "oauth2_scheme", "tripletex"];
    let files: Vec<_> = names.iter().map(|n| (plugin(n), library_file(n))).collect();
    let borrowed: Vec<_> = files.iter().map(|(p, n)| (p.as_path(), n.as_str())).collect();
    let dir = plugin_folder(&borrowed);
    let lock = dir.path().with_extension("lock");
    let folder = dir.path().to_str().unwrap();
    let locked = authplug(dir.path(), &["plugins", "lock", "--output", lock.to_str().unwrap()]);
    assert!(locked.status.success(), "{}", stderr(&locked));
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&lock).unwrap()).unwrap();
    assert_eq!(written["plugins"].as_object().unwrap().len(), 4, "{written}");
    assert_eq!(written["plugins"]["libtripletex.so"]["schemes"][0], "tripletex");
    assert_eq!(written["plugins"]["libapi_key.so"]["sha256"].as_str().unwrap().len(), 64);
    let verified = authplug(dir.path(), &["plugins", "verify", lock.to_str().unwrap()]);
    assert!(verified.status.success(), "{}", stderr(&verified));

    // Another plugin's code under jwt's name, a file nobody locked, api_key cut in half.
    let at = |name: &str| dir.path().join(library_file(name));
    std::fs::copy(fixture("demo_session"), at("jwt_scheme")).unwrap();
    std::fs::copy(fixture("misbehaving_plugin"), at("misbehaving_plugin")).unwrap();
    let bytes = std::fs::read(at("api_key")).unwrap();
    std::fs::write(at("api_key"), &bytes[..bytes.len() / 2]).unwrap();

    let lock_arg = lock.to_str().unwrap();
    let loaded = authplug(dir.path(), &["--plugins-lock", lock_arg, "schemes"]);
    let lines = refused(&loaded);
    assert_eq!(lines.len(), 3, "one line for each of the three: {lines:?}");
    for (name, reason) in [
        ("jwt_scheme", "differs from the lock's"),
        ("misbehaving_plugin", "not in the plugin lock file"),
        ("api_key", "differs from the lock's"),
    ] {
        let file = library_file(name);
        assert!(
            lines.iter().any(|l| l.contains(&file) && l.contains(reason)),
            "{file}: {reason}: {lines:?}"
        );
    }
    let listed = stdout(&loaded);
    assert!(listed.contains("oauth2") && listed.contains("tripletex"), "{listed}");
    assert!(!listed.contains("demo_session") && !listed.contains("panicky"), "{listed}");

    let verified = authplug(dir.path(), &["plugins", "verify", lock_arg]);
    assert_eq!(verified.status.code(), Some(3), "{}", stderr(&verified));
    let said = stdout(&verified);
    assert_eq!(said.lines().count(), 3, "{said}");
    for name in ["jwt_scheme", "misbehaving_plugin", "api_key"] {
        assert!(said.contains(&format!("{folder}/{}", library_file(name))), "{name}: {said}");
    }
}

#[test]
fn a_file_others_may_write_or_a_link_out_of_the_folder_is_refused() {
    let dir = plugin_folder(&[(&plugin("api_key"), &library_file("api_key"))]);
    let outside = tempfile::tempdir().unwrap();
    let elsewhere = outside.path().join(library_file("tripletex"));
    std::fs::copy(plugin("tripletex"), &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, dir.path().join(library_file("tripletex"))).unwrap();
    let writable = dir.path().join(library_file("api_key"));
    std::fs::set_permissions(&writable, std::fs::Permissions::from_mode(0o646)).unwrap();
    let output = authplug(dir.path(), &["schemes"]);
    let lines = refused(&output);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines
        .iter()
        .any(|l| l.contains("libapi_key.so") && l.contains("writable by group or others")));
    assert!(lines
        .iter()
        .any(|l| l.contains("libtripletex.so") && l.contains("leads out of its folder")));
}
