//! The batch format (see the module docs of `super`): encoding on append, decoding on read.

use crate::log::{NewRecord, Record};
use crate::StorageError;
use kurz_schemas::Ts;

pub(super) const MAGIC: [u8; 4] = *b"KZB1";
pub(super) const HEADER: usize = 12;

pub(super) fn encode_batch(buf: &mut Vec<u8>, ts: Ts, first: u64, records: &[NewRecord]) {
    let start = buf.len();
    buf.extend_from_slice(&MAGIC);
    buf.extend_from_slice(&[0u8; 8]); // body length and checksum, filled in below
    buf.extend_from_slice(&first.to_le_bytes());
    buf.extend_from_slice(&(records.len() as u32).to_le_bytes());
    for r in records {
        let at = buf.len();
        buf.extend_from_slice(&0u32.to_le_bytes());
        encode_record(buf, ts, r);
        let len = (buf.len() - at - 4) as u32;
        buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
    }
    let body = start + HEADER;
    let len = (buf.len() - body) as u32;
    let crc = crc32fast::hash(&buf[body..]);
    buf[start + 4..start + 8].copy_from_slice(&len.to_le_bytes());
    buf[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
}

pub(super) fn encode_record(buf: &mut Vec<u8>, ts: Ts, r: &NewRecord) {
    buf.extend_from_slice(&ts.0.to_le_bytes());
    buf.extend_from_slice(&(r.key.len() as u32).to_le_bytes());
    buf.extend_from_slice(r.key.as_bytes());
    buf.extend_from_slice(&(r.headers.len() as u16).to_le_bytes());
    for (k, v) in &r.headers {
        buf.extend_from_slice(&(k.len() as u16).to_le_bytes());
        buf.extend_from_slice(k.as_bytes());
        buf.extend_from_slice(&(v.len() as u32).to_le_bytes());
        buf.extend_from_slice(v);
    }
    buf.extend_from_slice(&r.payload);
}

/// The records of one batch body with offsets in `from..=last`.
pub(super) fn decode_body(partition: u32, body: &[u8], from: u64, last: u64, out: &mut Vec<Record>) -> Result<(), StorageError> {
    let corrupt = || StorageError::Corrupt(format!("batch in partition {partition}"));
    let first = u64::from_le_bytes(body.get(..8).ok_or_else(corrupt)?.try_into().map_err(|_| corrupt())?);
    let n = u32::from_le_bytes(body.get(8..12).ok_or_else(corrupt)?.try_into().map_err(|_| corrupt())?) as u64;
    let mut at = 12usize;
    for i in 0..n {
        // A corrupt header can name any first offset: past u64::MAX is corrupt, not a
        // panic (found by the log_recovery fuzz target).
        let offset = first.checked_add(i).ok_or_else(corrupt)?;
        if offset > last {
            break;
        }
        let len = u32::from_le_bytes(body.get(at..at + 4).ok_or_else(corrupt)?.try_into().map_err(|_| corrupt())?) as usize;
        let rec = body.get(at + 4..at + 4 + len).ok_or_else(corrupt)?;
        at += 4 + len;
        if offset >= from {
            out.push(decode_record(partition, offset, rec)?);
        }
    }
    Ok(())
}

pub(super) fn decode_record(partition: u32, offset: u64, b: &[u8]) -> Result<Record, StorageError> {
    let corrupt = || StorageError::Corrupt(format!("record {partition}/{offset}"));
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&[u8], StorageError> {
        let s = b.get(at..at + n).ok_or_else(corrupt)?;
        at += n;
        Ok(s)
    };
    let ts = i64::from_le_bytes(take(8)?.try_into().map_err(|_| corrupt())?);
    let klen = u32::from_le_bytes(take(4)?.try_into().map_err(|_| corrupt())?) as usize;
    let key = String::from_utf8(take(klen)?.to_vec()).map_err(|_| corrupt())?;
    let nh = u16::from_le_bytes(take(2)?.try_into().map_err(|_| corrupt())?) as usize;
    let mut headers = Vec::with_capacity(nh);
    for _ in 0..nh {
        let kl = u16::from_le_bytes(take(2)?.try_into().map_err(|_| corrupt())?) as usize;
        let k = String::from_utf8(take(kl)?.to_vec()).map_err(|_| corrupt())?;
        let vl = u32::from_le_bytes(take(4)?.try_into().map_err(|_| corrupt())?) as usize;
        headers.push((k, take(vl)?.to_vec()));
    }
    let payload = b.get(at..).ok_or_else(corrupt)?.to_vec();
    Ok(Record { partition, offset, timestamp: Ts(ts), key, headers, payload })
}
