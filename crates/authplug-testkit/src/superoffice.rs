//! A fake SuperOffice environment (`https://{env}.superoffice.com`), after `providers.md`:
//!
//! - `GET /login/common/oauth/authorize` consents at once (as a user clicking "allow" would) and
//!   redirects to the registered redirect URI with `code` and `state`; PKCE S256 is required.
//! - `POST /login/common/oauth/tokens`: `authorization_code` (with the PKCE verifier) and
//!   `refresh_token` grants; client authentication by HTTP Basic or form. Answers carry
//!   `access_token`, `refresh_token` (first time only: SuperOffice does not rotate it),
//!   `expires_in` and an RS256 `id_token` with the tenant and the system-user token.
//! - `GET /login/.well-known/jwks`: the environment's signing key.
//! - `POST /Login/api/PartnerSystemUser/Authenticate`: checks the signed system-user token (RSA-
//!   SHA256 by the partner's key, a timestamp within 5 minutes of now), the application token and
//!   the tenant; answers `{"IsSuccessful", "Token", "ErrorMessage"}` with a JWT whose claim
//!   `.../identity/ticket` is the ticket.
//! - `GET /api/state/{ctx}`: the tenant's endpoint on another host name (`{url}/{ctx}`).
//! - `GET /{ctx}/api/v1/User/currentPrincipal`: needs `Authorization: SOTicket <ticket>` and
//!   `SO-AppToken`; 401 for a lapsed or unknown ticket.
//!
//! Keys are RSA 2048, made once per test process.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jsonwebtoken::{EncodingKey, Header};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use rsa::{BigUint, Pkcs1v15Sign, RsaPrivateKey, RsaPublicKey};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::{FakeServer, Request, Response};

const CLAIM: &str = "http://schemes.superoffice.net/identity/";
const KID: &str = "superoffice-environment-1";

/// How the fake misbehaves; change it while it runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    Normal,
    /// System-user tickets are signed by a key the JWKS does not publish (under its kid).
    TicketSignedByWrongKey,
    /// Every ticket issued so far has lapsed (its 6-hour window passed unused).
    TicketsLapsed,
    /// The refresh token was revoked (`invalid_grant`).
    GrantRevoked,
    /// Every request answers 503.
    Unavailable,
    /// Token answers carry no `id_token` (an application registered without the `openid`
    /// scope, or a provider that omits it on some grants).
    NoIdToken,
}

/// The fake environment.
#[derive(Debug)]
pub struct SuperOffice {
    pub server: FakeServer,
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    url: String,
    client_id: String,
    client_secret: String,
    tenant: String,
    system_token: String,
    mode: Mode,
    /// code -> (PKCE challenge, redirect URI)
    codes: BTreeMap<String, (String, String)>,
    refresh_tokens: BTreeSet<String>,
    tickets: BTreeSet<String>,
    serial: usize,
    authentications: usize,
}

/// The keys of a test process: the environment's, a rogue one, and the partner's.
#[derive(Debug)]
pub struct Keys {
    environment: RsaPrivateKey,
    rogue: RsaPrivateKey,
    partner: RsaPrivateKey,
}

/// RSA 2048 keys, generated once per process (a key takes a moment to make).
pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut rng = rand::rngs::OsRng;
        let mut key = || RsaPrivateKey::new(&mut rng, 2048).expect("an RSA key");
        Keys { environment: key(), rogue: key(), partner: key() }
    })
}

impl Keys {
    /// The partner's private key as PKCS#8 PEM.
    pub fn partner_pem(&self) -> String {
        self.partner.to_pkcs8_pem(LineEnding::LF).expect("PEM").to_string()
    }

    /// The partner's private key as PKCS#1 PEM (`BEGIN RSA PRIVATE KEY`).
    pub fn partner_pkcs1_pem(&self) -> String {
        self.partner.to_pkcs1_pem(LineEnding::LF).expect("PEM").to_string()
    }

    /// The partner's private key as .NET writes it (`RSA.ToXmlString(true)`).
    pub fn partner_dotnet_xml(&self) -> String {
        dotnet_xml(&self.partner)
    }

