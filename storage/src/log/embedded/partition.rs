//! One partition file: recovery on open, what readers may see, and reads.

use super::batch::{decode_body, HEADER, MAGIC};
use crate::log::Record;
use crate::StorageError;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, RwLock};
use tokio::sync::watch;

/// A sparse index entry every this many bytes of a partition file.
pub(super) const INDEX_EVERY: u64 = 64 << 10;
/// How far back from a file's end batches are checksummed on open: past the last
/// group commits, where a crash can leave a torn write. Older batches were fsynced
/// before anything after them was acknowledged.
pub(super) const VERIFY_TAIL: u64 = 16 << 20;
/// How much a read fetches per `pread`.
pub(super) const READ_CHUNK: usize = 256 << 10;

/// One partition's file and what readers may see of it.
pub(super) struct Partition {
    pub(super) file: File,
    pub(super) path: PathBuf,
    /// Set when an fsync of the file failed: the kernel may have dropped the pages it
    /// could not write and a later fsync would succeed without them, so nothing more
    /// is appended or published until the process restarts and recovers the file.
    pub(super) failed: OnceLock<String>,
    /// End offset, published after the fsync that made records durable.
    pub(super) end: watch::Sender<u64>,
    /// Published file length and sparse index `(first_offset, position)` of batches.
    pub(super) visible: RwLock<Visible>,
    /// What has been written, synced or not: where the next batch goes.
    pub(super) tail: Mutex<Tail>,
}

/// The written end of a partition file. Ahead of [`Visible`] only in a deferred-sync
/// topic, by the batches written since the last sync.
pub(super) struct Tail {
    pub(super) len: u64,
    pub(super) next: u64,
    /// `(first_offset, position)` of the batches written but not yet synced.
    pub(super) unsynced: Vec<(u64, u64)>,
}

impl Partition {
    /// Syncs the file's data; a failure stops the partition for good ([`Self::failed`]).
    pub(super) fn sync(&self) -> Result<(), StorageError> {
        if let Some(why) = self.failed.get() {
            return Err(stopped_error(&self.path, why));
        }
        sync_data(&self.file, &self.path).map_err(|e| {
            let why = e.to_string();
            tracing::error!(event = "log_partition_stopped", path = %self.path.display(), error = %why, "an fsync failed; appends stop until a restart recovers the file");
            let _ = self.failed.set(why.clone());
            stopped_error(&self.path, &why)
        })
    }

    /// Publishes what was written up to `len`/`next`, with its batches, to readers.
    /// Never moves backwards (a sync that raced a later one publishes nothing new).
    pub(super) fn publish(&self, batches: &[(u64, u64)], len: u64, next: u64) {
        {
            let mut v = self.visible.write().expect("index poisoned");
            if len <= v.len {
                return;
            }
            let from = v.len;
            for &(first, at) in batches.iter().filter(|&&(_, at)| at >= from) {
                v.add(first, at);
            }
            v.len = len;
        }
        self.end.send_if_modified(|end| {
            let moved = next > *end;
            *end = (*end).max(next);
            moved
        });
    }
}

#[derive(Default)]
pub(super) struct Visible {
    pub(super) len: u64,
    pub(super) index: Vec<(u64, u64)>,
}

impl Visible {
    pub(super) fn add(&mut self, first: u64, pos: u64) {
        if self.index.last().is_none_or(|&(_, p)| pos >= p + INDEX_EVERY) {
            self.index.push((first, pos));
        }
    }
    /// Where to start reading for `offset`: the last indexed batch at or before it.
    pub(super) fn start(&self, offset: u64) -> u64 {
        match self.index.partition_point(|&(first, _)| first <= offset) {
            0 => 0,
            i => self.index[i - 1].1,
        }
    }
}

pub(super) fn stopped_error(path: &Path, why: &str) -> StorageError {
    StorageError::Engine(format!(
        "log partition {} stopped after a failed fsync ({why}); restart the process to recover it",
        path.display()
    ))
}

/// `fdatasync`, with a fault hook for tests ([`fail_next_sync`]).
pub(super) fn sync_data(file: &File, path: &Path) -> std::io::Result<()> {
    #[cfg(test)]
    if failpoint::take(path) {
        return Err(std::io::Error::other("injected fsync failure"));
    }
    let _ = path;
    file.sync_data()
}

