//! The schema migration kurz runs at start: `infra/cql/schema.cql`, compiled in.
//!
//! The file is the reviewed source of truth; here its comments are stripped, its
//! statements split on `;` and run in order. Two statements are rewritten on the way:
//! `CREATE KEYSPACE` gets the configured keyspace name (and replication, if the URL
//! gives one), and `USE` switches the driver session to the configured keyspace on
//! every connection. Everything in the file is `IF NOT EXISTS`, so a re-run is a no-op.

use super::config::ScyllaConfig;
use crate::StorageError;
use scylla::client::session::Session;
use std::time::Duration;

/// The CQL schema, exactly as reviewed.
pub const SCHEMA_CQL: &str = include_str!("../../../../infra/cql/schema.cql");

const KEYSPACE_PREFIX: &str = "CREATE KEYSPACE IF NOT EXISTS ";

/// How long the migration waits for the cluster to agree on the new schema before it
/// goes on anyway (the driver's own automatic wait is off: see the module doc).
const SCHEMA_AGREEMENT_WAIT: Duration = Duration::from_secs(30);

/// The statements of `cql`: `--` comments dropped, split on `;`, whitespace collapsed
/// to single spaces, empty statements skipped.
pub fn statements(cql: &str) -> Vec<String> {
    let without_comments: String = cql
        .lines()
        .map(|l| match l.find("--") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    without_comments.split(';').map(|s| s.split_whitespace().collect::<Vec<_>>().join(" ")).filter(|s| !s.is_empty()).collect()
}

/// The names of the tables `cql` creates, in order.
pub fn table_names(cql: &str) -> Vec<String> {
    statements(cql)
        .iter()
        .filter_map(|s| s.strip_prefix("CREATE TABLE IF NOT EXISTS "))
        .filter_map(|s| s.split([' ', '(']).next())
        .map(str::to_string)
        .collect()
}

/// `stmt` with the configured keyspace name and replication.
pub(crate) fn keyspace_statement(stmt: &str, cfg: &ScyllaConfig) -> Result<String, StorageError> {
    let malformed = || StorageError::Engine(format!("schema.cql: cannot rewrite '{stmt}'"));
    let rest = stmt.strip_prefix(KEYSPACE_PREFIX).ok_or_else(malformed)?;
    let (_name, with) = rest.split_once(" WITH ").ok_or_else(malformed)?;
    let replication = match &cfg.replication {
        Some(r) => format!("replication = {r}"),
        None => with.to_string(),
    };
    Ok(format!("{KEYSPACE_PREFIX}{} WITH {replication}", cfg.keyspace))
}

/// Columns `schema.cql` gained after their table was first released: `(table, column,
/// type)`. `CREATE TABLE IF NOT EXISTS` leaves a table made by an earlier build as it
/// is, so [`migrate`] adds these where they are missing.
pub const ADDED_COLUMNS: &[(&str, &str, &str)] = &[("click_counts", "through", "bigint"), ("click_aggregates", "through", "bigint")];

/// Creates the keyspace and every table that does not exist yet, and adds the
/// [`ADDED_COLUMNS`] a table made by an earlier build lacks.
pub async fn migrate(session: &Session, cfg: &ScyllaConfig) -> Result<(), StorageError> {
    migrate_file(session, cfg, SCHEMA_CQL).await?;
    add_missing_columns(session).await
}

/// `ALTER TABLE … ADD` for each of [`ADDED_COLUMNS`] that a probe (`SELECT <column>`)
/// says is undefined. CQL has no `ADD IF NOT EXISTS`: two processes that start together
/// may both add, and the one that loses is told the column exists, which is the goal.
async fn add_missing_columns(session: &Session) -> Result<(), StorageError> {
    let mut added = false;
    for (table, column, kind) in ADDED_COLUMNS {
        let probe = format!("SELECT {column} FROM {table} LIMIT 1");
        let Err(e) = session.query_unpaged(probe.as_str(), ()).await else { continue };
        if !undefined_column(&e.to_string(), column) {
            return Err(StorageError::Engine(format!("{probe}: {e}")));
        }
        let alter = format!("ALTER TABLE {table} ADD {column} {kind}");
        match session.query_unpaged(alter.as_str(), ()).await {
            Ok(_) => tracing::info!(event = "schema_column_added", table, column, "a table made by an earlier build"),
            Err(e) if e.to_string().contains("conflicts with an existing column") => {}
            Err(e) => return Err(StorageError::Engine(format!("{alter}: {e}"))),
        }
        added = true;
    }
    if added {
        await_agreement(session).await;
    }
    Ok(())
}

/// Whether a query error says `column` is not defined (Scylla and Cassandra both say
/// "Undefined column name <column>").
fn undefined_column(error: &str, column: &str) -> bool {
    error
        .split("Undefined column name ")
        .skip(1)
        .any(|rest| rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).next() == Some(column))
}

