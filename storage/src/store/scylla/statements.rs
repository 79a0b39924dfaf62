//! Every statement the store runs after the migration, prepared once at start.
//!
//! All but the lightweight transactions (`lwt`) are marked idempotent (the driver may
//! retry or speculate them): writes carry absolute values, never increments, and a
//! writer under a claim gives each its own timestamp ([`super::fence`]). Listing statements (`paged`) carry the
//! configured page size and are read a page at a time. No `LIMIT ?`, ranges or
//! `ALLOW FILTERING`: every read names a whole partition key, and filtering beyond the
//! partition happens in the adapter, as in the embedded backend.

use crate::StorageError;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Statement;

async fn prepare(session: &Session, cql: String, page_size: Option<i32>, idempotent: bool) -> Result<PreparedStatement, StorageError> {
    let mut st = Statement::new(cql.as_str());
    if let Some(n) = page_size {
        st.set_page_size(n);
    }
    // A lightweight transaction is not: retried after a timeout, it could answer
    // "not applied" to its own write.
    st.set_is_idempotent(idempotent);
    session.prepare(st).await.map_err(|e| StorageError::Engine(format!("prepare '{cql}': {e}")))
}

macro_rules! statements {
    ($($name:ident $(($kind:ident))? = $cql:literal;)*) => {
        pub struct Statements {
            $(pub $name: PreparedStatement,)*
        }

        impl Statements {
            pub async fn prepare(session: &Session, ks: &str, page_size: i32) -> Result<Statements, StorageError> {
                Ok(Statements {
                    $($name: prepare(
                        session,
                        format!($cql, ks = ks),
                        statements!(@page page_size $($kind)?),
                        statements!(@idempotent $($kind)?),
                    ).await?,)*
                })
            }
        }
    };
    (@page $n:ident paged) => { Some($n) };
    (@page $n:ident $($kind:ident)?) => { None };
    (@idempotent lwt) => { false };
    (@idempotent $($kind:ident)?) => { true };
}

