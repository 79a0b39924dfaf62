//! The `scylla://` store URL (see the module doc of [`super`] for the accepted form).

use crate::StorageError;
use scylla::statement::Consistency;

pub const DEFAULT_KEYSPACE: &str = "kurz";
pub const DEFAULT_PORT: u16 = 9042;
pub const DEFAULT_PAGE_SIZE: i32 = 100;

#[derive(Debug, Clone, PartialEq)]
pub struct ScyllaConfig {
    /// `host:port` contact points.
    pub hosts: Vec<String>,
    pub keyspace: String,
    /// For every read and write (default LOCAL_QUORUM).
    pub consistency: Consistency,
    /// The keyspace's replication map as CQL (`{'class': ...}`), or None for the one
    /// in `infra/cql/schema.cql`.
    pub replication: Option<String>,
    /// Rows per page of every listing.
    pub page_size: i32,
    /// `user:password@` in the URL: the driver's plain-text authenticator (Scylla's
    /// `PasswordAuthenticator`), percent-decoded.
    pub credentials: Option<Credentials>,
    /// `tls=true` (or a `tls_ca`): TLS to every node, verified against the system's
    /// roots or the CA in the `tls_ca` PEM file.
    pub tls: Option<Tls>,
}

#[derive(Clone, PartialEq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

/// Never prints the password.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}:***)", self.user)
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Tls {
    pub ca: Option<std::path::PathBuf>,
}

/// `%xx` escapes of a URL's userinfo, decoded.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn bad(url: &str, why: impl std::fmt::Display) -> StorageError {
    StorageError::Engine(format!("store url '{}': {why}", crate::redact(url)))
}

fn is_ident(s: &str, max: usize) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= max
}

fn consistency(url: &str, v: &str) -> Result<Consistency, StorageError> {
    Ok(match v.to_ascii_lowercase().as_str() {
        "any" => Consistency::Any,
        "one" => Consistency::One,
        "two" => Consistency::Two,
        "three" => Consistency::Three,
        "quorum" => Consistency::Quorum,
        "all" => Consistency::All,
        "local_quorum" => Consistency::LocalQuorum,
        "each_quorum" => Consistency::EachQuorum,
        "local_one" => Consistency::LocalOne,
        other => return Err(bad(url, format!("unknown consistency '{other}'"))),
    })
}

/// `N` → SimpleStrategy with N replicas; `dc:N[,dc:N…]` → NetworkTopologyStrategy.
fn replication(url: &str, v: &str) -> Result<String, StorageError> {
    let rf = |n: &str| n.parse::<u8>().ok().filter(|n| *n > 0).ok_or_else(|| bad(url, format!("bad replication factor '{n}'")));
    if !v.contains(':') {
        return Ok(format!("{{'class': 'SimpleStrategy', 'replication_factor': {}}}", rf(v)?));
    }
    let mut dcs = Vec::new();
    for part in v.split(',') {
        let (dc, n) = part.split_once(':').ok_or_else(|| bad(url, format!("bad replication entry '{part}'")))?;
        if dc.is_empty() || !dc.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)) {
            return Err(bad(url, format!("bad datacenter name '{dc}'")));
        }
        dcs.push(format!(", '{dc}': {}", rf(n)?));
    }
    Ok(format!("{{'class': 'NetworkTopologyStrategy'{}}}", dcs.concat()))
}

