//! Claimed offsets: a conditional append that holds on any log, checked by readers.
//!
//! Kafka has no "append if the partition ends at N", and a writer that stalls between
//! its check of the end and its append (a pause, a produce request retried after its
//! owner was replaced) lands records decided on a state that is no longer the log's.
//! So the single writer of a partition (a decider) says, in each record, where it
//! expects that record to land and which append it belongs to: header [`CLAIM`] =
//! `"<offset> <first> <end>"`, the record's own offset and the append's range
//! `[first, end)`. Every reader applies the same rule ([`settle`]):
//!
//! - a record without a claim (written before claims, or by a writer that does not
//!   claim) is read as it is;
//! - an append counts only if all of its records sit at their claimed offsets, one
//!   after another, from `first` to `end`: nothing landed between the writer's check
//!   and its append, and the whole append landed;
//! - any other claimed record is ignored: a late writer's records land after the ones
//!   that took their place, and a half-landed append never completes (the next append
//!   takes the offsets it needed).
//!
//! The rule depends only on the records of the range, so every reader, whenever it
//! reads, keeps the same records, and a writer that folded the kept records before
//! `first` decided against exactly the state every reader rebuilds. An append still
//! being written at the end of the log is held (not read, not skipped) until it is
//! complete or overtaken.
//!
//! [`Claimed`] applies the rule to one topic's reads for readers that only want the
//! kept records (projectors, replay, verify, tail); the writer, which needs the
//! physical end too, uses [`settle`] directly.

use super::{EventLog, Membership, NewRecord, Record};
use crate::StorageError;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The claim header's name.
pub const CLAIM: &str = kurz_schemas::headers::CLAIM;

/// The most records one claimed append may hold; a claim over more is malformed.
pub const MAX_APPEND: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub offset: u64,
    pub first: u64,
    pub end: u64,
}

impl Claim {
    pub fn encode(&self) -> String {
        format!("{} {} {}", self.offset, self.first, self.end)
    }

    /// Strict: three decimal numbers with `first <= offset < end` and a bounded range.
    pub fn parse(v: &[u8]) -> Option<Claim> {
        let s = std::str::from_utf8(v).ok()?;
        let mut it =
            s.split(' ').map(|n| if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) { None } else { n.parse::<u64>().ok() });
        let (offset, first, end) = (it.next()??, it.next()??, it.next()??);
        if it.next().is_some() || !(first <= offset && offset < end) || end - first > MAX_APPEND {
            return None;
        }
        Some(Claim { offset, first, end })
    }
}

/// Marks `records` as one append claiming the offsets from `first` on.
pub fn claim(first: u64, records: Vec<NewRecord>) -> Vec<NewRecord> {
    let end = first + records.len() as u64;
    records.into_iter().enumerate().map(|(i, r)| r.header(CLAIM, Claim { offset: first + i as u64, first, end }.encode())).collect()
}

/// Why a record was not kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ignored {
    /// It did not land where it claimed: another record took its place.
    Misplaced { offset: u64, claimed: u64 },
    /// Its append did not land whole or in one piece.
    Broken { offset: u64, first: u64 },
    /// Its claim header does not parse.
    Malformed { offset: u64 },
}

/// What [`settle`] made of a run of records.
#[derive(Debug, Default)]
pub struct Settled {
    /// Indices into the input of the records to read, in order.
    pub kept: Vec<usize>,
    pub ignored: Vec<Ignored>,
    /// Where reading goes on: after the last record judged. An append cut off by the
    /// end of the input is not judged: `next` is its first offset.
    pub next: u64,
    /// The append the input ended inside, if any: `(first, end)`.
    pub open: Option<(u64, u64)>,
}

fn claim_of(r: &Record) -> Option<Result<Claim, ()>> {
    r.header(CLAIM).map(|v| Claim::parse(v).ok_or(()))
}

/// Judges `recs`, consecutive records of one partition in offset order, starting at
/// offset `from`, by the rule in the module docs.
pub fn settle(recs: &[Record], from: u64) -> Settled {
    let mut s = Settled { next: from, ..Settled::default() };
    let mut i = 0;
    while i < recs.len() {
        let r = &recs[i];
        let c = match claim_of(r) {
            None => {
                s.kept.push(i);
                s.next = r.offset + 1;
                i += 1;
                continue;
            }
            Some(Err(())) => {
                s.ignored.push(Ignored::Malformed { offset: r.offset });
                s.next = r.offset + 1;
                i += 1;
                continue;
            }
            Some(Ok(c)) => c,
        };
        if c.offset != r.offset || c.first != r.offset {
            s.ignored.push(if c.offset != r.offset {
                Ignored::Misplaced { offset: r.offset, claimed: c.offset }
            } else {
                Ignored::Broken { offset: r.offset, first: c.first }
            });
            s.next = r.offset + 1;
            i += 1;
            continue;
        }
        // An append starts here: it counts if its records follow, each where it claims.
        let len = (c.end - c.first) as usize;
        let mut j = 1;
        while j < len && i + j < recs.len() {
            let ok = matches!(claim_of(&recs[i + j]), Some(Ok(d)) if d.first == c.first && d.end == c.end && d.offset == recs[i + j].offset && d.offset == c.first + j as u64);
            if !ok {
                break;
            }
            j += 1;
        }
        if j == len {
            s.kept.extend(i..i + len);
            s.next = c.end;
            i += len;
        } else if i + j == recs.len() {
            // The input ends inside the append: more may come.
            s.open = Some((c.first, c.end));
            return s;
        } else {
            // Something else took one of its places: the append never completes.
            for r in &recs[i..i + j] {
                s.ignored.push(Ignored::Broken { offset: r.offset, first: c.first });
            }
            s.next = recs[i + j - 1].offset + 1;
            i += j;
        }
    }
    s
}

