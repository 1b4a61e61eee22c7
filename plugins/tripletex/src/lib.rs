//! The Tripletex scheme of the spec page. The user supplies a consumer token (one per
//! integration, issued to the integrator) and an employee token (created by the customer's
//! administrator); both are injected unchanged. Onboarding proves they work by creating a session
//! (`PUT /v2/token/session/:create`, no authentication), and refresh creates a new session well
//! before the old one's expiry date, so a revoked token is noticed early.
//!
//! Parameters: `environment` (`production`, the default, at `https://tripletex.no`, or `test` at
//! `https://api-test.tripletex.tech`), `base_url` to override the host (sandboxes, tests), and
//! `session_days` (default 7; renewed when less than 2 days remain). Apply: HTTP Basic with user
//! `company_id` (default `0`, the employee's own company) and a fresh session token as password.

use std::collections::BTreeMap;

use authplug_sdk::prelude::*;
use authplug_sdk::provider::{self, Failure};
use authplug_sdk::{expiry, protocol::base64_encode, HttpRequest};

pub const ID: &str = "tripletex";
const CONSUMER: &str = "consumer_token";
const EMPLOYEE: &str = "employee_token";

#[derive(Debug, Clone, Copy)]
pub struct Tripletex;

impl Scheme for Tripletex {
    fn descriptor(&self) -> SchemeDescriptor {
        let copied = |name: &str| Source::Copied { from: name.into() };
        SchemeDescriptor {
            id: ID.into(),
            display_name: "Tripletex authentication".into(),
            serves: vec![AuthPair::new("api_key", Some("tripletex"))],
            intro: Some("This is a custom style of authentication used by the Tripletex connector. It requires the following secrets:".into()),
            required: vec![
                RequiredSecret::new(CONSUMER, "The unique key to create an integration with Tripletex."),
                RequiredSecret::new(EMPLOYEE, "The token created by the administrator of the Tripletex account."),
            ],
            injected: vec![
                InjectedSecret::new(CONSUMER, "The consumer key as provided in the connector configuration.", copied(CONSUMER)),
                InjectedSecret::new(EMPLOYEE, "The employee token as provided in the connector configuration.", copied(EMPLOYEE)),
            ],
            notes: vec![
                "Tripletex has production and test environments. The production accounts use ``employee_token`` set by Sesam app while you have to set both tokens in the test accounts.".into(),
                "A full connector example with custom Tripletex authentication could be found in `Tripletex connector's playground branch <https://github.com/sesam-io/tripletex-connector/tree/playground>`__ in the `Manifest <https://github.com/sesam-io/tripletex-connector/blob/playground/manifest.json>`__ and `System <https://github.com/sesam-io/tripletex-connector/blob/playground/templates/system.json>`__.".into(),
            ],
            refresh: RefreshPolicy { renews: true, margin_secs: Some(2 * 86_400) },
            apply_output: ApplyOutput::ShortLived,
            // "Who am I": the session's employee and company, for any valid session.
            verify: Some(VerifyRequest::get("{base_url}/v2/token/session/>whoAmI")),
            ..SchemeDescriptor::default()
        }
    }

    fn onboard(&self, request: OnboardRequest, host: &Host<'_>) -> Result<OnboardStep, Error> {
        let settings = Settings::from(&request.parameters)?;
        let session = create_session(&settings, &request.required, host)??;
        // The environment's API, kept with the system (its verification goes there too).
        Ok(OnboardStep::done(copy(&request.required)?, Some(session.expires_at))
            .with_output("base_url", settings.base_url))
    }

    fn refresh(&self, request: RefreshRequest, host: &Host<'_>) -> Result<RefreshOutcome, Error> {
        let settings = Settings::from(&request.parameters)?;
        Ok(match create_session(&settings, &request.required, host)? {
            Ok(session) => RefreshOutcome::Renewed {
                injected: copy(&request.required)?,
                expires_at: Some(session.expires_at),
            },
            Err(failure) => failure.into(),
        })
    }

