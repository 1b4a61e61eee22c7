//! PowerOffice Go (`auth: api_key`, `auth_variant: poweroffice`). The connector format declares it
//! an API-key connector, but PowerOffice's API takes OAuth2 client credentials (RFC 6749 §4.4):
//!
//! - the integration's **application key** is the client id and the customer's **client key**
//!   (what the connector calls `api_key`) the client secret, sent by HTTP Basic;
//! - the token comes from `{base_url}/OAuth/Token` (`base_url` the connector's additional
//!   parameter: `https://goapi.poweroffice.net`, or `.../Demo` for the demo environment) and lives
//!   20 minutes;
//! - every request, the token request included, carries the integration's **subscription key**
//!   in `Ocp-Apim-Subscription-Key` (PowerOffice's API gateway refuses it otherwise, with 401,
//!   which the one rule of every scheme makes a refusal).
//!
//! The three keys are injected unchanged, as the real templates read them, with the access token
//! beside them, renewed five minutes before it lapses. The application and subscription keys
//! belong to the integrator: an operator gives them once in the operator secrets file.

use std::collections::BTreeMap;

use authplug_sdk::oauth::client_credentials::{self as grant, ClientAuthentication};
use authplug_sdk::oauth::{ClientCredentialsGrant, OtherFields, TokenAnswer};
use authplug_sdk::oauth2::TokenResponse;
use authplug_sdk::prelude::*;

pub const ID: &str = "poweroffice";
const APPLICATION_KEY: &str = "application_key";
const CLIENT_KEY: &str = "api_key";
const SUBSCRIPTION_KEY: &str = "subscription_key";
const ACCESS_TOKEN: &str = "oauth_access_token";
const SUBSCRIPTION_HEADER: &str = "Ocp-Apim-Subscription-Key";
/// PowerOffice Go's production API.
const PRODUCTION: &str = "https://goapi.poweroffice.net";

#[derive(Debug, Clone, Copy)]
pub struct PowerOffice;

fn fetch(
    parameters: &BTreeMap<String, serde_json::Value>,
    required: &BTreeMap<String, Secret>,
    host: &Host<'_>,
) -> Result<Result<TokenAnswer<OtherFields>, RefreshOutcome>, Error> {
    let base = parameters.get("base_url").and_then(|v| v.as_str()).unwrap_or(PRODUCTION);
    authplug_sdk::oauth2::url::Url::parse(base)
        .map_err(|e| Error::new(ErrorCode::InvalidInput, format!("base_url is not a URL ({e})")))?;
    let token_url = format!("{}/OAuth/Token", base.trim_end_matches('/'));
    let settings = BTreeMap::from([("token_url".to_owned(), token_url.into())]);
    let grant = ClientCredentialsGrant::from_parameters(&settings, "base_url")?;
    let client = ClientAuthentication::Basic {
        id: required_secret(required, APPLICATION_KEY)?,
        secret: required_secret(required, CLIENT_KEY)?,
    };
    let subscription = required_secret(required, SUBSCRIPTION_KEY)?;
    let http = host.http_client().with_header(SUBSCRIPTION_HEADER, subscription);
    Ok(grant.fetch(client, &http))
}

/// The three keys as given, and the new access token.
fn injected(
    required: &BTreeMap<String, Secret>,
    answer: &TokenAnswer<OtherFields>,
) -> BTreeMap<String, Secret> {
    let mut injected: BTreeMap<String, Secret> = [APPLICATION_KEY, CLIENT_KEY, SUBSCRIPTION_KEY]
        .into_iter()
        .filter_map(|name| Some((name.to_owned(), required.get(name)?.clone())))
        .collect();
    injected.insert(ACCESS_TOKEN.into(), Secret::new(answer.access_token().secret().clone()));
    injected
}

