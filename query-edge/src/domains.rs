//! The edge's copy of the domain registry ([`kurz_schemas::domain`]): which request
//! hosts are domains, and where each sends a visit that reaches no link.
//!
//! The registry is small (at most `MAX_DOMAINS` hosts) and changes rarely, so every
//! edge holds all of it and reads it again every `KURZ_DOMAINS_REFRESH_MS` (a second
//! by default): a domain registered, changed or deleted is served by every edge within
//! that. Until some host is registered, a request pays one atomic load for this.

use axum::http::{header, HeaderMap, HeaderValue, Uri};
use kurz_schemas::domain::{Domain, DEFAULT};
use kurz_schemas::OrphanKind;
use kurz_storage::ReadStore;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often an edge reads the registry by default.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(1);

/// One reading of the registry.
#[derive(Debug, Default)]
pub struct Registry {
    default: Option<Domain>,
    hosts: HashMap<String, Domain>,
}

impl Registry {
    pub fn new(entries: Vec<Domain>) -> Registry {
        let mut r = Registry::default();
        for d in entries {
            if d.host == DEFAULT {
                r.default = Some(d);
            } else {
                r.hosts.insert(d.host.clone(), d);
            }
        }
        r
    }
}

#[derive(Default)]
pub struct Domains {
    current: RwLock<Arc<Registry>>,
    /// Whether any host is registered: the only thing a request reads when none is.
    any_host: AtomicBool,
}

/// The request's host, lowercase, without its port or a trailing dot; `None` for an
/// IP literal or a missing or malformed one. From `Host`, else the URI's authority
/// (HTTP/2).
pub fn request_host<'a>(headers: &'a HeaderMap, uri: &'a Uri) -> Option<Cow<'a, str>> {
    let raw = headers.get(header::HOST).and_then(|h| h.to_str().ok()).or_else(|| uri.authority().map(|a| a.as_str()))?;
    if raw.starts_with('[') || raw.len() > kurz_schemas::domain::MAX_HOST + 6 {
        return None;
    }
    let name = match raw.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        Some(_) => return None,
        None => raw,
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return None;
    }
    Some(match name.bytes().any(|b| b.is_ascii_uppercase()) {
        true => Cow::Owned(name.to_ascii_lowercase()),
        false => Cow::Borrowed(name),
    })
}

impl Domains {
    fn registry(&self) -> Arc<Registry> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the registry with `r`.
    pub fn set(&self, r: Registry) {
        self.any_host.store(!r.hosts.is_empty(), Ordering::Release);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(r);
    }

    /// Reads the registry from `store` now.
    pub async fn load(&self, store: &dyn ReadStore) -> Result<(), kurz_storage::StorageError> {
        self.set(Registry::new(store.domains().await?));
        Ok(())
    }

    /// The registered domain this request is for, if any: the host its link lookups
    /// try first.
    pub fn domain_of(&self, headers: &HeaderMap, uri: &Uri) -> Option<String> {
        if !self.any_host.load(Ordering::Acquire) {
            return None;
        }
        let host = request_host(headers, uri)?;
        self.registry().hosts.contains_key(host.as_ref()).then(|| host.into_owned())
    }

    /// Where an orphan visit of `kind` on this request's host goes instead of a 404: the
    /// host's own fallback, else the default entry's; `None`: a 404.
    pub fn fallback(&self, headers: &HeaderMap, uri: &Uri, kind: OrphanKind) -> Option<HeaderValue> {
        let r = self.registry();
        let own = match self.any_host.load(Ordering::Acquire) {
            true => request_host(headers, uri).and_then(|h| r.hosts.get(h.as_ref()).and_then(|d| d.fallback(kind)).map(str::to_string)),
            false => None,
        };
        let target = own.or_else(|| r.default.as_ref().and_then(|d| d.fallback(kind)).map(str::to_string))?;
        HeaderValue::from_str(&target).ok()
    }

    /// Reads the registry every `every` until `stop`. A failed read keeps the last
    /// one (logged once per failure streak).
    pub async fn run_until_stopped(self: Arc<Self>, store: Arc<dyn ReadStore>, every: Duration, stop: CancellationToken) {
        let mut failing = false;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            match self.load(store.as_ref()).await {
                Ok(()) => failing = false,
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(event = "domains_not_read", error = %e, "serving the last domain registry read");
                }
                Err(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kurz_schemas::Ts;

    fn domain(host: &str, not_found: Option<&str>) -> Domain {
        Domain {
            host: host.into(),
            base_url_redirect: None,
            not_found_redirect: not_found.map(str::to_string),
            expired_redirect: None,
            created_at: Ts(0),
            updated_at: Ts(0),
        }
    }

    fn host(h: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(header::HOST, HeaderValue::from_str(h).unwrap());
        m
    }

    #[test]
    fn the_host_is_read_without_port_case_or_trailing_dot() {
        let uri: Uri = "/abc".parse().unwrap();
        let h = |v: &str| request_host(&host(v), &uri).map(|c| c.into_owned());
        assert_eq!(h("Go.Example:8080").as_deref(), Some("go.example"));
        assert_eq!(h("go.example.").as_deref(), Some("go.example"));
        assert_eq!(h("[::1]:80"), None);
        assert_eq!(h("go.example:x"), None);
        let h2: Uri = "https://Go.Example/abc".parse().unwrap();
        assert_eq!(request_host(&HeaderMap::new(), &h2).as_deref(), Some("go.example"), "HTTP/2 has an authority, not a Host");
    }

    #[test]
    fn only_registered_hosts_are_domains_and_fallbacks_fall_back_to_the_default() {
        let d = Domains::default();
        let uri: Uri = "/abc".parse().unwrap();
        assert_eq!(d.domain_of(&host("go.example"), &uri), None, "nothing registered");
        d.set(Registry::new(vec![
            domain("go.example", None),
            domain("x.example", Some("https://x.example/404")),
            domain(DEFAULT, Some("https://kurz.example/404")),
        ]));
        assert_eq!(d.domain_of(&host("GO.example:443"), &uri).as_deref(), Some("go.example"));
        assert_eq!(d.domain_of(&host("other.example"), &uri), None);
        let nf = |h: &str| d.fallback(&host(h), &uri, OrphanKind::NotFound).map(|v| v.to_str().unwrap().to_string());
        assert_eq!(nf("x.example").as_deref(), Some("https://x.example/404"));
        assert_eq!(nf("go.example").as_deref(), Some("https://kurz.example/404"), "a domain without one takes the default's");
        assert_eq!(nf("127.0.0.1:8080").as_deref(), Some("https://kurz.example/404"));
        assert_eq!(d.fallback(&host("x.example"), &uri, OrphanKind::Expired), None);
        d.set(Registry::new(vec![]));
        assert_eq!(d.domain_of(&host("go.example"), &uri), None, "a deleted domain is no longer one");
        assert_eq!(nf("x.example"), None);
    }
}