/// Makes a directory's entries (files created or renamed in it) durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` and any missing parents, syncing each parent whose entries changed.
pub fn create_dir_durable(dir: &Path) -> std::io::Result<()> {
    if dir.exists() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_durable(parent)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Opens (creating) a partition file and recovers it: walks its batches, truncates a
/// torn or corrupt tail, and builds the sparse index. What it recovers is synced before
/// anyone reads it: a process killed after writing a batch but before its fsync left
/// the batch in the page cache only, and readers must not see what a power failure
/// could still take back. A new file's directory entry is synced too.
pub(super) fn open_partition(path: &Path) -> Result<Partition, StorageError> {
    if let Some(dir) = path.parent() {
        create_dir_durable(dir)?;
    }
    let existed = path.exists();
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
    if !existed {
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
    }
    let file_len = file.metadata()?.len();
    let mut visible = Visible::default();
    let (mut pos, mut end) = (0u64, 0u64);
    let mut header = [0u8; HEADER + 12];
    while pos + (HEADER + 12) as u64 <= file_len {
        file.read_exact_at(&mut header, pos)?;
        let len = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes")) as u64;
        if header[..4] != MAGIC || len < 12 || pos + HEADER as u64 + len > file_len {
            break;
        }
        let first = u64::from_le_bytes(header[12..20].try_into().expect("8 bytes"));
        let count = u32::from_le_bytes(header[20..24].try_into().expect("4 bytes")) as u64;
        if first != end {
            break;
        }
        if pos + VERIFY_TAIL >= file_len {
            let mut body = vec![0u8; len as usize];
            file.read_exact_at(&mut body, pos + HEADER as u64)?;
            if crc32fast::hash(&body) != u32::from_le_bytes(header[8..12].try_into().expect("4 bytes")) {
                break;
            }
        }
        visible.add(first, pos);
        end = first + count;
        pos += HEADER as u64 + len;
    }
    if pos < file_len {
        tracing::warn!(event = "log_tail_truncated", path = %path.display(), kept = pos, dropped = file_len - pos, "a torn or corrupt tail (never acknowledged) was cut off");
        file.set_len(pos)?;
    }
    if pos > 0 || pos < file_len {
        sync_data(&file, path)?;
    }
    visible.len = pos;
    let tail = Tail { len: pos, next: end, unsynced: Vec::new() };
    Ok(Partition {
        file,
        path: path.to_path_buf(),
        failed: OnceLock::new(),
        end: watch::Sender::new(end),
        visible: RwLock::new(visible),
        tail: Mutex::new(tail),
    })
}

/// Reads the records in `from..=last` of a partition, below its published length.
pub(super) fn read_partition(part: &Partition, partition: u32, from: u64, last: u64) -> Result<Vec<Record>, StorageError> {
    let (mut pos, len) = {
        let v = part.visible.read().expect("index poisoned");
        (v.start(from), v.len)
    };
    let mut out = Vec::with_capacity((last - from + 1).min(65_536) as usize);
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_at = pos; // file position of buf[0]
    while pos < len && out.last().is_none_or(|r: &Record| r.offset < last) {
        // Make sure the batch header and body at `pos` are in the buffer.
        let need_header = (pos - buf_at) as usize + HEADER;
        if buf.len() < need_header {
            buf_at = pos;
            buf.resize(READ_CHUNK.min((len - pos) as usize).max(HEADER), 0);
            part.file.read_exact_at(&mut buf, pos)?;
        }
        let off = (pos - buf_at) as usize;
        if buf[off..off + 4] != MAGIC {
            return Err(StorageError::Corrupt(format!("partition {partition}: no batch at byte {pos}")));
        }
        let body_len = u32::from_le_bytes(buf[off + 4..off + 8].try_into().expect("4 bytes")) as usize;
        if buf.len() < off + HEADER + body_len {
            buf_at = pos;
            buf.resize((HEADER + body_len).max(READ_CHUNK.min((len - pos) as usize)), 0);
            part.file.read_exact_at(&mut buf, pos)?;
        }
        let off = (pos - buf_at) as usize;
        let body = &buf[off + HEADER..off + HEADER + body_len];
        let first = u64::from_le_bytes(body[..8].try_into().expect("8 bytes"));
        let count = u64::from(u32::from_le_bytes(body[8..12].try_into().expect("4 bytes")));
        if first > last {
            break;
        }
        if first + count > from {
            decode_body(partition, body, from, last, &mut out)?;
        }
        pos += (HEADER + body_len) as u64;
    }
    Ok(out)
}

#[cfg(test)]
pub(super) mod failpoint {
    use std::collections::HashSet;
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    static FAIL: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);

    /// The next sync of the file at `path` fails.
    pub fn fail_next_sync(path: &Path) {
        FAIL.lock().unwrap().get_or_insert_with(HashSet::new).insert(path.to_path_buf());
    }

    pub(super) fn take(path: &Path) -> bool {
        FAIL.lock().unwrap().as_mut().is_some_and(|s| s.remove(path))
    }
}