statements! {
    position = "SELECT next_offset FROM {ks}.positions WHERE projection = ? AND topic = ? AND log_partition = ?";

    legacy_claim = "SELECT epoch FROM {ks}.claims WHERE topic = ? AND log_partition = ?";
    fence = "SELECT epoch, ceiling FROM {ks}.fences WHERE topic = ? AND log_partition = ?";
    fence_first (lwt) = "INSERT INTO {ks}.fences (topic, log_partition, epoch, ceiling) VALUES (?, ?, ?, ?) IF NOT EXISTS";
    fence_next (lwt) = "UPDATE {ks}.fences SET epoch = ?, ceiling = ? WHERE topic = ? AND log_partition = ? IF epoch = ? AND ceiling = ?";
    fenced_position = "SELECT next_offset, epoch FROM {ks}.fenced_positions WHERE projection = ? AND topic = ? AND log_partition = ?";
    first_position (lwt) = "INSERT INTO {ks}.fenced_positions (projection, topic, log_partition, next_offset, epoch) VALUES (?, ?, ?, ?, ?) IF NOT EXISTS";
    move_position (lwt) = "UPDATE {ks}.fenced_positions SET next_offset = ?, epoch = ? WHERE projection = ? AND topic = ? AND log_partition = ? IF next_offset = ? AND epoch <= ?";

    user = "SELECT email, body FROM {ks}.users WHERE id = ?";
    put_user = "INSERT INTO {ks}.users (id, email, body) VALUES (?, ?, ?)";
    delete_user = "DELETE FROM {ks}.users WHERE id = ?";
    user_by_email = "SELECT id FROM {ks}.users_by_email WHERE email = ?";
    put_user_by_email = "INSERT INTO {ks}.users_by_email (email, id) VALUES (?, ?)";
    delete_user_by_email = "DELETE FROM {ks}.users_by_email WHERE email = ?";
    users_all (paged) = "SELECT id, body FROM {ks}.users_all WHERE bucket = ?";
    put_users_all = "INSERT INTO {ks}.users_all (bucket, id, body) VALUES (?, ?, ?)";
    delete_users_all = "DELETE FROM {ks}.users_all WHERE bucket = ? AND id = ?";

    link = "SELECT version, body FROM {ks}.links WHERE id = ?";
    put_link = "INSERT INTO {ks}.links (id, version, body) VALUES (?, ?, ?)";
    delete_link = "DELETE FROM {ks}.links WHERE id = ?";
    link_by_code = "SELECT id, version, body FROM {ks}.links_by_code WHERE short_code = ?";
    put_link_by_code = "INSERT INTO {ks}.links_by_code (short_code, id, version, body) VALUES (?, ?, ?, ?)";
    delete_link_by_code = "DELETE FROM {ks}.links_by_code WHERE short_code = ?";
    links_by_owner (paged) = "SELECT id, body FROM {ks}.links_by_owner WHERE owner = ?";
    put_link_by_owner = "INSERT INTO {ks}.links_by_owner (owner, id, body) VALUES (?, ?, ?)";
    delete_link_by_owner = "DELETE FROM {ks}.links_by_owner WHERE owner = ? AND id = ?";
    links_by_owner_url (paged) = "SELECT id, body FROM {ks}.links_by_owner_url WHERE owner = ? AND url = ?";
    put_link_by_owner_url = "INSERT INTO {ks}.links_by_owner_url (owner, url, id, body) VALUES (?, ?, ?, ?)";
    delete_link_by_owner_url = "DELETE FROM {ks}.links_by_owner_url WHERE owner = ? AND url = ? AND id = ?";
    links_all (paged) = "SELECT id, body FROM {ks}.links_all WHERE bucket = ?";
    put_links_all = "INSERT INTO {ks}.links_all (bucket, id, body) VALUES (?, ?, ?)";
    delete_links_all = "DELETE FROM {ks}.links_all WHERE bucket = ? AND id = ?";
    links_crawlable (paged) = "SELECT short_code, id FROM {ks}.links_crawlable WHERE bucket = ?";
    put_link_crawlable = "INSERT INTO {ks}.links_crawlable (bucket, short_code, id) VALUES (?, ?, ?)";
    delete_link_crawlable = "DELETE FROM {ks}.links_crawlable WHERE bucket = ? AND short_code = ? AND id = ?";
    domains (paged) = "SELECT body FROM {ks}.domains WHERE bucket = ?";
    domain = "SELECT body FROM {ks}.domains WHERE bucket = ? AND host = ?";
    put_domain = "INSERT INTO {ks}.domains (bucket, host, body) VALUES (?, ?, ?)";
    delete_domain = "DELETE FROM {ks}.domains WHERE bucket = ? AND host = ?";

    history_event = "SELECT body FROM {ks}.history WHERE id = ?";
    put_history = "INSERT INTO {ks}.history (id, body) VALUES (?, ?)";
    history_by_link (paged) = "SELECT id, body FROM {ks}.history_by_link WHERE url_id = ?";
    put_history_by_link = "INSERT INTO {ks}.history_by_link (url_id, id, body) VALUES (?, ?, ?)";
    history_by_user (paged) = "SELECT id, body FROM {ks}.history_by_user WHERE user_id = ?";
    put_history_by_user = "INSERT INTO {ks}.history_by_user (user_id, id, body) VALUES (?, ?, ?)";
    history_by_type (paged) = "SELECT id, body FROM {ks}.history_by_type WHERE event_type = ?";
    put_history_by_type = "INSERT INTO {ks}.history_by_type (event_type, id, body) VALUES (?, ?, ?)";
    history_all (paged) = "SELECT id, body FROM {ks}.history_all WHERE bucket = ?";
    put_history_all = "INSERT INTO {ks}.history_all (bucket, id, body) VALUES (?, ?, ?)";

    clicks (paged) = "SELECT source, clicks, base, batch_from, through FROM {ks}.click_counts WHERE link_id = ?";
    put_clicks = "INSERT INTO {ks}.click_counts (link_id, source, clicks, base, batch_from, through) VALUES (?, ?, ?, ?, ?, ?)";
    aggregate = "SELECT source, clicks, base, batch_from, through FROM {ks}.click_aggregates WHERE link_id = ? AND name = ?";
    aggregates (paged) = "SELECT name, clicks FROM {ks}.click_aggregates WHERE link_id = ?";
    put_aggregate = "INSERT INTO {ks}.click_aggregates (link_id, name, source, clicks, base, batch_from, through) VALUES (?, ?, ?, ?, ?, ?, ?)";
    visitors (paged) = "SELECT day FROM {ks}.click_visitors WHERE link_id = ?";
    put_visitor = "INSERT INTO {ks}.click_visitors (link_id, day, visitor) VALUES (?, ?, ?)";

    outcome = "SELECT body FROM {ks}.outcomes WHERE command_id = ?";
    put_outcome = "INSERT INTO {ks}.outcomes (command_id, body) VALUES (?, ?)";

    parked (paged) = "SELECT body FROM {ks}.parked WHERE bucket = ?";
    parked_one = "SELECT body FROM {ks}.parked WHERE bucket = ? AND topic = ? AND log_partition = ? AND record_key = ? AND log_offset = ?";
    put_parked = "INSERT INTO {ks}.parked (bucket, topic, log_partition, record_key, log_offset, body) VALUES (?, ?, ?, ?, ?, ?)";
    delete_parked = "DELETE FROM {ks}.parked WHERE bucket = ? AND topic = ? AND log_partition = ? AND record_key = ? AND log_offset = ?";
    attempt = "SELECT log_offset, attempt FROM {ks}.attempts WHERE topic = ? AND log_partition = ?";
    put_attempt = "INSERT INTO {ks}.attempts (topic, log_partition, log_offset, attempt) VALUES (?, ?, ?, ?)";
}
