//! What the plugin boundary costs: loading one plugin file, and one call through the boundary
//! versus the same scheme linked statically, and versus the same file served by a child process
//! (isolated). Run with `cargo xtask bench` (release plugin files and the release `authplug` as
//! the isolated plugin's runner).
//!
//! Targets: under 1 ms per plugin load, under 2 µs per in-process call (issue 2); an isolated
//! call under 50 µs round trip (issue 15).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use authplug_host::{
    HostServices, Isolation, IsolationPolicy, LoadOptions, LoadedScheme, Registry,
};
use authplug_protocol::{ApplyRequest, OnboardRequest, PluginManifest, Secret};
use criterion::{criterion_group, criterion_main, Criterion};

// The same scheme, linked statically, for the comparison.
use api_key as _;

fn plugin_file() -> PathBuf {
    if let Some(path) = std::env::var_os("AUTHPLUG_BENCH_PLUGIN") {
        return path.into();
    }
    let fallback = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/release/plugins")
        .join(format!("{}api_key{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX));
    assert!(fallback.is_file(), "no release plugin: run `cargo xtask bench`");
    fallback
}

fn only(registry: &Registry) -> LoadedScheme {
    assert!(registry.refusals().is_empty(), "{:?}", registry.refusals());
    registry.get("api_key").expect("api_key").clone()
}

/// The same file served by a child process, the release `authplug` as its runner.
fn isolated() -> Option<LoadedScheme> {
    let runner = PathBuf::from(std::env::var_os("AUTHPLUG_TEST_BIN")?);
    let isolation = IsolationPolicy {
        mode: Isolation::Process,
        runner: Some(runner),
        ..IsolationPolicy::default()
    };
    let dirs = vec![plugin_file().parent().unwrap().to_owned()];
    Some(only(&Registry::load(&LoadOptions { dirs, isolation, ..Default::default() })))
}

fn apply_request() -> ApplyRequest {
    ApplyRequest {
        scheme: "api_key".into(),
        injected: BTreeMap::from([("api_key".to_owned(), Secret::new("k-0123456789abcdef"))]),
        ..Default::default()
    }
}

fn request() -> OnboardRequest {
    OnboardRequest {
        scheme: "api_key".into(),
        required: BTreeMap::from([("api_key".to_owned(), Secret::new("k-0123456789abcdef"))]),
        ..Default::default()
    }
}

fn load(c: &mut Criterion) {
    let source = plugin_file();
    let scratch = tempfile::tempdir().expect("temp dir");
    let mut group = c.benchmark_group("load");
    group.sample_size(10).warm_up_time(Duration::from_millis(200));
    group.measurement_time(Duration::from_secs(1));
    // Every iteration loads a fresh copy: dlopen of an already loaded path only bumps a
    // reference count, which would flatter the figure. Copies are made outside the timing and
    // unlinked after loading (the mapping stays, as the host never unloads).
    let mut counter = 0u64;
    group.bench_function("one plugin file (discover, dlopen, check, describe)", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                counter += 1;
                let dir = scratch.path().join(counter.to_string());
                std::fs::create_dir(&dir).unwrap();
                let file = dir.join(source.file_name().unwrap());
                std::fs::copy(&source, &file).unwrap();
                let started = Instant::now();
                let registry = Registry::load(&LoadOptions::from_dirs([&dir]));
                total += started.elapsed();
                assert!(registry.get("api_key").is_some());
                std::fs::remove_dir_all(&dir).unwrap();
            }
            total
        })
    });
    group.finish();
}

fn calls(c: &mut Criterion) {
    let dynamic = only(&Registry::load(&LoadOptions::from_dirs([plugin_file().parent().unwrap()])));
    let linked = only(&Registry::load(&LoadOptions {
        dirs: vec![],
        include_static: true,
        ..Default::default()
    }));
    let plugin = authplug_abi::load(&plugin_file()).expect("loads");
    let host = HostServices::offline();
    let host_fn = |m: &str, r: &str| host.handle(m, r);

    let mut group = c.benchmark_group("call");
    group.bench_function("describe via boundary (JSON + parse)", |b| {
        b.iter(|| {
            let manifest: PluginManifest = serde_json::from_str(&plugin.describe()).unwrap();
            black_box(manifest)
        })
    });
    group.bench_function("describe linked statically", |b| {
        b.iter(|| black_box(authplug_sdk::manifest("api-key", "0.1.0")))
    });
    group.bench_function("bare boundary round trip (unknown method)", |b| {
        b.iter(|| black_box(plugin.call(black_box("ping"), black_box("{}"), &host_fn)))
    });
    group.bench_function("onboard via boundary", |b| {
        b.iter(|| black_box(dynamic.onboard(request(), &host).unwrap()))
    });
    group.bench_function("onboard linked statically", |b| {
        b.iter(|| black_box(linked.onboard(request(), &host).unwrap()))
    });
    group.bench_function("apply via boundary", |b| {
        b.iter(|| black_box(dynamic.apply(apply_request(), &host).unwrap()))
    });
    match isolated() {
        Some(child) => {
            group.bench_function("onboard isolated (child process)", |b| {
                b.iter(|| black_box(child.onboard(request(), &host).unwrap()))
            });
            group.bench_function("apply isolated (child process)", |b| {
                b.iter(|| black_box(child.apply(apply_request(), &host).unwrap()))
            });
        }
        None => eprintln!("boundary: AUTHPLUG_TEST_BIN is not set: no isolated figures"),
    }
    group.finish();
}

criterion_group!(benches, load, calls);
criterion_main!(benches);
