//! The onboarding service on its own: the API key and OAuth2 schemes linked statically, a
//! temporary SQLite store, the testkit's fake token endpoint, and consents played by the test
//! (waiting like the CLI, or parked like the server).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use authplug_connector::Connector;
use authplug_engine::{Engine, EngineConfig, EventKind, Events};
use authplug_host::{HostServices, LoadOptions, Registry, Transport, TransportConfig};
use authplug_onboard::{
    Answer, Consent, Given, OnboardError, Onboarder, Outcome, Park, Parked, Request,
};
use authplug_protocol::Secret;
use authplug_store::{Change, Keyring, Lifecycle, Location, MasterKey, State, Store};
use authplug_testkit::{FakeServer, Response};
use serde_json::json;

use api_key as _;
use oauth2_scheme as _;

struct Lab {
    /// The host's runtime: the service itself runs on the test's thread, as on a blocking one.
    _runtime: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
    engine: Arc<Engine>,
    onboarder: Onboarder,
    _provider: FakeServer,
    token_url: String,
}

impl Lab {
    fn new() -> Self {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let location = Location::Sqlite(dir.path().join("store.sqlite3"));
        let store =
            Store::open(&location, Keyring::fixed(vec![MasterKey::generate().unwrap()])).unwrap();
        let registry = Registry::load(&LoadOptions {
            dirs: vec![],
            include_static: true,
            ..Default::default()
        });
        let transport = TransportConfig { allow_loopback_http: true, ..TransportConfig::default() };
        let transport = Arc::new(Transport::new(transport, runtime.handle().clone()).unwrap());
        let engine = Arc::new(Engine::new(
            Arc::new(store),
            Arc::new(registry),
            HostServices::new(transport),
            EngineConfig::default(),
            Events::default(),
        ));
        // The authorization-code grant: any code but "refused" gets tokens.
        let provider = FakeServer::start(|request| match request.form("code").as_deref() {
            Some("refused") => Response::json(400, &json!({"error": "invalid_grant"})),
            _ => Response::json(
                200,
                &json!({"access_token": "at-1", "token_type": "Bearer", "expires_in": 3600,
                        "refresh_token": "rt-1"}),
            ),
        });
        let token_url = format!("{}/token", provider.url());
        let onboarder = Onboarder::new(engine.clone());
        Self { _runtime: runtime, dir, engine, onboarder, _provider: provider, token_url }
    }

    fn connector(&self, name: &str, manifest: serde_json::Value) -> Connector {
        let dir = self.dir.path().join(name);
        std::fs::create_dir_all(dir.join("templates")).unwrap();
        std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
        std::fs::write(dir.join("templates/system.json"), "{}").unwrap();
        Connector::load(Path::new(&dir)).unwrap()
    }

    fn oauth2(&self) -> Connector {
        self.connector(
            "crm",
            json!({"auth": "oauth2", "system-template": "templates/system.json",
                   "oauth2": {"login_url": "https://login.example/authorize",
                              "token_url": self.token_url}}),
        )
    }

    fn request<'a>(&self, connector: &'a Connector, system: &str, replace: bool) -> Request<'a> {
        Request {
            connector,
            system: system.into(),
            replace,
            actor: "test".into(),
            redirect_uri: Some("http://127.0.0.1:9/callback".into()),
            defaults: BTreeMap::new(),
            parameters: BTreeMap::new(),
            return_to: Some("/".into()),
        }
    }
}

fn secrets(pairs: &[(&str, &str)]) -> BTreeMap<String, Secret> {
    pairs.iter().map(|(k, v)| (k.to_string(), Secret::new(*v))).collect()
}

/// A consent answered at once with `callback(state)`, as the CLI's loopback server does.
struct Answering(fn(&str) -> BTreeMap<String, String>);

impl Consent for Answering {
    fn redirect(&mut self, url: &str, state: &str, _: Parked<'_>) -> Result<Answer, OnboardError> {
        assert!(url.starts_with("https://login.example/authorize?"), "{url}");
        Ok(Answer::Callback((self.0)(state)))
    }
}

