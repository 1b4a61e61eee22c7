//! `authplug check DIR...`: connector folders judged against their schemes, like a compiler.

use std::path::{Path, PathBuf};

use authplug_connector::{Connector, ConnectorError, Finding, Report, Severity};
use clap::Args;
use serde_json::json;

use crate::context::Context;
use crate::exit::{Code, Failure};
use crate::output::print_json;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Connector folders (each holding a manifest.json and templates/).
    #[arg(value_name = "CONNECTOR_DIR", required = true)]
    pub connectors: Vec<PathBuf>,

    /// Fail (exit code 2) on warnings too.
    #[arg(long)]
    pub deny_warnings: bool,
}

pub fn run(ctx: &Context<'_>, args: &CheckArgs) -> Result<(), Failure> {
    let (dirs, json, deny_warnings) = (&args.connectors, ctx.json(), args.deny_warnings);
    let registry = ctx.registry()?;
    let schemes: Vec<_> = registry.schemes().map(|s| s.descriptor()).collect();
    let reports: Vec<(PathBuf, Report)> = dirs
        .iter()
        .map(|dir| {
            let report = match Connector::load(dir) {
                Ok(connector) => authplug_connector::check(&connector, &schemes),
                Err(error) => unreadable(dir, error),
            };
            (dir.clone(), report)
        })
        .collect();
    let errors: usize = reports.iter().map(|(_, r)| r.errors()).sum();
    let warnings: usize = reports.iter().map(|(_, r)| r.warnings()).sum();
    if json {
        let connectors: Vec<_> = reports
            .iter()
            .map(|(dir, report)| {
                let mut value = serde_json::to_value(report).expect("reports serialise");
                value["dir"] = json!(dir);
                value
            })
            .collect();
        print_json(&json!({"connectors": connectors, "errors": errors, "warnings": warnings}))?;
    } else {
        for (dir, report) in &reports {
            for finding in &report.findings {
                println!("{}", line(dir, finding));
            }
        }
        if reports.len() > 1 || errors + warnings > 0 {
            println!(
                "{} connector{} checked: {errors} error{}, {warnings} warning{}",
                reports.len(),
                plural(reports.len()),
                plural(errors),
                plural(warnings)
            );
        } else if let Some((dir, report)) = reports.first() {
            let scheme = report.scheme.as_deref().unwrap_or("no scheme");
            println!("{}: ok ({scheme})", dir.display());
        }
    }
    if errors > 0 || (deny_warnings && warnings > 0) {
        let what = if errors > 0 { "errors" } else { "warnings (--deny-warnings)" };
        return Err(Failure::new(Code::BadInput, format!("the check found {what}")));
    }
    Ok(())
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// `dir/file:line:column: severity: message`, as compilers write them.
pub fn line(dir: &Path, finding: &Finding) -> String {
    format!(
        "{}:{}:{}: {}: {}",
        dir.join(&finding.file).display(),
        finding.line,
        finding.column,
        finding.severity,
        finding.message
    )
}

/// A folder whose manifest cannot be read is one error finding, so that the others are still
/// checked.
fn unreadable(dir: &Path, error: ConnectorError) -> Report {
    let (line, column, message, code) = match error {
        ConnectorError::Malformed { line, column, reason, .. } => {
            (line, column, reason, "malformed-manifest")
        }
        ConnectorError::Unreadable { reason, .. } => (1, 1, reason, "unreadable-manifest"),
    };
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Report {
        connector: name,
        scheme: None,
        findings: vec![Finding {
            severity: Severity::Error,
            code,
            file: PathBuf::from("manifest.json"),
            line,
            column,
            message,
        }],
    }
}
