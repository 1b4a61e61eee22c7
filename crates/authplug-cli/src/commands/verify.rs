//! `authplug verify ID`: does a stored system's credential work? One verification request (see
//! `authplug_onboard::verify`), its outcome on stdout and in the exit code.

use authplug_onboard::{DeclaredBy, Verdict, Verification, VerifyError};
use clap::Args;
use serde_json::{json, Value};

use crate::context::{Context, EngineOptions};
use crate::exit::{Code, Failure};
use crate::output::print_json;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The stored system.
    pub system: String,
}

pub fn run(ctx: &Context<'_>, args: &VerifyArgs) -> Result<(), Failure> {
    let (system, actor) = (args.system.clone(), ctx.actor());
    let report = ctx.with_engine(EngineOptions::default(), async move |engine| {
        Ok(authplug_onboard::verify(engine, &system, &actor).await?)
    })?;
    if ctx.json() {
        print_json(&report)?;
    } else if !report.outcome.is_failure() {
        println!("{}", line(&report));
    }
    verdict(&report, |line| line)
}

/// One line: the outcome, the request and its answer.
pub fn line(report: &Verification) -> String {
    let outcome = match report.outcome {
        Verdict::Verified => "verified",
        Verdict::Refused => "refused",
        Verdict::Failed => "not verified",
        Verdict::Unreachable => "not verified (unreachable)",
        Verdict::Undeclared => {
            return format!("{}: nothing to verify: {}", report.system, report.detail)
        }
    };
    let by = match report.declared_by {
        Some(DeclaredBy::Connector) => "the connector's",
        _ => "the scheme's",
    };
    let request = format!(
        "{} {}",
        report.method.as_deref().unwrap_or(""),
        report.url.as_deref().unwrap_or("")
    );
    let took = report.elapsed_ms.map(|ms| format!(" in {ms} ms")).unwrap_or_default();
    format!("{}: {outcome}: {by} {request}{took}: {}", report.system, report.detail)
}

/// The exit policy of a verification: verified and undeclared succeed, a refusal is 7, anything
/// else 12; `say` shapes the failure's line (connect says the system is stored).
pub fn verdict(report: &Verification, say: impl FnOnce(String) -> String) -> Result<(), Failure> {
    let code = match report.outcome {
        Verdict::Verified | Verdict::Undeclared => return Ok(()),
        Verdict::Refused => Code::NeedsReauth,
        Verdict::Failed | Verdict::Unreachable => Code::NotVerified,
    };
    Err(Failure::new(code, say(line(report))))
}

/// Connect's last step, for the system just stored: the progress line, the JSON's
/// `verification`, and the exit policy. A verification that could not run (a declaration this
/// system cannot send) exits 12 like one without a verdict; either way the line says the system
/// is stored.
pub fn after_connect(
    outcome: Result<Verification, VerifyError>,
    system: &str,
) -> (String, Value, Result<(), Failure>) {
    let stored = |what: &str| {
        format!(
            "system {system} is stored, but {what} (above): `authplug verify {system}` tries again"
        )
    };
    match outcome {
        Ok(report) => {
            let result = verdict(&report, |_| stored("its verification failed"));
            let value = serde_json::to_value(&report).unwrap_or(Value::Null);
            (line(&report), value, result)
        }
        Err(error) => {
            let failure = Failure::from(error);
            let code = match failure.code {
                Code::BadInput => Code::NotVerified,
                code => code,
            };
            let said = format!("{system}: cannot verify: {}", failure.message);
            let value = json!({"system": system, "error": failure.message});
            (said, value, Err(Failure::new(code, stored("it could not be verified"))))
        }
    }
}