fn query(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn an_api_key_connector_is_onboarded_without_a_consent_with_its_own_secrets() {
    let lab = Lab::new();
    let shop = lab.connector(
        "shop",
        json!({"auth": "api_key", "system-template": "templates/system.json",
               "use_webhook_secret": true, "extra_secrets": {"app_token": {}}}),
    );
    let given = secrets(&[("api_key", "k-1"), ("app_token", "t-1")]);
    let plan = lab
        .onboarder
        .plan(lab.request(&shop, "shop-1", false), &mut Given::new(&given, "test"))
        .unwrap();
    let sources: Vec<(&str, &str)> =
        plan.sources().iter().map(|(n, s)| (n.as_str(), s.as_str())).collect();
    assert_eq!(
        sources,
        [("api_key", "test"), ("webhook_secret", "generated"), ("app_token", "test")]
    );
    let Outcome::Done(finished) =
        lab.onboarder.run(plan, &mut Park(Duration::from_secs(60))).unwrap()
    else {
        panic!("no consent for an API key")
    };
    let record = &finished.stored.record;
    assert!(finished.stored.previous.is_none());
    assert_eq!(record.injected["api_key"].expose(), "k-1");
    let required: Vec<&String> = record.required.keys().collect();
    assert_eq!(required, ["api_key", "app_token", "webhook_secret"], "the connector's own too");
    let connector = &record.summary.parameters["connector"];
    assert_eq!(
        (connector["name"].as_str(), &connector["extra_secrets"]),
        (Some("shop"), &json!(["app_token", "webhook_secret"]))
    );

    // The id is taken: refused before anyone would be sent to a consent, unless replace.
    let again =
        lab.onboarder.plan(lab.request(&shop, "shop-1", false), &mut Given::new(&given, "test"));
    assert!(matches!(again, Err(OnboardError::Exists(id)) if id == "shop-1"));
    let missing = lab
        .onboarder
        .plan(lab.request(&shop, "shop-2", false), &mut Given::new(&BTreeMap::new(), "test"));
    assert!(
        matches!(missing, Err(OnboardError::Missing { names }) if names == ["api_key", "app_token"])
    );
}

#[test]
fn a_consent_answered_at_once_is_checked_then_exchanged_and_stored() {
    let lab = Lab::new();
    let crm = lab.oauth2();
    let client = secrets(&[("client_id", "app"), ("client_secret", "app-secret")]);
    let run = |consent: &mut Answering, system: &str| {
        let plan = lab
            .onboarder
            .plan(lab.request(&crm, system, false), &mut Given::new(&client, "test"))?;
        lab.onboarder.run(plan, consent)
    };
    let forged = run(
        &mut Answering(|_| query(&[("state", "another-state-0123456789"), ("code", "c")])),
        "forged",
    );
    assert!(matches!(forged, Err(OnboardError::ForgedCallback)), "{forged:?}");
    let refused = run(
        &mut Answering(|s| {
            query(&[("state", s), ("error", "access_denied"), ("error_description", "no")])
        }),
        "refused",
    );
    let Err(refused @ OnboardError::ConsentRefused { .. }) = refused else {
        panic!("refused: {refused:?}")
    };
    assert_eq!(refused.to_string(), "the provider refused the consent: access_denied: no");
    let bad_code = run(&mut Answering(|s| query(&[("state", s), ("code", "refused")])), "bad-code");
    assert!(matches!(bad_code, Err(OnboardError::Scheme(_))));
    for system in ["forged", "refused", "bad-code"] {
        assert!(lab.engine.store().get(system).unwrap().is_none(), "{system}: nothing stored");
    }
    let Outcome::Done(finished) =
        run(&mut Answering(|s| query(&[("state", s), ("code", "c-1")])), "crm-1").unwrap()
    else {
        panic!("done after the consent")
    };
    assert_eq!(finished.stored.record.injected["oauth_refresh_token"].expose(), "rt-1");
}

#[test]
fn a_parked_onboarding_is_resumed_once_and_a_reauthorised_system_recovers() {
    let lab = Lab::new();
    let crm = lab.oauth2();
    let client = secrets(&[("client_id", "app"), ("client_secret", "app-secret")]);
    let mut events = lab.engine.events().subscribe();
    let park = |replace: bool| {
        let plan = lab
            .onboarder
            .plan(lab.request(&crm, "crm", replace), &mut Given::new(&client, "test"))
            .unwrap();
        let Outcome::AwaitingConsent { url } =
            lab.onboarder.run(plan, &mut Park(Duration::from_secs(60))).unwrap()
        else {
            panic!("an OAuth2 onboarding waits for its consent")
        };
        let url = url::Url::parse(&url).unwrap();
        url.query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned()
    };
    let resume = |state: &str| {
        let pending = lab.onboarder.take_pending(state)?;
        assert_eq!((pending.system(), pending.return_to()), ("crm", Some("/")));
        lab.onboarder.resume(
            pending,
            state,
            query(&[("code", "c-1")]),
            &mut Park(Duration::from_secs(60)),
        )
    };
    let state = park(false);
    assert!(matches!(resume(&state).unwrap(), Outcome::Done(_)));
    assert!(matches!(resume(&state), Err(OnboardError::UnknownState)), "a state is good once");
    assert!(events.try_recv().is_err(), "a new system recovers nothing");

    let store = lab.engine.store();
    let version = store.version("crm").unwrap().unwrap();
    let lost =
        Change { state: Some(Lifecycle::NeedsReauth("invalid_grant".into())), ..Change::default() };
    store.update("crm", version, lost, "test").unwrap();
    let state = park(true);
    let Outcome::Done(finished) = resume(&state).unwrap() else { panic!("done") };
    assert_eq!(finished.stored.previous.as_ref().map(|p| p.state), Some(State::NeedsReauth));
    assert_eq!(finished.stored.record.summary.state, State::Active);
    assert_eq!(events.try_recv().unwrap().kind, EventKind::Recovered);
    assert!(events.try_recv().is_err(), "said once");
}
