//! `authplug schemes test FILE`: the conformance kit (`authplug_testkit::conformance`) over a
//! built plugin file, loaded with the checks of startup and called through the real boundary.
//! The kit answers the plugin's HTTP from the `--exercise` file, forwarding what it says to
//! forward through the host's transport (`--allow-loopback-http` for a fake on this machine).

use std::path::PathBuf;

use authplug_host::PluginFile;
use authplug_protocol::{ErrorBody, HttpRequest, HttpResponse, PluginManifest};
use authplug_testkit::conformance::{Exercises, Kit, Plugin, Verdict};
use clap::Args;
use serde_json::json;

use crate::context::Context;
use crate::exit::{Code, Failure};
use crate::output::print_json;

#[derive(Debug, Args)]
pub struct TestArgs {
    /// The built plugin file, e.g. target/debug/libmy_scheme.so.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// How to exercise each scheme, as JSON: {"schemes": {"ID": {"parameters": {..},
    /// "secrets": {..}, "exchanges": [{"method", "path", "status", "headers", "body"}],
    /// "forward": false, "follow_consent": false}}}. Without it, schemes get no parameters and
    /// a provider that answers 404.
    #[arg(long, value_name = "FILE")]
    pub exercise: Option<PathBuf>,
}

/// The file, as the kit calls it.
struct Loaded(PluginFile);

impl Plugin for Loaded {
    fn manifest(&self) -> Result<PluginManifest, String> {
        Ok(self.0.manifest().clone())
    }

    fn call(
        &self,
        method: &str,
        request: &str,
        host: &dyn Fn(&str, &str) -> Result<String, String>,
    ) -> Result<String, String> {
        self.0.call(method, request, host)
    }
}

pub fn run(ctx: &Context<'_>, args: &TestArgs) -> Result<(), Failure> {
    let shown = args.file.display();
    let file = PluginFile::open(&args.file)
        .map_err(|why| Failure::new(Code::PluginRefused, format!("{shown}: {why}")))?;
    let exercises = match &args.exercise {
        None => Exercises::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Failure::bad_input(format!("{}: {e}", path.display())))?;
            serde_json::from_str(&text)
                .map_err(|e| Failure::bad_input(format!("{}: {e}", path.display())))?
        }
    };
    let services = ctx.services()?;
    let network = |request: &HttpRequest| -> Result<HttpResponse, ErrorBody> {
        services.http(request.clone())
    };
    let plugin = Loaded(file);
    let report = Kit::new(&plugin).exercises(exercises).network(&network).run();
    let failed = report.failures().count();
    if ctx.json() {
        let findings: Vec<_> = report
            .findings
            .iter()
            .map(|f| {
                let (verdict, problem, fix) = match &f.verdict {
                    Verdict::Pass => ("pass", None, None),
                    Verdict::Skip(why) => ("skip", Some(why.as_str()), None),
                    Verdict::Fail { problem, fix } => ("fail", Some(problem.as_str()), Some(fix)),
                };
                json!({"scheme": f.scheme, "rule": f.rule, "verdict": verdict, "problem": problem, "fix": fix})
            })
            .collect();
        print_json(&json!({"file": args.file, "passed": failed == 0, "findings": findings}))?;
    } else {
        for line in report.lines() {
            println!("{line}");
        }
    }
    let skipped = report.findings.iter().filter(|f| matches!(f.verdict, Verdict::Skip(_))).count();
    let passed = report.findings.len() - failed - skipped;
    eprintln!("{shown}: {passed} rule(s) passed, {failed} failed, {skipped} skipped");
    if failed > 0 {
        return Err(Failure::new(
            Code::Nonconforming,
            format!("{shown} breaks {failed} conformance rule(s): see the FAIL lines"),
        ));
    }
    Ok(())
}
