//! Row timestamps for the CQL double: Cassandra and Scylla keep, for every row, the
//! write with the highest timestamp (the client's default timestamp, or `USING
//! TIMESTAMP`), whatever order writes arrive in, and a delete leaves a tombstone that
//! shadows writes with lower timestamps (a tie goes to the tombstone). kassandra applies
//! writes in arrival order and ignores timestamps, so this layer decides, per prepared
//! `INSERT`/`DELETE` of a keyspace-qualified table, whether a write is newer than the
//! row's last one and drops it (answering as if applied, as a real node does) if not.
//!
//! The double's inserts replace whole rows, so one timestamp per row is the cell-level
//! rule for statements that write every column, which is how kurz writes. A `DELETE`
//! must name the row's whole primary key: a range or partition delete is refused at
//! prepare, since the double could not order it. Writes without a timestamp get the
//! node's clock, as on a server.

use kassandra::cql::parser;
use kassandra::cql::query::{QueryString, QueryValue};
use kassandra::cql::value::CqlValue;
use kassandra::error::DbError;
use kassandra::frame::request::execute::Execute;
use kassandra::frame::request::query::Query;
use kassandra::frame::request::QueryParameters;
use kassandra::frame::response::error::Error as CqlError;
use kassandra::frame::response::result::QueryResult;
use kassandra::frame::value::FrameValue;
use kassandra::KassandraSession;
use std::collections::HashMap;

/// A prepared write whose rows are ordered by timestamp.
#[derive(Debug, Clone)]
struct Write {
    table: String,
    /// Bind markers holding the row's primary key, in key order.
    key_binds: Vec<usize>,
    delete: bool,
}

/// The key of one row: its table and the bytes of its primary-key values.
type RowKey = (String, Vec<Option<Vec<u8>>>);

/// What the double knows about row timestamps.
#[derive(Default)]
pub(super) struct Clocks {
    writes: HashMap<u128, Write>,
    rows: HashMap<RowKey, Stamp>,
}

/// The last write of a row: its timestamp and whether it was a delete.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stamp {
    at: i64,
    tombstone: bool,
}

impl Stamp {
    /// Whether `self` (arriving now) wins over the row's last write `last`.
    fn beats(self, last: Stamp) -> bool {
        self.at > last.at || (self.at == last.at && self.tombstone && !last.tombstone)
    }
}

/// A write that won its row: record it once the node has applied it.
pub(super) struct Pending {
    row: RowKey,
    stamp: Stamp,
}

fn invalid(msg: impl Into<String>) -> CqlError {
    CqlError::new(DbError::Invalid, msg.into())
}

fn now_micros() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// The primary-key columns of `ks.table` (partition key, then clustering), read from
/// the node's `system_schema`. kassandra's positions do not follow the key's declared
/// order, but they are the same for every statement of a table, which is all a row key
/// needs.
fn primary_key(node: &mut KassandraSession, ks: &str, table: &str) -> Result<Vec<String>, CqlError> {
    // kassandra's system tables answer a WHERE with no rows: every column is read.
    let text = "SELECT keyspace_name, table_name, column_name, kind, position FROM system_schema.columns";
    let query = parser::query(text).map_err(|_| invalid(format!("the double could not parse `{text}`")))?;
    let rows = match node.process(Query { query, raw_query: "", parameters: QueryParameters::default() })? {
        QueryResult::Rows(r) => r.rows,
        other => return Err(invalid(format!("system_schema.columns answered {other:?}"))),
    };
    let mut partition = Vec::new();
    let mut clustering = Vec::new();
    for row in rows {
        let text = |i: usize| match row.columns.get(i) {
            Some(Some(CqlValue::Text(s))) => Some(s.clone()),
            _ => None,
        };
        let position = match row.columns.get(4) {
            Some(Some(CqlValue::Int(p))) => *p,
            _ => -1,
        };
        if text(0).as_deref() != Some(ks) || text(1).as_deref() != Some(table) {
            continue;
        }
        let (Some(column), Some(kind)) = (text(2), text(3)) else { continue };
        match kind.as_str() {
            "partition_key" => partition.push((position, column)),
            "clustering" => clustering.push((position, column)),
            _ => {}
        }
    }
    if partition.is_empty() {
        return Err(invalid(format!("the double found no primary key for {ks}.{table}")));
    }
    partition.sort();
    clustering.sort();
    Ok(partition.into_iter().chain(clustering).map(|(_, c)| c).collect())
}

/// [`primary_key`], or `None` where the node lost the table's `system_schema` rows: two
/// concurrent schema changes can leave a table that exists without them (see
/// `migrate_and_prepare` in the storage crate). Such a table's writes stay unordered,
/// as before this layer existed.
fn known_key(node: &mut KassandraSession, ks: &str, table: &str) -> Option<Vec<String>> {
    primary_key(node, ks, table).ok()
}

