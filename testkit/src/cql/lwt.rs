//! Lightweight transactions for the CQL double: kassandra parses `IF` clauses and
//! ignores them (and has no `UPDATE`), so the node behind [`super::start_node`] runs
//! the conditional statements the Scylla adapter prepares itself, as Scylla would: the
//! condition is read and the write applied under the node's one lock (what Paxos gives
//! a real cluster for one partition), and the answer is a row whose first column is
//! `[applied]`.
//!
//! Two shapes, the ones kurz uses (anything else with `IF` is refused at prepare):
//! - `INSERT INTO ks.t (c, …) VALUES (?, …) IF NOT EXISTS`: applied if no row has
//!   the statement's primary key;
//! - `UPDATE ks.t SET c = ?, … WHERE k = ? AND … IF x = ? AND y <= ? …`: applied if
//!   the row exists and every condition holds; conditions compare `int` or `bigint`
//!   columns with `=`, `<`, `<=`, `>`, `>=`. The `SET` must name every regular column
//!   (the double's insert replaces the row).

use kassandra::cql::column::ColumnType;
use kassandra::cql::parser;
use kassandra::cql::query::QueryString;
use kassandra::cql::value::CqlValue;
use kassandra::error::DbError;
use kassandra::frame::request::execute::Execute;
use kassandra::frame::request::query::Query;
use kassandra::frame::response::error::Error as CqlError;
use kassandra::frame::response::result::{ColumnSpec, Prepared, QueryResult, ResultMetadata, Row, Rows, TableSpec};
use kassandra::frame::value::FrameValue;
use kassandra::KassandraSession;
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone)]
enum Condition {
    NotExists,
    /// Column name and operator, one per trailing bind marker.
    Compare(Vec<(String, Op)>),
}

/// A conditional statement, split into what the double can run.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    write: QueryString,
    read: QueryString,
    /// Bind markers of the write (the first ones of the statement); the rest are the
    /// conditions'.
    write_binds: usize,
    /// Which of the write's bind markers key the row, in the read's order.
    key_binds: Vec<usize>,
    condition: Condition,
    spec: TableSpec,
}

/// The conditional statements prepared so far, by the id handed to the client.
#[derive(Default)]
pub(super) struct Plans {
    by_id: HashMap<u128, Plan>,
    next: u128,
}

fn invalid(msg: impl Into<String>) -> CqlError {
    CqlError::new(DbError::Invalid, msg.into())
}

fn syntax(msg: impl Into<String>) -> CqlError {
    CqlError::new(DbError::SyntaxError, msg.into())
}

/// Whether `text` is a conditional statement (these are prepared by [`prepare`]).
pub(super) fn is_conditional(text: &str) -> bool {
    let t = text.to_ascii_uppercase();
    (t.trim_start().starts_with("UPDATE ") || t.trim_start().starts_with("INSERT ")) && t.contains(" IF ")
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',').map(|c| c.trim().to_string()).filter(|c| !c.is_empty()).collect()
}

/// `a = ? AND b = ?` into `[a, b]`, every term bound by one marker.
fn equalities(s: &str) -> Result<Vec<String>, CqlError> {
    s.split(" AND ")
        .map(|term| match term.split_once('=') {
            Some((col, "?")) | Some((col, " ?")) => Ok(col.trim().to_string()),
            _ => Err(syntax(format!("the double takes only `col = ?` terms here, not `{term}`"))),
        })
        .collect()
}

fn conditions(s: &str) -> Result<Vec<(String, Op)>, CqlError> {
    s.split(" AND ")
        .map(|term| {
            let term = term.trim();
            let (col, rest) = term.split_once(' ').ok_or_else(|| syntax(format!("condition `{term}`")))?;
            let op = match rest.trim() {
                "= ?" => Op::Eq,
                "< ?" => Op::Lt,
                "<= ?" => Op::Le,
                "> ?" => Op::Gt,
                ">= ?" => Op::Ge,
                other => return Err(syntax(format!("the double takes `col <op> ?` conditions, not `{other}`"))),
            };
            Ok((col.to_string(), op))
        })
        .collect()
}

