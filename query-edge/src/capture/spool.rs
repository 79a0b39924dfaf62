//! The click spool: where clicks wait while the log cannot take them.
//!
//! When an append of a batch of clicks fails, the clicks it did not place go to a
//! segment file in `<data dir>/click-spool/` (one record per line: key, tab, the click's
//! id in 16 hex digits, tab, the click's JSON; segments of older builds have no id)
//! instead of being lost, and the flusher goes on taking new clicks. Once an
//! append succeeds again, the flusher moves the spooled segments into the log, oldest
//! first, deleting each after its append (or rewriting it with what is left, when only
//! some of its partitions took their clicks). The spool is bounded (`KURZ_CLICK_SPOOL_MB`);
//! a batch that does not fit is dropped and counted. A segment is written and synced
//! whole before it counts as spooled, so a crash loses at most the batch being written;
//! a crash between a segment's append and its deletion appends it again on restart.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    bytes: u64,
    next_seq: u64,
}

/// One spooled record: the partition key, the click's id (the `click-id` header its
/// first append carried, so the projector can tell a copy that reached the log after
/// all from a new click) and the encoded click.
pub type Spooled = (String, u64, Vec<u8>);

impl Spool {
    /// Opens (creating) the spool directory and counts what an earlier run left there.
    pub fn open(dir: &Path, max_bytes: u64) -> std::io::Result<Spool> {
        std::fs::create_dir_all(dir)?;
        let mut s = Spool { dir: dir.to_path_buf(), max_bytes, bytes: 0, next_seq: 0 };
        for (seq, path) in s.segments()? {
            s.bytes += std::fs::metadata(&path)?.len();
            s.next_seq = s.next_seq.max(seq + 1);
        }
        Ok(s)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// Segment files, oldest first.
    fn segments(&self) -> std::io::Result<Vec<(u64, PathBuf)>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.dir)? {
            let path = e?.path();
            let seq = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("segment-"))
                .and_then(|n| n.strip_suffix(".spool"))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(seq) = seq {
                out.push((seq, path));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Writes `records` as one segment. `Ok(false)`: it does not fit, nothing written.
    pub fn push(&mut self, records: &[Spooled]) -> std::io::Result<bool> {
        let buf = encode(records);
        if self.bytes + buf.len() as u64 > self.max_bytes {
            return Ok(false);
        }
        let path = self.dir.join(format!("segment-{}.spool", self.next_seq));
        write_atomically(&path, &buf)?;
        self.next_seq += 1;
        self.bytes += buf.len() as u64;
        Ok(true)
    }

    /// Rewrites the segment at `path` to hold only `records`, keeping its place in the
    /// order: for a segment that part of reached the log.
    pub fn replace(&mut self, path: &Path, records: &[Spooled]) -> std::io::Result<()> {
        let old = std::fs::metadata(path)?.len();
        let buf = encode(records);
        write_atomically(path, &buf)?;
        self.bytes = self.bytes.saturating_sub(old) + buf.len() as u64;
        Ok(())
    }

    /// The oldest segment's records, with its path for [`Spool::remove`].
    pub fn oldest(&self) -> std::io::Result<Option<(PathBuf, Vec<Spooled>)>> {
        let Some((_, path)) = self.segments()?.into_iter().next() else { return Ok(None) };
        let mut records = Vec::new();
        for line in std::io::BufReader::new(std::fs::File::open(&path)?).lines() {
            let line = line?;
            let mut fields = line.splitn(3, '\t');
            match (fields.next(), fields.next(), fields.next()) {
                (Some(key), Some(id), Some(payload)) if id.len() == 16 => {
                    let Ok(id) = u64::from_str_radix(id, 16) else { continue };
                    records.push((key.to_string(), id, payload.as_bytes().to_vec()));
                }
                // A segment an older build wrote: no id; the click gets a new one.
                (Some(key), Some(payload), None) => records.push((key.to_string(), rand::random(), payload.as_bytes().to_vec())),
                _ => {}
            }
        }
        Ok(Some((path, records)))
    }

    pub fn remove(&mut self, path: &Path) -> std::io::Result<()> {
        let len = std::fs::metadata(path)?.len();
        std::fs::remove_file(path)?;
        self.bytes = self.bytes.saturating_sub(len);
        Ok(())
    }
}

fn encode(records: &[Spooled]) -> Vec<u8> {
    let mut buf = Vec::new();
    for (key, id, payload) in records {
        // Keys are short codes and payloads compact JSON: neither holds a tab or a
        // newline, but never let one through unescaped.
        if key.contains(['\t', '\n']) || payload.contains(&b'\n') {
            continue;
        }
        buf.extend_from_slice(key.as_bytes());
        buf.push(b'\t');
        buf.extend_from_slice(format!("{id:016x}").as_bytes());
        buf.push(b'\t');
        buf.extend_from_slice(payload);
        buf.push(b'\n');
    }
    buf
}

/// Writes `path` whole or not at all: a temporary file, fsynced, renamed over it.
fn write_atomically(path: &Path, buf: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(buf)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_come_back_oldest_first_survive_reopening_and_respect_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 200).unwrap();
        assert!(s.is_empty() && s.oldest().unwrap().is_none());
        assert!(s
            .push(&[("abc".into(), 1, br#"{"v":2,"n":1}"#.to_vec()), ("xyz".into(), u64::MAX, br#"{"v":2,"n":2}"#.to_vec())])
            .unwrap());
        assert!(s.push(&[("abc".into(), 3, br#"{"v":2,"n":3}"#.to_vec())]).unwrap());
        let used = s.bytes();
        assert!(!s.push(&[("big".into(), 4, vec![b'x'; 300])]).unwrap(), "over the bound: refused");
        assert_eq!(s.bytes(), used);

        // A restarted process finds both segments, in order.
        let mut s = Spool::open(dir.path(), 200).unwrap();
        assert_eq!(s.bytes(), used);
        let (first, recs) = s.oldest().unwrap().unwrap();
        assert_eq!(
            recs,
            vec![("abc".to_string(), 1, br#"{"v":2,"n":1}"#.to_vec()), ("xyz".to_string(), u64::MAX, br#"{"v":2,"n":2}"#.to_vec())]
        );
        s.remove(&first).unwrap();
        let (second, recs) = s.oldest().unwrap().unwrap();
        assert_eq!(recs.len(), 1);
        // A segment rewritten with what is left of it stays the oldest, and the byte
        // count follows it.
        s.replace(&second, &[]).unwrap();
        assert_eq!(s.oldest().unwrap().unwrap(), (second.clone(), vec![]));
        assert_eq!(s.bytes(), 0);
        s.remove(&second).unwrap();
        assert!(s.is_empty() && s.oldest().unwrap().is_none());
        // New segments keep counting up after a reopen.
        assert!(s.push(&[("k".into(), 5, b"{}".to_vec())]).unwrap());
        assert!(s.oldest().unwrap().unwrap().0.to_str().unwrap().ends_with("segment-2.spool"));
    }

    #[test]
    fn a_segment_from_before_click_ids_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("segment-0.spool"), "abc\t{\"v\":2}\nbad line\nxyz\t00000000000000ff\t{\"v\":2}\n").unwrap();
        let s = Spool::open(dir.path(), 1 << 20).unwrap();
        let (_, recs) = s.oldest().unwrap().unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!((recs[0].0.as_str(), recs[0].2.as_slice()), ("abc", &br#"{"v":2}"#[..]));
        assert_eq!(recs[1], ("xyz".to_string(), 255, br#"{"v":2}"#.to_vec()));
    }
}