impl Scheme for PowerOffice {
    fn descriptor(&self) -> SchemeDescriptor {
        let copied = |name: &str, description: &str| {
            InjectedSecret::new(name, description, Source::Copied { from: name.into() })
        };
        SchemeDescriptor {
            id: ID.into(),
            display_name: "PowerOffice Go authentication".into(),
            serves: vec![AuthPair::new("api_key", Some("poweroffice"))],
            intro: Some("This is the authentication of the PowerOffice Go connector: OAuth2 client credentials with the integration's keys. It requires the following secrets:".into()),
            required: vec![
                RequiredSecret::new(APPLICATION_KEY, "The application key PowerOffice issued to the integration (its OAuth2 client id)."),
                RequiredSecret::new(CLIENT_KEY, "The client key the customer created for the integration in PowerOffice Go (its OAuth2 client secret)."),
                RequiredSecret::new(SUBSCRIPTION_KEY, "The integration's API subscription key, sent as ``Ocp-Apim-Subscription-Key``."),
            ],
            injected: vec![
                copied(APPLICATION_KEY, "The application key as provided in the connector configuration."),
                copied(CLIENT_KEY, "The client key as provided in the connector configuration."),
                copied(SUBSCRIPTION_KEY, "The subscription key as provided in the connector configuration."),
                InjectedSecret::new(ACCESS_TOKEN, "The access token from ``{base_url}/OAuth/Token``, renewed before its 20 minutes are up.", Source::Renewed),
            ],
            notes: vec![
                "The token endpoint is ``{base_url}/OAuth/Token``, ``base_url`` being the connector's additional parameter (``https://goapi.poweroffice.net`` unless given; ``https://goapi.poweroffice.net/Demo`` for the demo environment).".into(),
                "The application key and the subscription key belong to the integrator: an operator can supply them for every customer in the operator secrets file.".into(),
            ],
            refresh: RefreshPolicy { renews: true, margin_secs: Some(300) },
            // The subscription key rides along with the token: a long-lived secret.
            apply_output: ApplyOutput::LongLived,
            // What the client and the integration may do: readable with any valid token.
            verify: Some(
                VerifyRequest::get("{base_url}/v2/ClientIntegrationInformation")
                    .with_default("base_url", PRODUCTION),
            ),
            ..SchemeDescriptor::default()
        }
    }

    fn onboard(&self, request: OnboardRequest, host: &Host<'_>) -> Result<OnboardStep, Error> {
        let fetched = fetch(&request.parameters, &request.required, host)?;
        grant::onboarded(fetched, |answer| injected(&request.required, answer))
    }

    fn refresh(&self, request: RefreshRequest, host: &Host<'_>) -> Result<RefreshOutcome, Error> {
        let fetched = fetch(&request.parameters, &request.required, host)?;
        Ok(grant::renewed(fetched, |answer| injected(&request.required, answer)))
    }

    /// The access token as a bearer credential, and the subscription key PowerOffice's gateway
    /// wants on every request.
    fn apply(&self, request: ApplyRequest, _host: &Host<'_>) -> Result<ApplyResponse, Error> {
        let mut applied = authplug_sdk::bearer(required_secret(&request.injected, ACCESS_TOKEN)?);
        let subscription = required_secret(&request.injected, SUBSCRIPTION_KEY)?;
        applied.headers.push((SUBSCRIPTION_HEADER.into(), Secret::new(subscription)));
        Ok(applied)
    }
}

authplug_sdk::register_scheme!(PowerOffice);
authplug_sdk::export_plugin!();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_sends_the_bearer_token_and_the_subscription_key() {
        let no_host = |_: &str, _: &str| -> Result<String, String> { panic!("no request") };
        let injected = BTreeMap::from([
            (ACCESS_TOKEN.to_owned(), Secret::new("at-1")),
            (SUBSCRIPTION_KEY.to_owned(), Secret::new("sub-1")),
        ]);
        let request = ApplyRequest { scheme: ID.into(), injected, parameters: BTreeMap::new() };
        let applied = PowerOffice.apply(request, &Host::new(&no_host)).unwrap();
        let headers: Vec<(&str, &str)> =
            applied.headers.iter().map(|(n, v)| (n.as_str(), v.expose())).collect();
        assert_eq!(
            headers,
            [("Authorization", "Bearer at-1"), ("Ocp-Apim-Subscription-Key", "sub-1")]
        );
    }
}
