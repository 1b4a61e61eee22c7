//! A lab for the lifecycle engine: oidc-provider behind a counting fault proxy, a credential
//! store (SQLite file or a fresh PostgreSQL database), a system onboarded through the real
//! consent, and `authplug` processes or an in-process engine working on it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use authplug_engine::{Engine, EngineConfig, Events};
use authplug_protocol::{OnboardRequest, OnboardStep, Resume, Secret};
use authplug_store::{Keyring, Location, NewSystem, Store};
use authplug_testkit::FaultProxy;

use crate::host::PluginHost;
use crate::oidc::{follow_consent, OidcProvider, REDIRECT_URI};

/// The system every lab onboards.
pub const SYSTEM: &str = "crm";

pub struct Lab {
    pub provider: OidcProvider,
    pub proxy: FaultProxy,
    pub host: PluginHost,
    pub location: Location,
    /// Where connectors' token requests go: the proxy, or the provider itself.
    token_url: String,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for Lab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Lab({})", self.location)
    }
}

impl Lab {
    /// A lab on a SQLite store file.
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let location = Location::Sqlite(dir.path().join("store.sqlite3"));
        Self::with(dir, location, true, None, None)
    }

    /// A lab for benchmarks: a SQLite store whose systems talk to the provider directly, and a
    /// provider with room for `grants` live grants, on `provider_cpus` if given.
    pub fn bench(grants: usize, provider_cpus: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let location = Location::Sqlite(dir.path().join("store.sqlite3"));
        // A grant, its session, code, interaction and every refresh token it was given: 20 objects
        // each leaves room for several rotations.
        Self::with(dir, location, false, Some(20 * grants + 1000), provider_cpus)
    }

    /// A lab on a fresh database of the PostgreSQL server `cargo xtask test` started.
    pub fn postgres() -> Self {
        let admin = std::env::var("AUTHPLUG_TEST_PG_URL")
            .expect("AUTHPLUG_TEST_PG_URL is not set: run the tests with `cargo xtask test`");
        Self::postgres_on(&admin)
    }

    /// A lab on a fresh database of the PostgreSQL server at `admin` (its `postgres` database).
    pub fn postgres_on(admin: &str) -> Self {
        let name = format!("lab_{}_{}", std::process::id(), authplug_store::now_ms());
        let mut client = postgres::Client::connect(admin, postgres::NoTls).unwrap();
        client.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        let base = admin.rsplit_once('/').unwrap().0;
        let location = Location::Postgres(format!("{base}/{name}"));
        Self::with(tempfile::tempdir().unwrap(), location, true, None, None)
    }

    fn with(
        dir: tempfile::TempDir,
        location: Location,
        through_proxy: bool,
        objects: Option<usize>,
        provider_cpus: Option<&str>,
    ) -> Self {
        let provider = OidcProvider::start_with(objects, provider_cpus);
        let upstream = provider.issuer.trim_start_matches("http://").to_owned();
        let proxy = FaultProxy::refresh_grants(&upstream);
        let token_url = if through_proxy { proxy.url() } else { provider.issuer.clone() };
        let lab = Self {
            proxy,
            token_url: format!("{token_url}/token"),
            provider,
            host: PluginHost::load(&["oauth2_scheme"]),
            location,
            dir,
        };
        lab.onboard_new(SYSTEM);
        lab
    }

    pub fn key_file(&self) -> PathBuf {
        self.dir.path().join("master.key")
    }

    pub fn store(&self) -> Store {
        Store::open(&self.location, Keyring::from_file(&self.key_file()).unwrap()).unwrap()
    }

    /// The connector parameters: consent at the provider, tokens through the proxy.
    pub fn parameters(&self) -> BTreeMap<String, serde_json::Value> {
        serde_json::from_value(serde_json::json!({
            "login_url": format!("{}/auth", self.provider.issuer),
            "token_url": self.token_url,
            "scopes": ["openid", "offline_access"],
        }))
        .unwrap()
    }

    pub fn required(&self) -> BTreeMap<String, Secret> {
        crate::host::secrets(&[("client_id", "app"), ("client_secret", "app-secret")])
    }

    /// Runs the OAuth2 consent with the real provider and returns what onboarding injects.
    pub fn consent(&self) -> (BTreeMap<String, Secret>, Option<i64>) {
        let scheme = self.host.scheme("oauth2", None);
        let first = OnboardRequest {
            required: self.required(),
            parameters: self.parameters(),
            redirect_uri: Some(REDIRECT_URI.into()),
            ..Default::default()
        };
        let OnboardStep::Redirect { url, continuation, .. } =
            scheme.onboard(first.clone(), &self.host.services).unwrap()
        else {
            panic!("OAuth2 onboarding starts with a redirect");
        };
        let callback = self.host.block_on(follow_consent(&url, REDIRECT_URI)).into_iter().collect();
        let resume = OnboardRequest { resume: Some(Resume { continuation, callback }), ..first };
        match scheme.onboard(resume, &self.host.services).unwrap() {
            OnboardStep::Done { injected, expires_at, .. } => (injected, expires_at),
            other => panic!("onboarding did not finish: {other:?}"),
        }
    }

    /// A system `id` of this lab's provider with what a consent injected.
    pub fn system(
        &self,
        id: &str,
        consented: (BTreeMap<String, Secret>, Option<i64>),
    ) -> NewSystem {
        let (injected, expires_at) = consented;
        NewSystem {
            id: id.into(),
            scheme: "oauth2".into(),
            parameters: self.parameters(),
            required: self.required(),
            injected,
            expires_at,
        }
    }

    /// Onboards a new system through the consent and stores it.
    pub fn onboard_new(&self, id: &str) {
        let new = self.system(id, self.consent());
        self.store().create(new, "test").unwrap();
    }

    /// A human re-authorises system `id`: a new consent, stored through `engine` as an
    /// onboarding of the existing system.
    pub fn reauthorize(&self, engine: &authplug_engine::Engine, id: &str) {
        engine.onboarded(self.system(id, self.consent()), true, "test").unwrap();
    }

    /// Makes the system's access token due now (as if its expiry had come).
    pub fn make_due(&self, id: &str) {
        let store = self.store();
        let record = store.get(id).unwrap().unwrap();
        let injected =
            authplug_store::Injected::new(record.injected, Some(authplug_store::now_secs()));
        let change = authplug_store::Change { injected: Some(injected), ..Default::default() };
        store.update(id, record.summary.version, change, "test").unwrap();
    }

    /// The store as `--store` takes it (a path or the full URL).
    pub fn store_arg(&self) -> String {
        match &self.location {
            Location::Sqlite(path) => path.display().to_string(),
            Location::Postgres(url) => url.clone(),
        }
    }

    /// `authplug` with this lab's store, key, the built plugins and loopback HTTP allowed.
    pub fn command(&self) -> Command {
        let mut command = Command::new(crate::authplug_bin());
        self.environment(&mut command);
        command
    }

    /// The environment an authplug process of this lab needs.
    pub fn environment(&self, command: &mut Command) {
        crate::authplug_environment(command, &self.store_arg(), &self.key_file());
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("authplug runs")
    }

    /// An engine in this process over the lab's store, with the given settings.
    pub fn engine(&self, config: EngineConfig, timeout: Duration, events: Events) -> Arc<Engine> {
        self.host.engine(self.store(), config, timeout, events)
    }

    /// Revokes the system's grant at the provider (RFC 7009, with the refresh token), as a user
    /// removing the app's access would.
    pub fn revoke_grant(&self, id: &str) {
        let record = self.store().get(id).unwrap().unwrap();
        let token = record.injected["oauth_refresh_token"].expose().to_owned();
        let url = format!("{}/token/revocation", self.provider.issuer);
        let status = self.host.block_on(async move {
            reqwest::Client::new()
                .post(url)
                .basic_auth("app", Some("app-secret"))
                .form(&[("token", token.as_str()), ("token_type_hint", "refresh_token")])
                .send()
                .await
                .unwrap()
                .status()
        });
        assert!(status.is_success(), "revocation answered {status}");
    }
}

/// A short, stable fingerprint of a secret for comparing values without printing them.
pub fn fingerprint(value: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(value.as_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect()
}