    fn apply(&self, request: ApplyRequest, host: &Host<'_>) -> Result<ApplyResponse, Error> {
        let settings = Settings::from(&request.parameters)?;
        let company = request
            .parameters
            .get("company_id")
            .map(|v| v.to_string().trim_matches('"').to_owned());
        let session = create_session(&settings, &request.injected, host)??;
        let credentials =
            format!("{}:{}", company.unwrap_or_else(|| "0".into()), session.token.expose());
        Ok(ApplyResponse {
            headers: vec![(
                "Authorization".into(),
                Secret::new(format!("Basic {}", base64_encode(credentials.as_bytes()))),
            )],
            query: vec![],
        })
    }
}

struct Settings {
    base_url: String,
    session_days: i64,
}

impl Settings {
    fn from(parameters: &BTreeMap<String, serde_json::Value>) -> Result<Self, Error> {
        let text = |key: &str| parameters.get(key).and_then(|v| v.as_str());
        let environment = text("environment").unwrap_or("production");
        let default_base = match environment {
            "production" => "https://tripletex.no",
            "test" => "https://api-test.tripletex.tech",
            other => {
                return Err(Error::new(
                    ErrorCode::InvalidInput,
                    format!("environment {other:?}: use \"production\" or \"test\""),
                ));
            }
        };
        let session_days = parameters.get("session_days").and_then(|v| v.as_i64()).unwrap_or(7);
        if !(1..=365).contains(&session_days) {
            return Err(Error::new(
                ErrorCode::InvalidInput,
                "session_days must be between 1 and 365",
            ));
        }
        Ok(Self {
            base_url: text("base_url").unwrap_or(default_base).trim_end_matches('/').to_owned(),
            session_days,
        })
    }
}

fn copy(required: &BTreeMap<String, Secret>) -> Result<BTreeMap<String, Secret>, Error> {
    Ok(BTreeMap::from([
        (CONSUMER.to_owned(), Secret::new(required_secret(required, CONSUMER)?)),
        (EMPLOYEE.to_owned(), Secret::new(required_secret(required, EMPLOYEE)?)),
    ]))
}

struct Session {
    token: Secret,
    /// The end of the expiration date in Norway, where Tripletex keeps its dates (and reads the
    /// date asked for).
    expires_at: i64,
}

/// The zone of Tripletex's dates.
const ZONE: &str = "Europe/Oslo";

/// What a session's answer holds, of what the scheme reads.
#[derive(serde::Deserialize)]
struct Answer {
    value: SessionValue,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct SessionValue {
    token: String,
    expiration_date: String,
}

/// `PUT {base}/v2/token/session/:create?consumerToken=..&employeeToken=..&expirationDate=..`.
fn create_session(
    settings: &Settings,
    secrets: &BTreeMap<String, Secret>,
    host: &Host<'_>,
) -> Result<Result<Session, Failure>, Error> {
    let date = expiry::local_date(expiry::after(settings.session_days * 86_400), ZONE)?;
    let query = [
        ("consumerToken", required_secret(secrets, CONSUMER)?),
        ("employeeToken", required_secret(secrets, EMPLOYEE)?),
        ("expirationDate", date.as_str()),
    ];
    let request = HttpRequest {
        method: "PUT".into(),
        url: provider::url(&settings.base_url, &["v2", "token", "session", ":create"], &query)?,
        headers: vec![("Accept".into(), "application/json".into())],
        body: vec![],
    };
    let answer = match provider::send(host, &request, "Tripletex") {
        Ok(response) => provider::json::<Answer>(&response, "Tripletex"),
        Err(failure) => Err(failure.hint(
            "tokens of the test environment do not work in production, nor the other way round",
        )),
    };
    let session = match answer {
        Ok(answer) => answer.value,
        Err(failure) => return Ok(Err(failure)),
    };
    let expires_at = expiry::end_of_day(&session.expiration_date, ZONE)?;
    Ok(Ok(Session { token: Secret::new(session.token), expires_at }))
}

authplug_sdk::register_scheme!(Tripletex);
authplug_sdk::export_plugin!();
