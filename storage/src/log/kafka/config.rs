//! `kafka://host:port[,host:port][?replication=3&retention_ms=-1&client.id=kurz&…]`.
//!
//! | parameter | meaning | default |
//! |---|---|---|
//! | `replication` | replication factor of topics kurz creates | 1 |
//! | `retention_ms` | `retention.ms` of the topics kurz creates; `-1` keeps events forever | -1 |
//! | `timeout_ms` | how long an append may wait for its delivery report; must be shorter than `drain_ms` | 30000, or 4/5 of `drain_ms` if shorter |
//! | `session_timeout_ms` | group session timeout: how soon a dead member's partitions move | 10000 |
//! | `drain_ms` | how long a revoked partition's work may take to stop | 30000 |
//! | any `a.b` name | passed to librdkafka as is (e.g. `security.protocol=ssl`) | |

use crate::StorageError;

#[derive(Debug, Clone)]
pub struct KafkaConfig {
    pub brokers: String,
    pub replication: i32,
    pub retention_ms: i64,
    pub timeout_ms: u64,
    pub session_timeout_ms: u64,
    pub drain_ms: u64,
    /// librdkafka settings passed through.
    pub extra: Vec<(String, String)>,
}

impl KafkaConfig {
    pub fn parse(url: &str) -> Result<KafkaConfig, StorageError> {
        let rest =
            url.strip_prefix("kafka://").ok_or_else(|| StorageError::Engine(format!("not a kafka:// url: {}", crate::redact(url))))?;
        let (hosts, query) = rest.split_once('?').unwrap_or((rest, ""));
        let hosts = hosts.trim_end_matches('/');
        if hosts.is_empty() {
            return Err(StorageError::Engine("kafka:// url names no broker".into()));
        }
        let mut timeout = None;
        let mut c = KafkaConfig {
            brokers: hosts.to_string(),
            replication: 1,
            retention_ms: -1,
            timeout_ms: 30_000,
            session_timeout_ms: 10_000,
            drain_ms: 30_000,
            extra: Vec::new(),
        };
        for kv in query.split('&').filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once('=').ok_or_else(|| StorageError::Engine(format!("kafka url parameter '{kv}' needs a value")))?;
            let bad = || StorageError::Engine(format!("kafka url parameter {k}={v} is not valid"));
            match k {
                "replication" => c.replication = v.parse().map_err(|_| bad())?,
                "retention_ms" => c.retention_ms = v.parse().map_err(|_| bad())?,
                "timeout_ms" => timeout = Some(v.parse().map_err(|_| bad())?),
                "session_timeout_ms" => c.session_timeout_ms = v.parse().map_err(|_| bad())?,
                "drain_ms" => c.drain_ms = v.parse().map_err(|_| bad())?,
                k if k.contains('.') => c.extra.push((k.to_string(), v.to_string())),
                _ => return Err(StorageError::Engine(format!("unknown kafka url parameter '{k}'"))),
            }
        }
        // An append must end (delivered or failed) before the partition's drain does:
        // a revoked owner whose produce request outlives its drain would land records
        // after the next owner started.
        c.timeout_ms = match timeout {
            Some(t) if t >= c.drain_ms => {
                return Err(StorageError::Config(format!(
                    "kafka url: timeout_ms={t} must be shorter than drain_ms={}, so an append ends before its partition is released",
                    c.drain_ms
                )))
            }
            Some(t) => t,
            None => c.timeout_ms.min(c.drain_ms - c.drain_ms / 5),
        };
        if c.timeout_ms == 0 {
            return Err(StorageError::Config("kafka url: drain_ms is too short for any append".into()));
        }
        Ok(c)
    }

    pub fn client(&self) -> rdkafka::ClientConfig {
        let mut c = rdkafka::ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers).set("client.id", "kurz").set("log_level", "4");
        for (k, v) in &self.extra {
            c.set(k, v);
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_brokers_and_parameters() {
        let c = KafkaConfig::parse("kafka://a:9092,b:9092?replication=3&retention_ms=86400000&security.protocol=ssl").unwrap();
        assert_eq!(c.brokers, "a:9092,b:9092");
        assert_eq!((c.replication, c.retention_ms), (3, 86_400_000));
        assert_eq!(c.extra, vec![("security.protocol".to_string(), "ssl".to_string())]);
        assert!(KafkaConfig::parse("kafka://").is_err());
        assert!(KafkaConfig::parse("kafka://a:1?bogus=1").is_err());
        assert!(KafkaConfig::parse("kafka://a:1?replication=x").is_err());
    }

    #[test]
    fn an_append_times_out_before_its_partition_drain_ends() {
        assert_eq!(KafkaConfig::parse("kafka://a:1").unwrap().timeout_ms, 24_000);
        assert_eq!(KafkaConfig::parse("kafka://a:1?drain_ms=5000").unwrap().timeout_ms, 4_000);
        assert_eq!(KafkaConfig::parse("kafka://a:1?drain_ms=5000&timeout_ms=3000").unwrap().timeout_ms, 3_000);
        let e = KafkaConfig::parse("kafka://a:1?timeout_ms=30000").unwrap_err().to_string();
        assert!(e.contains("timeout_ms=30000 must be shorter than drain_ms=30000"), "{e}");
        assert!(KafkaConfig::parse("kafka://a:1?drain_ms=0").is_err());
    }
}