impl ScyllaConfig {
    pub fn parse(url: &str) -> Result<ScyllaConfig, StorageError> {
        let rest = url.strip_prefix("scylla://").ok_or_else(|| bad(url, "expected scylla://host:port[,host:port]/keyspace"))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (credentials, path) = match path.rsplit_once('@') {
            None => (None, path),
            Some((userinfo, path)) => {
                let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                let decode = |s: &str| percent_decode(s).ok_or_else(|| bad(url, "bad percent-encoding in user or password"));
                (Some(Credentials { user: decode(user)?, password: decode(password)? }), path)
            }
        };
        let (hosts, keyspace) = path.split_once('/').unwrap_or((path, ""));
        let hosts = hosts
            .split(',')
            .map(|h| {
                let h = h.trim();
                if h.is_empty() {
                    Err(bad(url, "empty host"))
                } else if h.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) && !h.ends_with(']') {
                    Ok(h.to_string())
                } else {
                    Ok(format!("{h}:{DEFAULT_PORT}"))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let keyspace = match keyspace.trim_end_matches('/') {
            "" => DEFAULT_KEYSPACE.to_string(),
            k if is_ident(k, 48) => k.to_ascii_lowercase(),
            k => return Err(bad(url, format!("bad keyspace name '{k}'"))),
        };
        let mut cfg = ScyllaConfig {
            hosts,
            keyspace,
            consistency: Consistency::LocalQuorum,
            replication: None,
            page_size: DEFAULT_PAGE_SIZE,
            credentials,
            tls: None,
        };
        for kv in query.split('&').filter(|kv| !kv.is_empty()) {
            let (k, v) = kv.split_once('=').ok_or_else(|| bad(url, format!("parameter '{kv}' has no value")))?;
            match k {
                "consistency" => cfg.consistency = consistency(url, v)?,
                "replication" => cfg.replication = Some(replication(url, v)?),
                "page_size" => {
                    cfg.page_size =
                        v.parse().ok().filter(|n| (1..=10_000).contains(n)).ok_or_else(|| bad(url, "page_size must be 1..=10000"))?
                }
                "tls" => match v {
                    "true" => cfg.tls = Some(cfg.tls.take().unwrap_or_default()),
                    "false" => cfg.tls = None,
                    _ => return Err(bad(url, "tls must be true or false")),
                },
                "tls_ca" => cfg.tls = Some(Tls { ca: Some(v.into()) }),
                other => return Err(bad(url, format!("unknown parameter '{other}'"))),
            }
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_parameters() {
        let c = ScyllaConfig::parse("scylla://db1").unwrap();
        assert_eq!(c.hosts, vec!["db1:9042"]);
        assert_eq!(c.keyspace, "kurz");
        assert_eq!(c.consistency, Consistency::LocalQuorum);
        assert_eq!(c.replication, None);
        let c = ScyllaConfig::parse("scylla://a:1,b:2/Shop?consistency=one&replication=eu-1:3,us:2&page_size=7").unwrap();
        assert_eq!(c.hosts, vec!["a:1", "b:2"]);
        assert_eq!(c.keyspace, "shop");
        assert_eq!(c.consistency, Consistency::One);
        assert_eq!(c.replication.as_deref(), Some("{'class': 'NetworkTopologyStrategy', 'eu-1': 3, 'us': 2}"));
        assert_eq!(c.page_size, 7);
        let c = ScyllaConfig::parse("scylla://a/?replication=3").unwrap();
        assert_eq!(c.replication.as_deref(), Some("{'class': 'SimpleStrategy', 'replication_factor': 3}"));
    }

    #[test]
    fn credentials_and_tls() {
        let c = ScyllaConfig::parse("scylla://kurz:p%40ss%2Fw0rd@a:1,b/ks?tls=true").unwrap();
        assert_eq!(c.credentials, Some(Credentials { user: "kurz".into(), password: "p@ss/w0rd".into() }));
        assert_eq!(c.hosts, vec!["a:1", "b:9042"]);
        assert_eq!(c.keyspace, "ks");
        assert_eq!(c.tls, Some(Tls { ca: None }));
        assert!(!format!("{c:?}").contains("p@ss"), "Debug hides the password");
        let c = ScyllaConfig::parse("scylla://a/ks?tls_ca=/etc/kurz/ca.pem").unwrap();
        assert_eq!(c.tls, Some(Tls { ca: Some("/etc/kurz/ca.pem".into()) }));
        assert_eq!(c.credentials, None);
        assert!(ScyllaConfig::parse("scylla://a/ks?tls=yes").is_err());
        assert!(ScyllaConfig::parse("scylla://u:%zz@a/ks").is_err());
        let e = ScyllaConfig::parse("scylla://u:hunter2@a/ks?nope=1").unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn refuses_bad_urls() {
        for url in [
            "scylla://",
            "scylla://a,,b",
            "scylla://a/bad-name",
            "scylla://a/k?consistency=serial",
            "scylla://a/k?replication=0",
            "scylla://a/k?replication=dc'x:3",
            "scylla://a/k?page_size=0",
            "scylla://a/k?nope=1",
            "scylla://a/k?consistency",
        ] {
            assert!(ScyllaConfig::parse(url).is_err(), "{url}");
        }
    }
}