fn parse(text: &str) -> Result<QueryString, CqlError> {
    parser::query(text).map_err(|_| syntax(format!("the double could not parse `{text}`")))
}

fn prepared_parts(result: QueryResult) -> Result<(kassandra::frame::response::result::PreparedMetadata, ResultMetadata), CqlError> {
    match result {
        QueryResult::Prepared(p) => Ok((p.prepared_metadata, p.result_metadata)),
        other => Err(invalid(format!("expected a prepared statement, got {other:?}"))),
    }
}

fn table_spec(table: &str) -> TableSpec {
    let (ks, t) = table.split_once('.').unwrap_or(("", table));
    TableSpec { ks_name: ks.to_string(), table_name: t.to_string() }
}

impl Plans {
    /// Prepares a conditional statement: its write and its read with the node, and the
    /// plan that joins them under a new id.
    pub(super) fn prepare(&mut self, node: &mut KassandraSession, text: &str) -> Result<QueryResult, CqlError> {
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let (body, cond) = text.rsplit_once(" IF ").ok_or_else(|| syntax("no IF clause"))?;
        let (write_text, table, write_cols, key_cols, condition) = if let Some(rest) = body.strip_prefix("INSERT INTO ") {
            if cond != "NOT EXISTS" {
                return Err(syntax("an INSERT takes only IF NOT EXISTS"));
            }
            let (table, rest) = rest.split_once(" (").ok_or_else(|| syntax("INSERT INTO t (cols)"))?;
            let (cols, _) = rest.split_once(')').ok_or_else(|| syntax("INSERT INTO t (cols)"))?;
            (body.to_string(), table.to_string(), split_list(cols), None, Condition::NotExists)
        } else if let Some(rest) = body.strip_prefix("UPDATE ") {
            let (table, rest) = rest.split_once(" SET ").ok_or_else(|| syntax("UPDATE t SET …"))?;
            let (set, keys) = rest.split_once(" WHERE ").ok_or_else(|| syntax("UPDATE t SET … WHERE …"))?;
            let set = equalities(&set.replace(", ", " AND ").replace(',', " AND "))?;
            let keys = equalities(keys)?;
            let cols: Vec<String> = set.iter().chain(&keys).cloned().collect();
            let marks = vec!["?"; cols.len()].join(", ");
            let write = format!("INSERT INTO {table} ({}) VALUES ({marks})", cols.join(", "));
            (write, table.to_string(), cols, Some(keys), Condition::Compare(conditions(cond)?))
        } else {
            return Err(syntax("the double runs conditional INSERT and UPDATE only"));
        };
        let write = parse(&write_text)?;
        let write_id = self.fresh();
        let (write_meta, _) = prepared_parts(node.prepare_with_id(write.clone(), write_id)?)?;
        // The row's key: the UPDATE's WHERE columns, or the INSERT's partition key.
        let key_cols = match key_cols {
            Some(k) => k,
            None => write_meta.pk_indexes.iter().map(|i| write_cols[i.index as usize].clone()).collect(),
        };
        let key_binds = key_cols
            .iter()
            .map(|k| write_cols.iter().position(|c| c == k).ok_or_else(|| invalid(format!("key column {k} is not bound"))))
            .collect::<Result<Vec<_>, _>>()?;
        let read_cols = match &condition {
            Condition::NotExists => key_cols.clone(),
            Condition::Compare(c) => c.iter().map(|(col, _)| col.clone()).collect(),
        };
        let where_ = key_cols.iter().map(|k| format!("{k} = ?")).collect::<Vec<_>>().join(" AND ");
        let read = parse(&format!("SELECT {} FROM {table} WHERE {where_}", read_cols.join(", ")))?;
        let (_, read_meta) = prepared_parts(node.prepare_with_id(read.clone(), self.fresh())?)?;
        // The statement's bind markers: the write's, then one per condition, typed as
        // the column it compares.
        let mut meta = write_meta.clone();
        if let Condition::Compare(c) = &condition {
            for ((col, _), spec) in c.iter().zip(&read_meta.col_specs) {
                let mut s = spec.clone();
                s.name = col.clone();
                meta.col_specs.push(s);
            }
        }
        let spec = table_spec(&table);
        let plan = Plan { write, read, write_binds: write_cols.len(), key_binds, condition, spec: spec.clone() };
        let id = self.fresh();
        self.by_id.insert(id, plan);
        Ok(QueryResult::Prepared(Prepared { id, prepared_metadata: meta, result_metadata: applied_metadata(spec) }))
    }

