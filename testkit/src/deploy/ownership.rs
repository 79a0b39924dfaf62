//! Who owned which partition when, as the processes' logs tell it: the deciders and
//! projectors rely on a partition having one owner at a time.

use super::{unix_now, Role, Split, CLICK_PARTITIONS, PARTITIONS};
use std::collections::BTreeMap;

/// One process generation's ownership of one partition, from its logs.
#[derive(Debug, Clone)]
pub struct Tenure {
    pub owner: String,
    pub topic: String,
    pub partition: u32,
    /// Unix seconds.
    pub from: f64,
    /// Unix seconds; `None` while it still holds the partition.
    pub until: Option<f64>,
}

/// Seconds since the Unix epoch of an RFC 3339 UTC timestamp as kurz logs it
/// (`2026-11-22T04:23:34.728622Z`).
pub fn parse_ts(ts: &str) -> Option<f64> {
    let (date, time) = ts.trim_end_matches('Z').split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let (h, min, sec) = (t.next()?.parse::<f64>().ok()?, t.next()?.parse::<f64>().ok()?, t.next()?.parse::<f64>().ok()?);
    // Days from 1970-01-01 (Howard Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days as f64 * 86_400.0 + h * 3_600.0 + min * 60.0 + sec)
}

/// When a membership line happened: a kurz line's `ts`, or a harness line's `t=`.
fn line_time(line: &str) -> Option<f64> {
    if let Some(rest) = line.strip_prefix("[harness] t=") {
        return rest.split_whitespace().next()?.parse().ok();
    }
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    parse_ts(v["ts"].as_str()?)
}

impl Split {
    /// Who owns which partition, as the running processes logged it
    /// (`partitions_assigned` / `partitions_revoked` since their last start), per
    /// topic: `topic -> partition -> owners`. A partition no one owns is listed with no
    /// owner. Topics: `kurz.commands.v1` (deciders), `kurz.events.v1` and
    /// `kurz.clicks.v1` (projectors).
    pub fn ownership(&self) -> BTreeMap<String, BTreeMap<u32, Vec<String>>> {
        let mut out: BTreeMap<String, BTreeMap<u32, Vec<String>>> = BTreeMap::new();
        for (topic, n) in [("kurz.commands.v1", PARTITIONS), ("kurz.events.v1", PARTITIONS), ("kurz.clicks.v1", CLICK_PARTITIONS)] {
            out.insert(topic.to_string(), (0..n).map(|p| (p, Vec::new())).collect());
        }
        for t in self.tenures().into_iter().filter(|t| t.until.is_none()) {
            out.entry(t.topic).or_default().entry(t.partition).or_default().push(t.owner);
        }
        out
    }

    /// Every ownership period of every partition by every process generation, as the
    /// logs tell it: from `partitions_assigned` to `partitions_revoked` (logged before
    /// the revoked work drains, so an overlap found here is a real one), or to the
    /// harness's `kill -9`, or to the process's own exit.
    pub fn tenures(&self) -> Vec<Tenure> {
        let mut out = Vec::new();
        for p in &self.procs {
            let log = p.log.lock().unwrap();
            let mut generation = 0;
            let mut open: BTreeMap<(String, u32), f64> = BTreeMap::new();
            let close_all = |open: &mut BTreeMap<(String, u32), f64>, out: &mut Vec<Tenure>, gen: u32, at: Option<f64>| {
                for ((topic, partition), from) in std::mem::take(open) {
                    out.push(Tenure { owner: format!("{}/g{gen}", p.name()), topic, partition, from, until: at });
                }
            };
            for line in &log.membership {
                let Some(t) = line_time(line) else { continue };
                if line.starts_with("[harness]") {
                    if line.contains(" started generation ") {
                        close_all(&mut open, &mut out, generation, Some(t));
                        generation += 1;
                    } else if line.contains(" kill -9 ") || line.contains(" exited on its own") {
                        close_all(&mut open, &mut out, generation, Some(t));
                    }
                    continue;
                }
                let assigned = line.contains("\"event\":\"partitions_assigned\"");
                let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
                let (Some(topic), Some(parts)) = (v["topic"].as_str(), v["partitions"].as_str()) else { continue };
                for x in parts.trim_matches(|c| c == '[' || c == ']').split(',').filter_map(|x| x.trim().parse::<u32>().ok()) {
                    let key = (topic.to_string(), x);
                    if assigned {
                        open.entry(key).or_insert(t);
                    } else if let Some(from) = open.remove(&key) {
                        out.push(Tenure { owner: format!("{}/g{generation}", p.name()), topic: key.0, partition: x, from, until: Some(t) });
                    }
                }
            }
            let running = p.is_running();
            close_all(&mut open, &mut out, generation, if running { None } else { Some(unix_now()) });
        }
        out
    }

    /// Pairs of processes that owned one partition at the same time (by their logs), as
    /// text. Deciders and projectors rely on a partition having one owner at a time.
    pub fn ownership_overlaps(&self) -> Vec<String> {
        let t = self.tenures();
        let now = unix_now();
        let rel = |u: Option<f64>| u.map_or("now".to_string(), |u| format!("+{:.1}s", u - self.started_unix));
        let mut out = Vec::new();
        for (i, a) in t.iter().enumerate() {
            for b in &t[i + 1..] {
                if a.topic != b.topic || a.partition != b.partition || a.owner == b.owner {
                    continue;
                }
                let start = a.from.max(b.from);
                let end = a.until.unwrap_or(now).min(b.until.unwrap_or(now));
                if end > start {
                    out.push(format!(
                        "{} partition {}: {} (+{:.1}s to {}) and {} (+{:.1}s to {}) both owned it for {:.1}s",
                        a.topic,
                        a.partition,
                        a.owner,
                        a.from - self.started_unix,
                        rel(a.until),
                        b.owner,
                        b.from - self.started_unix,
                        rel(b.until),
                        end - start
                    ));
                }
            }
        }
        out
    }

    /// The running process of `role` that has held a partition of `topic` the longest
    /// without a break (on tansu, the group's first member is its leader until it goes).
    pub fn longest_owner(&self, role: Role, topic: &str) -> Option<usize> {
        self.tenures()
            .into_iter()
            .filter(|t| t.topic == topic && t.until.is_none())
            .filter_map(|t| {
                let name = t.owner.split('/').next()?.to_string();
                let p = self.procs.iter().find(|p| p.name() == name && p.role == role)?;
                Some((t.from, p.index))
            })
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, i)| i)
    }

    /// `ownership()` as text, naming partitions nobody owns.
    pub fn ownership_report(&self) -> String {
        let mut s = String::new();
        for (topic, parts) in self.ownership() {
            let orphans: Vec<u32> = parts.iter().filter(|(_, o)| o.is_empty()).map(|(p, _)| *p).collect();
            s.push_str(&format!("  {topic}: {parts:?}"));
            if !orphans.is_empty() {
                s.push_str(&format!("  <- owned by no running process: {orphans:?}"));
            }
            s.push('\n');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kurz_timestamps_and_harness_lines_have_their_unix_time() {
        assert_eq!(parse_ts("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(parse_ts("2000-03-01T00:00:01.5Z"), Some(951_868_801.5));
        assert_eq!(parse_ts("2026-11-22T04:23:34Z"), Some(1_795_321_414.0));
        assert_eq!(parse_ts("yesterday"), None);
        assert_eq!(line_time("[harness] t=12.5 kill -9 (pid 7)"), Some(12.5));
        assert_eq!(line_time(r#"{"ts":"1970-01-02T00:00:00Z","event":"partitions_assigned"}"#), Some(86_400.0));
    }
}
