//! `authplug request SYSTEM METHOD URL`: one request with the system's credentials applied by
//! its scheme (a quick "do my credentials work", like `gh api`). The body goes to stdout, the
//! status line to stderr; an HTTP error status exits with code 1.

use std::io::Write;

use clap::Args;

use crate::context::{Context, EngineOptions};
use crate::exit::{Code, Failure};

#[derive(Debug, Args)]
pub struct RequestArgs {
    /// The stored system.
    pub system: String,

    /// GET, POST, PUT, PATCH, DELETE, ...
    pub method: String,

    /// The full URL.
    pub url: String,

    /// An extra header, 'Name: value'; repeat for several.
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,

    /// The request body.
    #[arg(short = 'd', long, value_name = "BODY")]
    pub data: Option<String>,
}

pub fn run(ctx: &Context<'_>, args: &RequestArgs) -> Result<(), Failure> {
    if ctx.json() {
        return Err(Failure::no_json("request", "the answer's body goes to stdout as it came"));
    }
    let method =
        reqwest::Method::from_bytes(args.method.to_uppercase().as_bytes()).map_err(|_| {
            Failure::new(Code::BadInput, format!("{}: not an HTTP method", args.method))
        })?;
    let url = reqwest::Url::parse(&args.url)
        .map_err(|e| Failure::new(Code::BadInput, format!("{}: not a URL ({e})", args.url)))?;
    let mut headers = Vec::new();
    for header in &args.headers {
        let (name, value) = header.split_once(':').ok_or_else(|| {
            Failure::new(Code::BadInput, format!("-H {header}: expected 'Name: value'"))
        })?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let system = args.system.clone();
    let timeout = std::time::Duration::from_secs(ctx.cli.engine.http_timeout.max(1));
    ctx.with_engine(EngineOptions::default(), async move |engine| {
        let applied = engine.authorize(&system).await?.applied.clone();
        let mut url = url;
        for (name, value) in &applied.query {
            url.query_pairs_mut().append_pair(name, value.expose());
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| Failure::new(Code::Failure, format!("no HTTP client: {e}")))?;
        let mut request = client.request(method.clone(), url.clone());
        for (name, value) in &headers {
            request = request.header(name, value);
        }
        for (name, value) in &applied.headers {
            request = request.header(name, value.expose());
        }
        if let Some(data) = &args.data {
            request = request.body(data.clone());
        }
        // The URL may now carry a secret query parameter: errors name the host only.
        let host = url.host_str().unwrap_or("").to_owned();
        let response = request.send().await.map_err(|e| {
            Failure::new(Code::Failure, format!("{method} {host}: {}", e.without_url()))
        })?;
        let status = response.status();
        eprintln!("{method} {}: HTTP {status}", args.url);
        let body = response.bytes().await.unwrap_or_default();
        let _ = std::io::stdout().write_all(&body);
        if status.is_success() {
            Ok(())
        } else {
            Err(Failure::new(Code::Failure, format!("the server answered HTTP {status}")))
        }
    })
}