impl Clocks {
    /// Learns a statement kassandra just prepared under `id`. Writes of a qualified
    /// table are ordered from now on; a delete of less than one whole row is refused.
    pub(super) fn prepared(&mut self, node: &mut KassandraSession, query: &QueryString, id: u128) -> Result<(), CqlError> {
        let write = match query {
            QueryString::Insert(q) => {
                let Some(ks) = q.keyspace.as_deref() else { return Ok(()) };
                let Some(key) = known_key(node, ks, &q.table) else { return Ok(()) };
                let bound: Vec<&String> =
                    q.columns.iter().zip(&q.values).filter(|(_, v)| matches!(v, QueryValue::Blankslate)).map(|(c, _)| c).collect();
                let key_binds = key
                    .iter()
                    .map(|k| {
                        bound.iter().position(|c| *c == k).ok_or_else(|| invalid(format!("{ks}.{}: key column {k} is not bound", q.table)))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Write { table: format!("{ks}.{}", q.table), key_binds, delete: false }
            }
            QueryString::Delete(q) => {
                let Some(ks) = q.keyspace.as_deref() else { return Ok(()) };
                let Some(key) = known_key(node, ks, &q.table) else { return Ok(()) };
                let named: Vec<&String> = q.r#where.statements.iter().map(|(c, _)| c).collect();
                let all_bound = q.r#where.statements.iter().all(|(_, v)| matches!(v, QueryValue::Blankslate));
                if q.columns.is_empty() && all_bound && named.len() > key.len() && key.iter().all(|k| named.contains(&k)) {
                    // More columns named than the key read: concurrent schema changes
                    // lost some of the table's key rows (see `known_key`), so the key
                    // is not known and this table's writes stay unordered.
                    return Ok(());
                }
                if !q.columns.is_empty() || named.len() != key.len() || !all_bound {
                    return Err(invalid(format!(
                        "{ks}.{}: the double orders deletes of one whole row by bound key only (`WHERE {} = ?`)",
                        q.table,
                        key.join(" = ? AND ")
                    )));
                }
                let key_binds = key
                    .iter()
                    .map(|k| {
                        named.iter().position(|c| *c == k).ok_or_else(|| invalid(format!("{ks}.{}: key column {k} is not named", q.table)))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Write { table: format!("{ks}.{}", q.table), key_binds, delete: true }
            }
            _ => return Ok(()),
        };
        self.writes.insert(id, write);
        Ok(())
    }

    /// Whether an execution is an ordered write: `None` if not (run it as is),
    /// `Some(None)` if it loses to the row's last write (drop it), `Some(Some(p))` if it
    /// wins (run it, then [`Clocks::record`] `p`).
    pub(super) fn check(&self, e: &Execute<'_>) -> Option<Option<Pending>> {
        let id = u128::from_be_bytes(e.id.try_into().ok()?);
        let write = self.writes.get(&id)?;
        let values = &e.parameters.data;
        let key = write
            .key_binds
            .iter()
            .map(|&i| match values.get(i) {
                Some(FrameValue::Some(b)) => Some(b.to_vec()),
                _ => None,
            })
            .collect();
        let row = (write.table.clone(), key);
        let stamp = Stamp { at: e.parameters.default_timestamp.unwrap_or_else(now_micros), tombstone: write.delete };
        match self.rows.get(&row) {
            Some(last) if !stamp.beats(*last) => Some(None),
            _ => Some(Some(Pending { row, stamp })),
        }
    }

    pub(super) fn record(&mut self, p: Pending) {
        self.rows.insert(p.row, p.stamp);
    }
}

#[cfg(test)]
mod tests {
    use super::Stamp;
    use kassandra::cql::parser;
    use kassandra::frame::request::query::Query;
    use kassandra::frame::request::QueryParameters;
    use kassandra::KassandraSession;

    #[test]
    fn a_primary_key_is_read_from_the_schema_partition_key_first() {
        let sorted = |mut v: Vec<String>| {
            v.sort();
            v
        };
        let mut node = KassandraSession::new();
        for t in [
            "CREATE KEYSPACE IF NOT EXISTS ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
            "CREATE TABLE IF NOT EXISTS ks.t (c bigint, b text, a bigint, PRIMARY KEY ((a, c), b))",
            "CREATE TABLE IF NOT EXISTS ks.u (a bigint PRIMARY KEY, b text)",
        ] {
            node.process(Query { query: parser::query(t).unwrap(), raw_query: "", parameters: QueryParameters::default() }).unwrap();
        }
        let t = super::primary_key(&mut node, "ks", "t").unwrap();
        assert_eq!(t[2], "b", "clustering after the partition key: {t:?}");
        assert_eq!(sorted(t), ["a", "b", "c"]);
        assert_eq!(super::primary_key(&mut node, "ks", "u").unwrap(), ["a"]);
        assert!(super::primary_key(&mut node, "ks", "v").is_err());
    }

    #[test]
    fn the_higher_timestamp_wins_and_a_tie_goes_to_the_tombstone() {
        let put = |at| Stamp { at, tombstone: false };
        let del = |at| Stamp { at, tombstone: true };
        assert!(put(2).beats(put(1)));
        assert!(!put(1).beats(put(2)));
        assert!(!put(1).beats(put(1)));
        assert!(del(1).beats(put(1)));
        assert!(!put(1).beats(del(1)));
        assert!(!put(1).beats(del(2)));
        assert!(put(3).beats(del(2)));
    }
}
