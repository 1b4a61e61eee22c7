//! `cargo xtask`: the project's build and test entry points (matklad's xtask pattern, std only so
//! it builds in seconds).
//!
//! ```text
//! cargo xtask plugins [--release]   build every plugin in plugins/ into target/<profile>/plugins
//! cargo xtask run [--release] -- ARGS   build authplug and the plugins, run `authplug ARGS`
//! cargo xtask fixtures              build the test fixtures (including the out-of-tree scheme)
//! cargo xtask test [-- ARGS]        the whole suite (what CI runs)
//! cargo xtask check-plugins         no plugin links reqwest, hyper or an async runtime
//! cargo xtask lint                  rustfmt --check and clippy -D warnings
//! cargo xtask bench                 release plugins, then the criterion benchmarks
//! ```

use std::env;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

mod lint;
mod package;
mod peers;

/// Test fixtures that are workspace members and build as plugin files.
const WORKSPACE_FIXTURES: &[&str] = &[
    "hostile-plugin",
    "membercare-scheme",
    "misbehaving-plugin",
    "nonconforming-plugin",
    "future-major-plugin",
    "not-a-plugin",
    "old-minor-scheme",
];

/// The fixture built outside the workspace, as a connector team would.
const OUT_OF_TREE_FIXTURE: &str = "tests/fixtures/out-of-tree-scheme";

/// The scheme `cargo xtask test` has `authplug schemes new` write, test and build each run.
const SCAFFOLDED: &str = "demo_session";

/// Crates a plugin must never link: HTTP and async runtimes belong to the host.
const FORBIDDEN_IN_PLUGINS: &[&str] = &["reqwest", "hyper", "tokio", "async-std", "ureq", "curl"];

type Result<T = ()> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let outcome = match args.first().map(String::as_str) {
        Some("plugins") => Profile::from_args(&args[1..]).and_then(|p| build_plugins(p).map(drop)),
        Some("run") => run(&args[1..]),
        Some("fixtures") => build_fixtures(),
        Some("test") => test(passthrough(&args[1..])),
        Some("package") => package::package(),
        Some("check-plugins") => check_plugins(),
        Some("lint") => lint::lint(),
        Some("bench") => bench(passthrough(&args[1..])),
        Some("postgres") => peers::Postgres::start().map(|pg| {
            println!("{}", pg.url());
            let _ = std::io::stdin().read_line(&mut String::new());
            pg.stop();
        }),
        Some("-h" | "--help" | "help") | None => {
            println!("{}", HELP.trim());
            Ok(())
        }
        Some(other) => Err(format!("unknown task {other:?}; run `cargo xtask --help`")),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: error: {message}");
            ExitCode::FAILURE
        }
    }
}

const HELP: &str = "
cargo xtask <task>

  plugins [--release]        build every plugin in plugins/ into target/<profile>/plugins
  run [--release] -- ARGS    build authplug and the plugins, then run `authplug ARGS` with them
  fixtures                   build the test fixtures into target/debug/fixtures
  test [-- ARGS]             the whole test suite, as CI runs it (ARGS go to the test runner);
                             without ARGS, then `package`
  package                    cargo package (verified) of the crates a connector team depends on:
                             authplug-abi, -protocol, -sdk and -testkit
  check-plugins              fail if a plugin links reqwest, hyper or an async runtime
  lint                       cargo fmt --check and cargo clippy --all-targets -D warnings
  bench [-- ARGS]            release authplug and plugins, then every benchmark (ARGS go to cargo
                             bench): criterion's, the refresh benches against oidc-provider, and
                             the HTTP load test of `serve` next to nginx (needs Debian's nginx-light
                             and wrk; `-- -p tests --bench authorize_load` runs it alone)
  postgres                   start a throwaway PostgreSQL on loopback, print its URL, stop on Enter

