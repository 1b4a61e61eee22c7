//! Issue 16, check 9: template scanning is linear. A template of 1,000,000 references (half
//! `$SECRET(name)`, a quarter `$ENV(name)`, a quarter `{{@ name @}}`, on one line and on lines
//! of their own) is scanned, expanded and resolved; each must take under 1 s. The same work on
//! a template a tenth the size is the reference: linear work takes about a tenth of the time.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use authplug_connector::{expand, resolve, scan, Resolver};
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::Value;

/// A JSON array of `references` strings, each holding one reference; on one line or one each.
fn template(references: usize, one_line: bool) -> String {
    let separator = if one_line { ", " } else { ",\n" };
    let items: Vec<String> = (0..references)
        .map(|i| match i % 4 {
            0 | 1 => format!("\"Bearer $SECRET(key{})\"", i % 7),
            2 => format!("\"$ENV(base_url)/{i}\""),
            _ => "\"{{@ system @}}\"".to_owned(),
        })
        .collect();
    format!("[{}]", items.join(separator))
}

/// Scans, expands and resolves `text`: the work of `authplug render` on one template.
fn render(text: &str) -> usize {
    let variables = BTreeMap::from([("system".to_owned(), Value::from("crm"))]);
    let secret = |name: &str| name.starts_with("key").then(|| "s3cret".to_owned());
    let env = |_: &str| Some("https://api.example.com".to_owned());
    let resolver = Resolver { secret: &secret, env: &env };
    let found = scan(text).len();
    let expanded = expand("t.json", text, &variables).expect("expands");
    let (resolved, _) = resolve("t.json", &expanded, &resolver).expect("resolves");
    found + resolved.len()
}

fn timed(text: &str) -> Duration {
    let started = Instant::now();
    black_box(render(black_box(text)));
    started.elapsed()
}

fn linear(c: &mut Criterion) {
    for one_line in [true, false] {
        let layout = if one_line { "one line" } else { "a line each" };
        let big = template(1_000_000, one_line);
        let small = template(100_000, one_line);
        // The figure the check asks for, and the ratio that says the work is linear.
        let (big_time, small_time) = (timed(&big), timed(&small));
        let ratio = big_time.as_secs_f64() / small_time.as_secs_f64();
        println!(
            "templates: 1,000,000 references ({layout}, {} MB) scanned, expanded and resolved in {:.3} s (goal under 1 s: {}); 100,000 in {:.3} s; ratio {ratio:.1} (linear: about 10)",
            big.len() >> 20,
            big_time.as_secs_f64(),
            if big_time < Duration::from_secs(1) { "met" } else { "NOT met" },
            small_time.as_secs_f64(),
        );
        let mut group = c.benchmark_group("templates");
        group.sample_size(10).measurement_time(Duration::from_secs(3));
        group.bench_function(format!("render 100,000 references ({layout})"), |b| {
            b.iter(|| render(black_box(&small)))
        });
        group.finish();
    }
}

criterion_group!(benches, linear);
criterion_main!(benches);
