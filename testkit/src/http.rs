//! The HTTP client of kurz's black-box tests: one reqwest configuration ([`client`]),
//! an answer read whole ([`Resp`]), and a client bound to one base URL ([`Api`]): a
//! `kurz serve` process, one role process, or a split deployment's front.
//!
//! Tests that send deliberately malformed bytes talk to raw sockets instead.

use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder};
use serde_json::Value;
use std::time::Duration;

/// Response header a split deployment's front adds: which backend process answered
/// (`query-edge#1/g2 127.0.0.1:4711`).
pub const BACKEND_HEADER: &str = "x-split-backend";

/// The client every test uses: it never follows redirects (a redirect is an answer
/// under test), keeps up to 64 idle connections per host, and gives up on a request
/// after 120 s, so a hung server fails the test instead of hanging it.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

/// An error with its causes (reqwest's own Display hides them).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Sends the request and returns its JSON body (the status is the caller's to check).
pub async fn json_of(rb: RequestBuilder) -> Value {
    rb.send().await.unwrap().json().await.unwrap()
}

/// One answer, read whole.
#[derive(Clone)]
pub struct Resp {
    /// The request, for messages: `POST /urls`.
    pub what: String,
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
    /// The body as JSON; `Null` when it is not JSON.
    pub body: Value,
}

impl Resp {
    /// Reads `r` whole (a body that cannot be read is empty).
    pub async fn read(what: String, r: reqwest::Response) -> Resp {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp { what, status, headers, text, body }
    }

    /// Asserts the status and returns the JSON body.
    #[track_caller]
    pub fn ok(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "{}: expected {status}, got {}; body: {}", self.what, self.status, self.text);
        self.body.clone()
    }

    /// Asserts the status and that the body is `{"error": "<non-empty message>"}` (JSON),
    /// whose message contains `needle` (case-insensitive) if given. Returns the message.
    #[track_caller]
    pub fn err(&self, status: u16, needle: Option<&str>) -> String {
        assert_eq!(self.status, status, "{}: expected {status}, got {}; body: {}", self.what, self.status, self.text);
        let ct = self.header("content-type").unwrap_or_default();
        assert!(ct.contains("application/json"), "{}: error response is not JSON (content-type {ct:?}); body: {}", self.what, self.text);
        let obj = self.body.as_object().unwrap_or_else(|| panic!("{}: error body is not a JSON object: {}", self.what, self.text));
        let msg = obj
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{}: error body has no string \"error\": {}", self.what, self.text));
        assert!(!msg.trim().is_empty(), "{}: empty error message", self.what);
        if let Some(n) = needle {
            assert!(msg.to_lowercase().contains(&n.to_lowercase()), "{}: error message {msg:?} should contain {n:?}", self.what);
        }
        msg.to_string()
    }

    /// A header's value, if it is there and text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
    }

    /// The `Location` header.
    pub fn location(&self) -> Option<String> {
        self.header("location")
    }

    /// Which process answered, as a split deployment's front names it
    /// ([`BACKEND_HEADER`]); `front itself` without that header (the front's own answer).
    pub fn backend(&self) -> String {
        self.header(BACKEND_HEADER).unwrap_or_else(|| "front itself".to_string())
    }

    /// The body's `id`.
    #[track_caller]
    pub fn id(&self) -> u64 {
        self.body["id"].as_u64().unwrap_or_else(|| panic!("no id in {self:?}"))
    }
}

impl std::fmt::Debug for Resp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Resp");
        d.field("what", &self.what).field("status", &self.status);
        if let Some(b) = self.header(BACKEND_HEADER) {
            d.field("backend", &b);
        }
        if let Some(l) = self.location() {
            d.field("location", &l);
        }
        if self.body.is_null() {
            d.field("text", &self.text);
        } else {
            d.field("body", &self.body);
        }
        d.finish()
    }
}

/// A client bound to one base URL (`http://127.0.0.1:4711`). Clones share the
/// connection pool.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    /// A new [`client`] on `base`.
    pub fn new(base: impl Into<String>) -> Api {
        Api { http: client(), base: base.into() }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// `base + path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// The reqwest client underneath, for requests the helpers do not build.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// `method path`, with a JSON body, a bearer token and headers when given.
    pub fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> RequestBuilder {
        let mut rb = self.http.request(method, self.url(path));
        if let Some(b) = body {
            rb = rb.json(b);
        }
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        rb
    }

    /// Sends `rb` and reads the answer; a request that gets no answer fails the test.
    pub async fn send(&self, rb: RequestBuilder, what: String) -> Resp {
        match self.try_send(rb, what).await {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        }
    }

    /// Sends `rb` and reads the answer; `Err` names the request and the transport
    /// failure, with its causes.
    pub async fn try_send(&self, rb: RequestBuilder, what: String) -> Result<Resp, String> {
        match rb.send().await {
            Ok(r) => Ok(Resp::read(what, r).await),
            Err(e) => Err(format!("{what}: request failed: {}", error_chain(&e))),
        }
    }

    /// [`Api::request`], sent: see [`Api::send`].
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>, token: Option<&str>, headers: &[(&str, &str)]) -> Resp {
        let what = format!("{method} {path}");
        self.send(self.request(method, path, body, token, headers), what).await
    }

    /// [`Api::request`], sent: see [`Api::try_send`].
    pub async fn try_call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Result<Resp, String> {
        let what = format!("{method} {path}");
        self.try_send(self.request(method, path, body, token, headers), what).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.call(Method::GET, path, None, None, &[]).await
    }
    pub async fn get_as(&self, token: Option<&str>, path: &str) -> Resp {
        self.call(Method::GET, path, None, token, &[]).await
    }
    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(&body), None, &[]).await
    }
    pub async fn post_as(&self, token: Option<&str>, path: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(&body), token, &[]).await
    }
    pub async fn put(&self, path: &str, body: Value) -> Resp {
        self.call(Method::PUT, path, Some(&body), None, &[]).await
    }
    pub async fn put_as(&self, token: Option<&str>, path: &str, body: Value) -> Resp {
        self.call(Method::PUT, path, Some(&body), token, &[]).await
    }
    pub async fn delete(&self, path: &str) -> Resp {
        self.call(Method::DELETE, path, None, None, &[]).await
    }
    pub async fn delete_as(&self, token: Option<&str>, path: &str) -> Resp {
        self.call(Method::DELETE, path, None, token, &[]).await
    }

    /// `POST path` with a CSV body (`text/csv`).
    pub async fn post_csv(&self, token: Option<&str>, path: &str, csv: String) -> Resp {
        let rb = self.request(Method::POST, path, None, token, &[("content-type", "text/csv")]).body(csv);
        self.send(rb, format!("POST {path} (text/csv)")).await
    }
}