/// A read of the kept records: see [`read_settled`].
#[derive(Debug, Default)]
pub struct SettledRead {
    pub records: Vec<Record>,
    pub ignored: Vec<Ignored>,
    /// Where the next read starts.
    pub next: u64,
    /// The offset after the last record read from the log (kept, ignored or held).
    pub seen: u64,
}

/// Reads up to about `max` kept records from `from`, past ignored ones, and all of an
/// append that a read limit cut (an append is kept or not as a whole). An append still
/// being written at the end of the log is held: `next` stays at its first offset.
pub async fn read_settled(log: &dyn EventLog, topic: &str, p: u32, from: u64, max: usize) -> Result<SettledRead, StorageError> {
    let max = max.max(1);
    let mut out = SettledRead { next: from, seen: from, ..SettledRead::default() };
    let mut at = from;
    let mut want = max;
    loop {
        let recs = log.read(topic, p, at, want).await?;
        let full = recs.len() >= want;
        if let Some(last) = recs.last() {
            out.seen = out.seen.max(last.offset + 1);
        }
        let s = settle(&recs, at);
        out.ignored.extend(s.ignored);
        let mut recs: Vec<Option<Record>> = recs.into_iter().map(Some).collect();
        out.records.extend(s.kept.iter().filter_map(|&i| recs[i].take()));
        out.next = s.next;
        at = s.next;
        match s.open {
            // Read the whole cut append before judging it.
            Some((first, end)) if full => want = want.max((end - first) as usize),
            // The log ends inside it: held.
            Some(_) => return Ok(out),
            None if !full || out.records.len() >= max => return Ok(out),
            None => want = max,
        }
    }
}

/// Waits until `log` holds a record at or after `offset` that is kept, or `timeout`
/// passes; returns the end offset. Skipped records and an append still open do not
/// end the wait (a reader would find nothing to read).
pub async fn wait_kept(log: &dyn EventLog, topic: &str, p: u32, offset: u64, timeout: Duration) -> Result<u64, StorageError> {
    let deadline = Instant::now() + timeout;
    let mut at = offset;
    loop {
        let end = log.wait_for(topic, p, at, deadline.saturating_duration_since(Instant::now())).await?;
        if end <= at || Instant::now() >= deadline {
            return Ok(end);
        }
        let r = read_settled(log, topic, p, offset, 64).await?;
        if !r.records.is_empty() {
            return Ok(end);
        }
        at = r.seen.max(at + 1);
    }
}

/// An [`EventLog`] whose reads of `topic` return only the kept records (see the module
/// docs); `wait_for` on it waits for a record that is kept. Every other operation and
/// topic passes through.
pub struct Claimed {
    inner: Arc<dyn EventLog>,
    topic: &'static str,
}

impl Claimed {
    pub fn new(inner: Arc<dyn EventLog>, topic: &'static str) -> Claimed {
        Claimed { inner, topic }
    }

    /// `log`, reading kurz's events topic by the claims rule.
    pub fn events(log: Arc<dyn EventLog>) -> Arc<dyn EventLog> {
        Arc::new(Claimed::new(log, kurz_schemas::topics::EVENTS))
    }
}