/// How long a start may keep migrating and preparing while the schema is not visible.
const PREPARE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(20);

/// Migrates with `cql`, then prepares with `prepare`; both again (every 200 ms, for at
/// most 20 s) while preparing fails. Processes of one deployment start together and
/// migrate at once: a node may not show a table yet that another client's `CREATE …
/// IF NOT EXISTS` just made, and the CQL double can even lose one of two concurrent
/// schema changes ("Keyspace or table does nor exist"); migrating again restores it.
pub(crate) async fn migrate_and_prepare<T, F, Fut>(session: &Session, cfg: &ScyllaConfig, cql: &str, prepare: F) -> Result<T, StorageError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, StorageError>>,
{
    let deadline = tokio::time::Instant::now() + PREPARE_PATIENCE;
    loop {
        migrate_file(session, cfg, cql).await?;
        match prepare().await {
            Ok(p) => return Ok(p),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(event = "schema_not_visible_yet", keyspace = %cfg.keyspace, error = %e);
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Runs a reviewed CQL file (`infra/cql/*.cql`) against the configured keyspace.
pub(crate) async fn migrate_file(session: &Session, cfg: &ScyllaConfig, cql: &str) -> Result<(), StorageError> {
    for stmt in statements(cql) {
        let upper = stmt.to_ascii_uppercase();
        if upper.starts_with("CREATE KEYSPACE") {
            let stmt = keyspace_statement(&stmt, cfg)?;
            session.query_unpaged(stmt.as_str(), ()).await.map_err(|e| StorageError::Engine(format!("{stmt}: {e}")))?;
            await_agreement(session).await;
        } else if upper.starts_with("USE ") {
            session
                .use_keyspace(cfg.keyspace.as_str(), false)
                .await
                .map_err(|e| StorageError::Engine(format!("USE {}: {e}", cfg.keyspace)))?;
        } else {
            session.query_unpaged(stmt.as_str(), ()).await.map_err(|e| StorageError::Engine(format!("{stmt}: {e}")))?;
        }
    }
    await_agreement(session).await;
    Ok(())
}

/// Waits (bounded) until every reachable node has the same schema version, so that
/// statements prepared next find their tables on every node. Best effort: a cluster
/// (or test double) that cannot answer the check only costs a warning.
async fn await_agreement(session: &Session) {
    match tokio::time::timeout(SCHEMA_AGREEMENT_WAIT, session.await_schema_agreement()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "scylla store: schema agreement check failed; going on"),
        Err(_) => tracing::warn!("scylla store: no schema agreement after {SCHEMA_AGREEMENT_WAIT:?}; going on"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_file_splits_into_idempotent_statements() {
        let s = statements(SCHEMA_CQL);
        assert!(s[0].starts_with(KEYSPACE_PREFIX), "{}", s[0]);
        assert_eq!(s[1], "USE kurz");
        for stmt in &s[2..] {
            assert!(stmt.starts_with("CREATE TABLE IF NOT EXISTS "), "{stmt}");
            assert!(!stmt.to_ascii_lowercase().contains("counter"), "no counter columns: {stmt}");
        }
        let tables = table_names(SCHEMA_CQL);
        for t in ["positions", "users", "users_by_email", "links", "links_by_code", "history_by_link", "click_counts", "outcomes"] {
            assert!(tables.iter().any(|n| n == t), "{t} missing from {tables:?}");
        }
    }

    #[test]
    fn every_added_column_is_in_its_tables_create_statement() {
        for (table, column, kind) in ADDED_COLUMNS {
            let create = statements(SCHEMA_CQL)
                .into_iter()
                .find(|s| s.starts_with(&format!("CREATE TABLE IF NOT EXISTS {table} (")))
                .unwrap_or_else(|| panic!("{table} is not created"));
            assert!(create.contains(&format!(" {column} {kind},")), "{create}");
        }
        assert!(undefined_column("Database returned an error: The query is syntactically correct but invalid, Error message: Undefined column name through in table kurz.click_counts", "through"));
        assert!(!undefined_column("Undefined column name throughput", "through"));
        assert!(!undefined_column("Keyspace kurz does not exist", "through"));
    }

    #[test]
    fn the_keyspace_statement_takes_the_configured_name_and_replication() {
        let mut cfg = super::super::config::ScyllaConfig::parse("scylla://h/shop").unwrap();
        let s = statements(SCHEMA_CQL);
        assert_eq!(
            keyspace_statement(&s[0], &cfg).unwrap(),
            "CREATE KEYSPACE IF NOT EXISTS shop WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}"
        );
        cfg.replication = Some("{'class': 'NetworkTopologyStrategy', 'dc1': 3}".into());
        assert_eq!(
            keyspace_statement(&s[0], &cfg).unwrap(),
            "CREATE KEYSPACE IF NOT EXISTS shop WITH replication = {'class': 'NetworkTopologyStrategy', 'dc1': 3}"
        );
    }
}