    fn fresh(&mut self) -> u128 {
        self.next += 1;
        // Far from the ids kassandra draws (ULIDs: a millisecond time in the top bits).
        u128::MAX - self.next
    }

    /// Runs `e` if it executes a conditional statement.
    pub(super) fn execute(&self, node: &mut KassandraSession, e: &Execute<'_>) -> Option<Result<QueryResult, CqlError>> {
        let id = u128::from_be_bytes(e.id.try_into().ok()?);
        let plan = self.by_id.get(&id)?;
        Some(run(node, plan, e))
    }
}

fn applied_metadata(spec: TableSpec) -> ResultMetadata {
    ResultMetadata { global_spec: Some(spec), paging_state: None, col_specs: vec![ColumnSpec::new("[applied]", ColumnType::Boolean)] }
}

fn int_of(v: &FrameValue<'_>) -> Option<i64> {
    match v {
        FrameValue::Some(b) if b.len() == 8 => Some(i64::from_be_bytes((*b).try_into().ok()?)),
        FrameValue::Some(b) if b.len() == 4 => Some(i32::from_be_bytes((*b).try_into().ok()?) as i64),
        _ => None,
    }
}

fn holds(op: Op, current: Option<&CqlValue>, want: &FrameValue<'_>) -> Result<bool, CqlError> {
    let current = match current {
        None => return Ok(false),
        Some(CqlValue::BigInt(n)) => *n,
        Some(CqlValue::Int(n)) => *n as i64,
        Some(other) => return Err(invalid(format!("the double compares int and bigint columns only, not {other:?}"))),
    };
    let want = int_of(want).ok_or_else(|| invalid("a condition's value must be an int or a bigint"))?;
    Ok(match op {
        Op::Eq => current == want,
        Op::Lt => current < want,
        Op::Le => current <= want,
        Op::Gt => current > want,
        Op::Ge => current >= want,
    })
}

fn run(node: &mut KassandraSession, plan: &Plan, e: &Execute<'_>) -> Result<QueryResult, CqlError> {
    let values = &e.parameters.data;
    if values.len() < plan.write_binds {
        return Err(invalid(format!("{} values for {} bind markers", values.len(), plan.write_binds)));
    }
    let (write_vals, cond_vals) = values.split_at(plan.write_binds);
    let mut read_params = e.parameters.clone();
    read_params.data = plan.key_binds.iter().map(|i| write_vals[*i].clone()).collect();
    read_params.result_page_size = None;
    read_params.paging_state = None;
    let current = match node.process(Query { query: plan.read.clone(), raw_query: "", parameters: read_params })? {
        QueryResult::Rows(r) => r.rows,
        other => return Err(invalid(format!("the condition read answered {other:?}"))),
    };
    let applied = match &plan.condition {
        Condition::NotExists => current.is_empty(),
        Condition::Compare(conds) => match current.first() {
            None => false,
            Some(row) => {
                if cond_vals.len() != conds.len() {
                    return Err(invalid(format!("{} condition values for {} conditions", cond_vals.len(), conds.len())));
                }
                let mut all = true;
                for (((_, op), cur), want) in conds.iter().zip(&row.columns).zip(cond_vals) {
                    all &= holds(*op, cur.as_ref(), want)?;
                }
                all
            }
        },
    };
    if applied {
        let mut write_params = e.parameters.clone();
        write_params.data = write_vals.to_vec();
        node.process(Query { query: plan.write.clone(), raw_query: "", parameters: write_params })?;
    }
    Ok(QueryResult::Rows(Rows {
        metadata: applied_metadata(plan.spec.clone()),
        rows: vec![Row { columns: vec![Some(CqlValue::Boolean(applied))] }],
    }))
}
