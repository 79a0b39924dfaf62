//! Which redirect targets kurz accepts, beyond the form [`TargetUrl::parse`] checks: not
//! kurz's own public host (a link to a short link is a loop, or a way to hide a
//! target behind two hops), and not a host on the operator's deny-list
//! (`KURZ_DENY_HOSTS`: a file of host names, one per line, `#` comments; a name also
//! denies its subdomains). Checked on create, update, `/shorten`, bulk loads and
//! imports; each refusal is counted in `kurz_target_rejections_total{reason}`.

use kurz_schemas::TargetUrl;
use std::collections::HashSet;
use std::path::Path;

#[derive(Debug, Clone, Default)]
pub struct TargetPolicy {
    own: Option<String>,
    deny: HashSet<String>,
}

/// Why a target was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("url must not point at this shortener's own host ({0})")]
    OwnHost(String),
    #[error("url's host {0} is not allowed here")]
    Denied(String),
}

impl Refused {
    fn reason(&self) -> &'static str {
        match self {
            Refused::OwnHost(_) => "own_host",
            Refused::Denied(_) => "deny_list",
        }
    }
}

fn normal(host: &str) -> String {
    host.trim().trim_end_matches('.').trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase()
}

impl TargetPolicy {
    /// `public_url`: kurz's public base (`KURZ_PUBLIC_URL`); `deny`: the deny-list file.
    pub fn new(public_url: Option<&str>, deny: Option<&Path>) -> Result<TargetPolicy, String> {
        let own = public_url.and_then(|u| url::Url::parse(u).ok()).and_then(|u| u.host_str().map(normal));
        let mut set = HashSet::new();
        if let Some(path) = deny {
            let text = std::fs::read_to_string(path).map_err(|e| format!("KURZ_DENY_HOSTS {}: {e}", path.display()))?;
            for line in text.lines() {
                let line = line.split('#').next().unwrap_or("").trim();
                if line.is_empty() {
                    continue;
                }
                // International names are compared in their ASCII (punycode) form, as
                // the stored target is.
                let host = url::Url::parse(&format!("http://{line}/"))
                    .ok()
                    .and_then(|u| u.host_str().map(normal))
                    .ok_or_else(|| format!("KURZ_DENY_HOSTS {}: '{line}' is not a host name", path.display()))?;
                set.insert(host);
            }
        }
        Ok(TargetPolicy { own, deny: set })
    }

    pub fn denied_hosts(&self) -> usize {
        self.deny.len()
    }

    /// Checks `url`; `request_host` is the request's `Host` (kurz's public host when no
    /// `KURZ_PUBLIC_URL` is set). Counts a refusal.
    pub fn check(&self, url: &TargetUrl, request_host: Option<&str>) -> Result<(), Refused> {
        let r = self.judge(url, request_host);
        if let Err(e) = &r {
            crate::metrics::get().target_rejections.with_label_values(&[e.reason()]).inc();
        }
        r
    }

    fn judge(&self, url: &TargetUrl, request_host: Option<&str>) -> Result<(), Refused> {
        let Some(host) = url.host() else { return Ok(()) };
        let host = normal(&host);
        let request_host = request_host.map(|h| normal(strip_port(h)));
        for own in self.own.iter().chain(request_host.iter()) {
            if !own.is_empty() && *own == host {
                return Err(Refused::OwnHost(host));
            }
        }
        // The host and each parent domain: a.b.evil.tld, b.evil.tld, evil.tld, tld.
        let mut rest = host.as_str();
        loop {
            if self.deny.contains(rest) {
                return Err(Refused::Denied(host.clone()));
            }
            match rest.split_once('.') {
                Some((_, parent)) if !parent.is_empty() => rest = parent,
                _ => return Ok(()),
            }
        }
    }
}

/// `host[:port]` or `[v6]:port` without the port.
fn strip_port(h: &str) -> &str {
    if let Some(end) = h.strip_prefix('[').and_then(|r| r.find(']')) {
        return &h[1..end + 1];
    }
    match h.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => h,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> TargetUrl {
        TargetUrl::parse(s).unwrap()
    }

    #[test]
    fn own_host_and_deny_list() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("deny.txt");
        std::fs::write(&file, "# phishing\nevil.tld\n  Bad.Example  # shouting\n\nbücher.example\n").unwrap();
        let p = TargetPolicy::new(Some("https://sho.rt"), Some(&file)).unwrap();
        assert_eq!(p.denied_hosts(), 3);
        assert!(p.check(&url("https://example.com/x"), Some("sho.rt")).is_ok());
        assert_eq!(p.check(&url("https://SHO.RT/abc"), None), Err(Refused::OwnHost("sho.rt".into())));
        assert!(
            matches!(p.check(&url("http://127.0.0.1:9/x"), Some("127.0.0.1:8080")), Err(Refused::OwnHost(_))),
            "the Host a request came in on"
        );
        assert!(matches!(p.check(&url("https://evil.tld/"), None), Err(Refused::Denied(_))));
        assert!(matches!(p.check(&url("https://a.b.evil.tld/"), None), Err(Refused::Denied(_))), "subdomains");
        assert!(matches!(p.check(&url("https://evil.tld./"), None), Err(Refused::Denied(_))), "a trailing dot");
        assert!(p.check(&url("https://notevil.tld/"), None).is_ok(), "a suffix that is not a parent domain");
        assert!(matches!(p.check(&url("https://bad.example/"), None), Err(Refused::Denied(_))));
        assert!(matches!(p.check(&url("https://www.bücher.example/"), None), Err(Refused::Denied(_))), "punycode both sides");
        assert!(TargetPolicy::new(None, Some(&dir.path().join("missing"))).is_err(), "a missing file is a startup error");
    }

    #[test]
    fn ports_are_stripped_from_request_hosts() {
        assert_eq!(strip_port("a.io:8080"), "a.io");
        assert_eq!(strip_port("a.io"), "a.io");
        assert_eq!(strip_port("[::1]:80"), "::1");
    }
}