The test and bench tasks start a throwaway PostgreSQL cluster (Debian's server binaries, found
under /usr/lib/postgresql/*/bin or through AUTHPLUG_PG_BIN) and stop it afterwards.
";

#[derive(Clone, Copy, PartialEq)]
enum Profile {
    Debug,
    Release,
}

impl Profile {
    fn from_args(args: &[String]) -> Result<Self> {
        match args {
            [] => Ok(Profile::Debug),
            [flag] if flag == "--release" => Ok(Profile::Release),
            other => Err(format!("unexpected arguments {other:?}")),
        }
    }

    fn dir(self) -> &'static str {
        match self {
            Profile::Debug => "debug",
            Profile::Release => "release",
        }
    }

    fn cargo_flag(self) -> Option<&'static str> {
        (self == Profile::Release).then_some("--release")
    }
}

fn passthrough(args: &[String]) -> Vec<String> {
    match args.iter().position(|a| a == "--") {
        Some(i) => args[i + 1..].to_vec(),
        None => args.to_vec(),
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").into()
}

fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"))
}

fn cargo() -> Command {
    let mut command = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(root());
    command
}

fn status(mut command: Command) -> Result {
    let shown = format!("{command:?}");
    let status = command.status().map_err(|e| format!("cannot start {shown}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown} failed with {status}"))
    }
}

/// The package names of the crates in `plugins/`.
fn plugin_packages() -> Result<Vec<String>> {
    let mut names = Vec::new();
    let dir = root().join("plugins");
    let entries = fs::read_dir(&dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let manifest = entry.path().join("Cargo.toml");
        if manifest.is_file() {
            names.push(package_name(&manifest)?);
        }
    }
    names.sort();
    Ok(names)
}

/// The `name` of a `Cargo.toml`'s `[package]` (a line scan: enough for our own manifests).
fn package_name(manifest: &Path) -> Result<String> {
    let text = fs::read_to_string(manifest)
        .map_err(|e| format!("cannot read {}: {e}", manifest.display()))?;
    let mut in_package = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package {
            if let Some(value) = line.strip_prefix("name").map(str::trim) {
                if let Some(value) = value.strip_prefix('=') {
                    return Ok(value.trim().trim_matches('"').to_owned());
                }
            }
        }
    }
    Err(format!("{}: no [package] name", manifest.display()))
}

/// `libapi_key.so` for package `api-key` on Linux.
fn library_file(package: &str) -> String {
    format!("{}{}{}", env::consts::DLL_PREFIX, package.replace('-', "_"), env::consts::DLL_SUFFIX)
}

/// Copies through a temporary name and renames: overwriting a loaded library in place would
/// crash a running authplug that mapped it.
fn install(from: &Path, to_dir: &Path) -> Result<PathBuf> {
    fs::create_dir_all(to_dir).map_err(|e| format!("cannot create {}: {e}", to_dir.display()))?;
    let name = from.file_name().ok_or("no file name")?;
    let target = to_dir.join(name);
    let mut temporary = OsString::from(".");
    temporary.push(name);
    temporary.push(".tmp");
    let temporary = to_dir.join(temporary);
    fs::copy(from, &temporary).map_err(|e| format!("cannot copy {}: {e}", from.display()))?;
    fs::rename(&temporary, &target)
        .map_err(|e| format!("cannot install {}: {e}", target.display()))?;
    Ok(target)
}

/// Builds `packages` (and `extra` packages in the same cargo invocation, to share the build).
fn build(profile: Profile, packages: &[String], extra: &[&str]) -> Result {
    let mut command = cargo();
    command.arg("build").args(profile.cargo_flag());
    for package in packages.iter().map(String::as_str).chain(extra.iter().copied()) {
        command.args(["--package", package]);
    }
    status(command)
}

fn plugin_dir(profile: Profile) -> PathBuf {
    target_dir().join(profile.dir()).join("plugins")
}

fn fixture_dir() -> PathBuf {
    target_dir().join("debug").join("fixtures")
}

fn install_plugins(profile: Profile, packages: &[String]) -> Result<PathBuf> {
    let out = plugin_dir(profile);
    for package in packages {
        let built = target_dir().join(profile.dir()).join(library_file(package));
        install(&built, &out)?;
    }
    Ok(out)
}

fn build_plugins(profile: Profile) -> Result<PathBuf> {
    let packages = plugin_packages()?;
    build(profile, &packages, &[])?;
    let out = install_plugins(profile, &packages)?;
    eprintln!("xtask: {} plugin(s) in {}", packages.len(), out.display());
    Ok(out)
}

fn run(args: &[String]) -> Result {
    let (profile, rest) = match args.first().map(String::as_str) {
        Some("--release") => (Profile::Release, &args[1..]),
        _ => (Profile::Debug, args),
    };
    let packages = plugin_packages()?;
    build(profile, &packages, &["authplug-cli"])?;
    let plugins = install_plugins(profile, &packages)?;
    let binary =
        target_dir().join(profile.dir()).join(format!("authplug{}", env::consts::EXE_SUFFIX));
    let mut command = Command::new(binary);
    command.args(passthrough(rest)).env("AUTHPLUG_PLUGIN_DIR", plugins);
    let status = command.status().map_err(|e| format!("cannot start authplug: {e}"))?;
    // Pass authplug's own exit code through: it means something.
    std::process::exit(status.code().unwrap_or(1));
}

fn build_fixtures() -> Result {
    let fixtures: Vec<String> = WORKSPACE_FIXTURES.iter().map(|s| s.to_string()).collect();
    build(Profile::Debug, &fixtures, &[])?;
    for package in WORKSPACE_FIXTURES {
        install(&target_dir().join("debug").join(library_file(package)), &fixture_dir())?;
    }
    build_out_of_tree()
}

/// Builds the out-of-tree scheme with its own manifest and lock file, in its own target folder,
/// exactly as a connector team's repository would be built.
fn build_out_of_tree() -> Result {
    let dir = root().join(OUT_OF_TREE_FIXTURE);
    // Start from the workspace's lock file, so that the fixture builds the same dependency
    // versions the host was tested with (a team would commit its own).
    fs::copy(root().join("Cargo.lock"), dir.join("Cargo.lock"))
        .map_err(|e| format!("cannot seed the fixture's Cargo.lock: {e}"))?;
    let target = target_dir().join("out-of-tree");
    let mut command = cargo();
    command
        .current_dir(&dir)
        .args(["build", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        // Settings of this workspace's .cargo/config.toml must not leak into the team's build.
        .env_remove("CARGO_TARGET_DIR");
    status(command)?;
    let package = package_name(&dir.join("Cargo.toml"))?;
    install(&target.join("debug").join(library_file(&package)), &fixture_dir())?;
    Ok(())
}

/// A second out-of-tree fixture, written by the scaffold itself: `authplug schemes new` into
/// `target/scaffold`, its own tests run (the conformance kit over its rlib), built, and its file
/// installed among the fixtures. The tests load it into the unchanged host and connect it.
fn scaffold() -> Result {
    let parent = scaffold_dir();
    let dir = parent.join(SCAFFOLDED.replace('_', "-"));
    if parent.exists() {
        fs::remove_dir_all(&parent)
            .map_err(|e| format!("cannot clear {}: {e}", parent.display()))?;
    }
    fs::create_dir_all(&parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    let binary = target_dir().join("debug").join(format!("authplug{}", env::consts::EXE_SUFFIX));
    let mut new = Command::new(binary);
    new.args(["schemes", "new", SCAFFOLDED, "--dir"])
        .arg(&parent)
        .arg("--sdk-path")
        .arg(root().join("crates/authplug-sdk"));
    status(new)?;
    fs::copy(root().join("Cargo.lock"), dir.join("Cargo.lock"))
        .map_err(|e| format!("cannot seed the scaffold's Cargo.lock: {e}"))?;
    // The out-of-tree fixture's target: the SDK and its dependencies are built there already.
    let target = target_dir().join("out-of-tree");
    for step in ["test", "build"] {
        let mut command = cargo();
        command
            .current_dir(&dir)
            .arg(step)
            .arg("--target-dir")
            .arg(&target)
            .env_remove("CARGO_TARGET_DIR");
        status(command)?;
    }
    install(&target.join("debug").join(library_file(SCAFFOLDED)), &fixture_dir())?;
    Ok(())
}

fn scaffold_dir() -> PathBuf {
    target_dir().join("scaffold")
}

fn check_plugins() -> Result {
    let mut offenders = Vec::new();
    for package in plugin_packages()? {
        let output = cargo()
            .args(["tree", "--package", &package, "--edges", "normal,build", "--prefix", "none"])
            .args(["--format", "{p}"])
            .output()
            .map_err(|e| format!("cannot run cargo tree: {e}"))?;
        if !output.status.success() {
            return Err(format!("cargo tree failed for {package}"));
        }
        let tree = String::from_utf8_lossy(&output.stdout);
        for line in tree.lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            if FORBIDDEN_IN_PLUGINS.contains(&name) {
                offenders.push(format!("{package} links {}", line.trim()));
            }
        }
    }
    offenders.sort();
    offenders.dedup();
    if offenders.is_empty() {
        eprintln!("xtask: no plugin links HTTP or an async runtime");
        Ok(())
    } else {
        Err(format!("plugins must use the host's HTTP: {}", offenders.join("; ")))
    }
}

fn test(runner_args: Vec<String>) -> Result {
    let whole = runner_args.is_empty();
    let plugins = plugin_packages()?;
    let mut packages = plugins.clone();
    packages.extend(WORKSPACE_FIXTURES.iter().map(|s| s.to_string()));
    build(Profile::Debug, &packages, &["authplug-cli"])?;
    let plugin_dir = install_plugins(Profile::Debug, &plugins)?;
    for package in WORKSPACE_FIXTURES {
        install(&target_dir().join("debug").join(library_file(package)), &fixture_dir())?;
    }
    build_out_of_tree()?;
    scaffold()?;
    check_plugins()?;

    let nextest = cargo()
        .args(["nextest", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    let node_peers = peers::install_node_peers(&root())?;
    // A throwaway PostgreSQL cluster for the store's tests, stopped whatever the tests do.
    let postgres = peers::Postgres::start()?;
    let outcome: Result = (|| {
        let mut command = cargo();
        if nextest {
            command.args(["nextest", "run", "--workspace", "--no-fail-fast"]);
        } else {
            command.args(["test", "--workspace", "--no-fail-fast"]);
        }
        command.args(&runner_args);
        set_test_env(&mut command, &plugin_dir);
        postgres.set_env(&mut command);
        command.env("AUTHPLUG_TEST_PEERS_DIR", &node_peers);
        status(command)?;
        if whole {
            // The end-to-end suite again with every plugin file in its own process: isolation
            // must change nothing a scheme's user sees.
            let mut isolated = cargo();
            if nextest {
                isolated.args(["nextest", "run", "--package", "tests", "--no-fail-fast"]);
                // Not again: what calls no scheme (help, docs, the guide's text, connector
                // checks, the hardening probes) or sets the isolation itself (isolation,
                // pinning, loading).
                isolated.args(["-E", ISOLATED_PASS]);
            } else {
                isolated.args(["test", "--package", "tests", "--no-fail-fast"]);
            }
            set_test_env(&mut isolated, &plugin_dir);
            postgres.set_env(&mut isolated);
            isolated
                .env("AUTHPLUG_TEST_PEERS_DIR", &node_peers)
                .env("AUTHPLUG_ISOLATION", "process");
            eprintln!("xtask: the end-to-end tests again, every plugin isolated");
            status(isolated)?;
        }
        if nextest {
            // nextest does not run doctests.
            let mut doc = cargo();
            doc.args(["test", "--workspace", "--doc"]);
            set_test_env(&mut doc, &plugin_dir);
            status(doc)?;
        }
        Ok(())
    })();
    postgres.stop();
    outcome?;
    if whole {
        package::package()?;
    }
    Ok(())
}

/// Tells the end-to-end tests where the built files are.
fn set_test_env(command: &mut Command, plugin_dir: &Path) {
    let binary = target_dir().join("debug").join(format!("authplug{}", env::consts::EXE_SUFFIX));
    command
        .env("AUTHPLUG_TEST_BIN", binary)
        .env("AUTHPLUG_TEST_PLUGIN_DIR", plugin_dir)
        .env("AUTHPLUG_TEST_FIXTURE_DIR", fixture_dir())
        .env("AUTHPLUG_TEST_SCAFFOLD_DIR", scaffold_dir().join(SCAFFOLDED.replace('_', "-")));
    let shared = root().join("../shared");
    if env::var_os("AUTHPLUG_SHARED_DIR").is_none() {
        if shared.is_dir() {
            command.env("AUTHPLUG_SHARED_DIR", shared);
        } else {
            eprintln!(
                "xtask: warning: {} does not exist; the tests that read the spec page, the real \
                 connectors and the peers will fail (set AUTHPLUG_SHARED_DIR)",
                shared.display()
            );
        }
    }
}

/// The end-to-end test binaries the isolated pass runs (a nextest filter).
const ISOLATED_PASS: &str = "not (binary(help) | binary(docs) | binary(guide) | binary(host_knows_no_scheme) | binary(check) | binary(hardening) | binary(isolation) | binary(pinning) | binary(loading) | binary(tls))";

fn bench(bench_args: Vec<String>) -> Result {
    // The release server and plugins: the load bench (tests/benches/authorize_load.rs) serves
    // with them.
    let packages = plugin_packages()?;
    build(Profile::Release, &packages, &["authplug-cli"])?;
    let plugins = install_plugins(Profile::Release, &packages)?;
    let binary = target_dir().join("release").join(format!("authplug{}", env::consts::EXE_SUFFIX));
    let postgres = peers::Postgres::start()?;
    let mut command = cargo();
    command.arg("bench");
    if !bench_args.iter().any(|a| a == "-p" || a == "--package") {
        command.arg("--workspace");
    }
    command.args(&bench_args);
    command.env("AUTHPLUG_BENCH_PLUGIN", plugins.join(library_file("api-key")));
    command.env("AUTHPLUG_BENCH_PLUGIN_DIR", &plugins);
    // The end-to-end benches run against oidc-provider with the release plugins.
    command.env("AUTHPLUG_TEST_PLUGIN_DIR", &plugins);
    command.env("AUTHPLUG_TEST_BIN", binary);
    command.env("AUTHPLUG_TEST_PEERS_DIR", peers::install_node_peers(&root())?);
    postgres.set_env(&mut command);
    let outcome = status(command);
    postgres.stop();
    outcome
}