    /// The partner's public key as a JWK (RFC 7517: `kty`, `n`, `e`, `use`), for a provider that
    /// must verify what the partner key signs (a client assertion).
    pub fn partner_public_jwk(&self) -> serde_json::Value {
        let b64 = |n: &BigUint| URL_SAFE_NO_PAD.encode(n.to_bytes_be());
        serde_json::json!({"kty": "RSA", "use": "sig", "n": b64(self.partner.n()), "e": b64(self.partner.e())})
    }

    /// Another key, as PEM: a partner key SuperOffice does not know.
    pub fn unknown_partner_pem(&self) -> String {
        self.rogue.to_pkcs8_pem(LineEnding::LF).expect("PEM").to_string()
    }
}

fn dotnet_xml(key: &RsaPrivateKey) -> String {
    let b64 = |n: &BigUint| STANDARD.encode(n.to_bytes_be());
    let (p, q) = (&key.primes()[0], &key.primes()[1]);
    let one = BigUint::from(1u8);
    let dp = key.d() % (p - &one);
    let dq = key.d() % (q - &one);
    let inverse_q = key.crt_coefficient().expect("CRT coefficient");
    format!(
        "<RSAKeyValue><Modulus>{}</Modulus><Exponent>{}</Exponent><P>{}</P><Q>{}</Q><DP>{}</DP>\
         <DQ>{}</DQ><InverseQ>{}</InverseQ><D>{}</D></RSAKeyValue>",
        b64(key.n()),
        b64(key.e()),
        b64(p),
        b64(q),
        b64(&dp),
        b64(&dq),
        b64(&inverse_q),
        b64(key.d()),
    )
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

impl SuperOffice {
    /// An environment with one application (`client_id`, `client_secret` = application token)
    /// installed in one tenant (e.g. `Cust12345`).
    pub fn start(client_id: &str, client_secret: &str, tenant: &str) -> Self {
        keys();
        let state = Arc::new(Mutex::new(State {
            url: String::new(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            tenant: tenant.into(),
            system_token: format!("{tenant}.SystemUserToken-7f3a9c"),
            mode: Mode::Normal,
            codes: BTreeMap::new(),
            refresh_tokens: BTreeSet::new(),
            tickets: BTreeSet::new(),
            serial: 0,
            authentications: 0,
        }));
        let shared = state.clone();
        let server = FakeServer::start(move |request| handle(&shared, request));
        state.lock().unwrap().url = server.url();
        Self { server, state }
    }

    /// The environment's origin, standing for `https://sod.superoffice.com`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The connector manifest's `oauth2` block pointed at this environment.
    pub fn oauth2_block(&self) -> serde_json::Value {
        json!({
            "login_url": format!("{}/login/common/oauth/authorize", self.url()),
            "token_url": format!("{}/login/common/oauth/tokens", self.url()),
            "scopes": ["openid", "api"],
        })
    }

    /// The system-user token the id_token carries (for asserting it never leaks).
    pub fn system_token(&self) -> String {
        self.state.lock().unwrap().system_token.clone()
    }

    pub fn set_mode(&self, mode: Mode) {
        let mut state = self.state.lock().unwrap();
        if mode == Mode::TicketsLapsed {
            state.tickets.clear();
        }
        state.mode = mode;
    }

    /// How many system-user logins succeeded.
    pub fn authentications(&self) -> usize {
        self.state.lock().unwrap().authentications
    }

    /// What the user's browser does at the consent page: follows the authorize URL and returns
    /// the query of the redirect back (`code` and `state`, or `error`).
    pub fn consent(&self, authorize_url: &str) -> BTreeMap<String, String> {
        let path = authorize_url.strip_prefix(&self.url()).expect("a URL of this environment");
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let request = Request {
            method: "GET".into(),
            path: path.into(),
            query: crate::server::parse_pairs(query),
            headers: vec![],
            body: vec![],
        };
        let response = handle(&self.state, &request);
        let location = response
            .headers
            .iter()
            .find(|(k, _)| k == "Location")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no redirect: {}", String::from_utf8_lossy(&response.body)));
        let query = location.split_once('?').map(|(_, q)| q).unwrap_or("");
        crate::server::parse_pairs(query).into_iter().collect()
    }
}

fn jwt(key: &RsaPrivateKey, claims: &serde_json::Value) -> String {
    let mut header = Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(KID.into());
    let der = key.to_pkcs1_der().expect("DER");
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_rsa_der(der.as_bytes()))
        .expect("a signed JWT")
}

fn handle(state: &Mutex<State>, request: &Request) -> Response {
    let mut state = state.lock().unwrap();
    if state.mode == Mode::Unavailable {
        return Response::text(503, "Service Unavailable");
    }
    let path = request.path.as_str();
    match (request.method.as_str(), path) {
        ("GET", "/login/common/oauth/authorize") => authorize(&mut state, request),
        ("POST", "/login/common/oauth/tokens") => tokens(&mut state, request),
        ("GET", "/login/.well-known/jwks") => {
            let public = keys().environment.to_public_key();
            let b64 = |n: &BigUint| URL_SAFE_NO_PAD.encode(n.to_bytes_be());
            Response::json(
                200,
                &json!({"keys": [{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": KID,
                                  "n": b64(public.n()), "e": b64(public.e())}]}),
            )
        }
        ("POST", "/Login/api/PartnerSystemUser/Authenticate") => authenticate(&mut state, request),
        ("GET", _) if path.starts_with("/api/state/") => {
            let ctx = &path["/api/state/".len()..];
            if ctx != state.tenant {
                return Response::json(
                    200,
                    &json!({"ContextIdentifier": ctx, "State": "Unknown", "IsRunning": false}),
                );
            }
            Response::json(
                200,
                &json!({"ContextIdentifier": ctx, "Endpoint": format!("{}/{ctx}", state.url),
                        "State": "Running", "IsRunning": true}),
            )
        }
        ("GET", _) if path == format!("/{}/api/v1/User/currentPrincipal", state.tenant) => {
            let ticket = request.header("Authorization").and_then(|a| a.strip_prefix("SOTicket "));
            let app = request.header("SO-AppToken");
            match (ticket, app) {
                (Some(t), Some(a)) if state.tickets.contains(t) && a == state.client_secret => {
                    Response::json(
                        200,
                        &json!({"Associate": "SYSTEM", "ContextIdentifier": state.tenant}),
                    )
                }
                _ => Response::json(401, &json!({"Error": "Unauthorized"})),
            }
        }
        _ => Response::json(404, &json!({"Error": "not found"})),
    }
}

fn authorize(state: &mut State, request: &Request) -> Response {
    let p = |name: &str| request.param(name).unwrap_or("").to_owned();
    let redirect = p("redirect_uri");
    if p("client_id") != state.client_id || redirect.is_empty() {
        return Response::text(400, "unknown client or no redirect_uri");
    }
    let back = |query: String| Response {
        status: 302,
        headers: vec![("Location".into(), format!("{redirect}?{query}"))],
        body: vec![],
    };
    let state_param =
        url::form_urlencoded::byte_serialize(p("state").as_bytes()).collect::<String>();
    if p("response_type") != "code"
        || p("code_challenge_method") != "S256"
        || p("code_challenge").is_empty()
    {
        return back(format!("error=invalid_request&state={state_param}"));
    }
    let scopes: Vec<String> = p("scope").split(' ').map(str::to_owned).collect();
    if !scopes.iter().any(|s| s == "openid") {
        return back(format!("error=invalid_scope&state={state_param}"));
    }
    state.serial += 1;
    let code = format!("so-code-{}", state.serial);
    state.codes.insert(code.clone(), (p("code_challenge"), redirect.clone()));
    back(format!("code={code}&state={state_param}"))
}

fn token_error(status: u16, error: &str, description: &str) -> Response {
    Response::json(status, &json!({"error": error, "error_description": description}))
}

fn tokens(state: &mut State, request: &Request) -> Response {
    // Client authentication: HTTP Basic, or the form's client_id and client_secret.
    let basic = request
        .header("Authorization")
        .and_then(|a| a.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|pair| pair.split_once(':').map(|(i, s)| (i.to_owned(), s.to_owned())))
        .map(|(i, s)| {
            let decode = |t: &str| {
                url::form_urlencoded::parse(format!("x={t}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default()
            };
            (decode(&i), decode(&s))
        });
    let (id, secret) = basic.unwrap_or_else(|| {
        (
            request.form("client_id").unwrap_or_default(),
            request.form("client_secret").unwrap_or_default(),
        )
    });
    if id != state.client_id || secret != state.client_secret {
        return token_error(401, "invalid_client", "Client authentication failed");
    }
    let refresh = match request.form("grant_type").as_deref() {
        Some("authorization_code") => {
            let code = request.form("code").unwrap_or_default();
            let Some((challenge, redirect)) = state.codes.remove(&code) else {
                return token_error(400, "invalid_grant", "Unknown or used code");
            };
            let verifier = request.form("code_verifier").unwrap_or_default();
            if URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != challenge {
                return token_error(400, "invalid_grant", "PKCE verification failed");
            }
            if request.form("redirect_uri").as_deref() != Some(redirect.as_str()) {
                return token_error(400, "invalid_grant", "redirect_uri mismatch");
            }
            state.serial += 1;
            let refresh = format!("so-refresh-{}", state.serial);
            state.refresh_tokens.insert(refresh.clone());
            Some(refresh)
        }
        Some("refresh_token") => {
            let given = request.form("refresh_token").unwrap_or_default();
            if state.mode == Mode::GrantRevoked || !state.refresh_tokens.contains(&given) {
                return token_error(400, "invalid_grant", "The refresh token is revoked");
            }
            None
        }
        _ => return token_error(400, "unsupported_grant_type", ""),
    };
    state.serial += 1;
    let now = now();
    let id_token = jwt(
        &keys().environment,
        &json!({
            "iss": state.url, "aud": state.client_id, "sub": "ola.normann@example.com",
            "iat": now, "nbf": now, "exp": now + 3600,
            format!("{CLAIM}ctx"): state.tenant,
            format!("{CLAIM}system_token"): state.system_token,
            format!("{CLAIM}netserver_url"): format!("{}/{}/Remote/Services88/", state.url, state.tenant),
        }),
    );
    let mut body = json!({
        "token_type": "Bearer",
        "access_token": format!("8A:{}.access-{}", state.tenant, state.serial),
        "expires_in": 3600,
        "id_token": id_token,
    });
    if let Some(refresh) = refresh {
        body["refresh_token"] = refresh.into();
    }
    if state.mode == Mode::NoIdToken {
        body.as_object_mut().expect("an object").remove("id_token");
    }
    Response::json(200, &body)
}

fn authenticate(state: &mut State, request: &Request) -> Response {
    let refuse = |message: &str| {
        Response::json(200, &json!({"IsSuccessful": false, "Token": null, "ErrorMessage": message}))
    };
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(&request.body) else {
        return Response::json(400, &json!({"Message": "The request is invalid."}));
    };
    let text = |name: &str| body[name].as_str().unwrap_or("").to_owned();
    if text("ApplicationToken") != state.client_secret {
        return refuse("Invalid ApplicationToken");
    }
    if text("ContextIdentifier") != state.tenant {
        return refuse("Unknown ContextIdentifier");
    }
    let signed = text("SignedSystemToken");
    let Some((data, signature)) = signed.rsplit_once('.') else {
        return refuse("Malformed SignedSystemToken");
    };
    let Some((token, time)) = data.rsplit_once('.') else {
        return refuse("Malformed SignedSystemToken");
    };
    if token != state.system_token {
        return refuse("Unknown system user token");
    }
    let minute = chrono::NaiveDateTime::parse_from_str(&format!("{time}00"), "%Y%m%d%H%M%S")
        .map(|t| t.and_utc().timestamp());
    if !minute.is_ok_and(|m| (now() - m).abs() <= 300) {
        return refuse("SignedSystemToken has expired");
    }
    let verified = STANDARD.decode(signature).is_ok_and(|signature| {
        RsaPublicKey::from(&keys().partner)
            .verify(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(data.as_bytes()), &signature)
            .is_ok()
    });
    if !verified {
        return refuse("Signature verification failed");
    }
    state.serial += 1;
    state.authentications += 1;
    let ticket = format!("7T:{}.ticket-{}", state.tenant, state.serial);
    state.tickets.insert(ticket.clone());
    let signer = if state.mode == Mode::TicketSignedByWrongKey {
        &keys().rogue
    } else {
        &keys().environment
    };
    let now = now();
    let token = jwt(
        signer,
        &json!({
            "iss": "SuperOffice AS", "aud": format!("spn:{}", state.client_id),
            "iat": now, "nbf": now, "exp": now + 6 * 3600,
            format!("{CLAIM}ticket"): ticket,
            format!("{CLAIM}ctx"): state.tenant,
            format!("{CLAIM}is_administrator"): "False",
        }),
    );
    Response::json(200, &json!({"IsSuccessful": true, "Token": token, "ErrorMessage": ""}))
}
