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
        let mut cfg =
            ScyllaConfig { hosts, keyspace, consistency: Consistency::LocalQuorum, replication: None, page_size: DEFAULT_PAGE_SIZE };
        for kv in query.split('&').filter(|kv| !kv.is_empty()) {
            let (k, v) = kv.split_once('=').ok_or_else(|| bad(url, format!("parameter '{kv}' has no value")))?;
            match k {
                "consistency" => cfg.consistency = consistency(url, v)?,
                "replication" => cfg.replication = Some(replication(url, v)?),
                "page_size" => {
                    cfg.page_size =
                        v.parse().ok().filter(|n| (1..=10_000).contains(n)).ok_or_else(|| bad(url, "page_size must be 1..=10000"))?
                }
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