#[async_trait]
impl EventLog for Claimed {
    async fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<u32, StorageError> {
        self.inner.ensure_topic(topic, partitions).await
    }
    async fn partitions(&self, topic: &str) -> Result<u32, StorageError> {
        self.inner.partitions(topic).await
    }
    async fn append(&self, topic: &str, partition: u32, records: Vec<NewRecord>) -> Result<Vec<u64>, StorageError> {
        self.inner.append(topic, partition, records).await
    }
    async fn append_at(&self, topic: &str, partition: u32, expected_end: u64, records: Vec<NewRecord>) -> Result<Vec<u64>, StorageError> {
        self.inner.append_at(topic, partition, expected_end, records).await
    }
    async fn read(&self, topic: &str, partition: u32, from: u64, max: usize) -> Result<Vec<Record>, StorageError> {
        if topic != self.topic {
            return self.inner.read(topic, partition, from, max).await;
        }
        let r = read_settled(&*self.inner, topic, partition, from, max).await?;
        for i in &r.ignored {
            tracing::warn!(event = "claimed_record_ignored", topic, partition, detail = ?i);
        }
        if !r.ignored.is_empty() {
            crate::metrics::get().claims_ignored.with_label_values(&[topic]).inc_by(r.ignored.len() as u64);
        }
        Ok(r.records)
    }
    async fn end_offset(&self, topic: &str, partition: u32) -> Result<u64, StorageError> {
        self.inner.end_offset(topic, partition).await
    }
    async fn wait_for(&self, topic: &str, partition: u32, offset: u64, timeout: Duration) -> Result<u64, StorageError> {
        if topic != self.topic {
            return self.inner.wait_for(topic, partition, offset, timeout).await;
        }
        wait_kept(&*self.inner, topic, partition, offset, timeout).await
    }
    async fn sync(&self, topic: &str) -> Result<(), StorageError> {
        self.inner.sync(topic).await
    }
    async fn commit(&self, group: &str, topic: &str, partition: u32, next_offset: u64) -> Result<(), StorageError> {
        self.inner.commit(group, topic, partition, next_offset).await
    }
    async fn committed(&self, group: &str, topic: &str, partition: u32) -> Result<Option<u64>, StorageError> {
        self.inner.committed(group, topic, partition).await
    }
    async fn join(&self, group: &str, topic: &str) -> Result<Membership, StorageError> {
        self.inner.join(group, topic).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kurz_schemas::Ts;

    fn rec(offset: u64, claim: Option<&str>) -> Record {
        let mut headers = Vec::new();
        if let Some(c) = claim {
            headers.push((CLAIM.to_string(), c.as_bytes().to_vec()));
        }
        Record { partition: 0, offset, timestamp: Ts(0), key: "k".into(), headers, payload: vec![] }
    }

    fn kept(recs: &[Record], from: u64) -> (Vec<u64>, u64, Option<(u64, u64)>) {
        let s = settle(recs, from);
        (s.kept.iter().map(|&i| recs[i].offset).collect(), s.next, s.open)
    }

    #[test]
    fn appends_at_their_claims_are_kept_and_unclaimed_records_pass() {
        let recs = [rec(0, None), rec(1, Some("1 1 3")), rec(2, Some("2 1 3")), rec(3, Some("3 3 4"))];
        assert_eq!(kept(&recs, 0), (vec![0, 1, 2, 3], 4, None));
    }

    #[test]
    fn a_late_append_that_lands_after_another_is_ignored() {
        // Two writers both claimed offsets 5..7; the second landed at 7..9.
        let recs = [rec(5, Some("5 5 7")), rec(6, Some("6 5 7")), rec(7, Some("5 5 7")), rec(8, Some("6 5 7"))];
        let s = settle(&recs, 5);
        assert_eq!(s.kept, vec![0, 1]);
        assert_eq!(s.next, 9);
        assert_eq!(s.ignored, vec![Ignored::Misplaced { offset: 7, claimed: 5 }, Ignored::Misplaced { offset: 8, claimed: 6 }]);
    }

    #[test]
    fn a_half_landed_append_overtaken_by_the_next_is_ignored_whole() {
        // An append of three claimed 0..3; one record landed, then the writer's next
        // append claimed 1..2.
        let recs = [rec(0, Some("0 0 3")), rec(1, Some("1 1 2"))];
        let s = settle(&recs, 0);
        assert_eq!(s.kept, vec![1]);
        assert_eq!(s.ignored, vec![Ignored::Broken { offset: 0, first: 0 }]);
        assert_eq!(s.next, 2);
        // A foreign record inside an append breaks it too.
        let recs = [rec(0, Some("0 0 3")), rec(1, None), rec(2, Some("1 0 3"))];
        let (k, next, open) = kept(&recs, 0);
        assert_eq!((k, next, open), (vec![1], 3, None));
    }

    #[test]
    fn an_append_cut_by_the_end_of_the_input_is_held() {
        let recs = [rec(0, None), rec(1, Some("1 1 4")), rec(2, Some("2 1 4"))];
        assert_eq!(kept(&recs, 0), (vec![0], 1, Some((1, 4))));
    }

    #[test]
    fn claims_parse_strictly() {
        assert_eq!(Claim::parse(b"3 1 4"), Some(Claim { offset: 3, first: 1, end: 4 }));
        for bad in ["", "1 1", "1 1 2 3", "4 1 4", "0 1 4", "+1 1 2", "1  1 2", "a b c", "0 0 99999999999"] {
            assert_eq!(Claim::parse(bad.as_bytes()), None, "{bad}");
        }
        let recs = [rec(0, Some("zero")), rec(1, None)];
        let s = settle(&recs, 0);
        assert_eq!((s.kept, s.ignored), (vec![1], vec![Ignored::Malformed { offset: 0 }]));
    }

    #[test]
    fn claim_marks_each_record_of_an_append() {
        let rs = claim(7, vec![NewRecord::new("a", vec![]), NewRecord::new("b", vec![])]);
        let got: Vec<&[u8]> = rs.iter().map(|r| r.headers.iter().find(|(k, _)| k == CLAIM).unwrap().1.as_slice()).collect();
        assert_eq!(got, vec![&b"7 7 9"[..], &b"8 7 9"[..]]);
    }
}
