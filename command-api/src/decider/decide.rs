//! The decision function: a command and the current state in, events out. Pure: the
//! clock and the id generator come in as arguments, so it is tested without I/O.
//!
//! Every command ends with exactly one `Decided` event, the answer its caller gets.

use super::state::PartitionState;
use kurz_schemas::domain::{lookup_key, Domain, DEFAULT, MAX_DOMAINS};
use kurz_schemas::event::Answer;
use kurz_schemas::{Command, CommandBody, DomainHost, Event, EventBody, HistoryEvent, Id, Link, ShortCode, Ts, User};

/// The key `code` on `domain` is found by.
fn key<'a>(domain: &Option<DomainHost>, code: &'a ShortCode) -> std::borrow::Cow<'a, str> {
    lookup_key(domain.as_ref().map(DomainHost::as_str), code.as_str())
}

/// The data keys `cmd` brought that no user of `events` (or of the state) took: a
/// sign-up refused, an import row skipped, an update of a user that has a key. The
/// decider erases them once its events are in the log, so the command's copy of the
/// personal data becomes unreadable too.
pub fn orphan_subjects(state: &PartitionState, cmd_subjects: &[String], events: &[Event]) -> Vec<String> {
    let taken: std::collections::HashSet<&str> = events.iter().flat_map(Event::subjects).collect();
    let rest: Vec<&String> = cmd_subjects.iter().filter(|s| !taken.contains(s.as_str())).collect();
    if rest.is_empty() {
        return Vec::new();
    }
    let held: std::collections::HashSet<&str> = state.users.values().filter_map(|u| u.subject.as_deref()).collect();
    rest.into_iter().filter(|s| !held.contains(s.as_str())).cloned().collect()
}

/// Decides `cmd` against `state` and folds the resulting events into it.
pub fn handle(state: &mut PartitionState, cmd: &Command, now: Ts) -> Vec<Event> {
    let bodies = decide(state, cmd, now);
    let mut out = Vec::with_capacity(bodies.len());
    for mut body in bodies {
        if let EventBody::Decided { fingerprint, .. } = &mut body {
            fingerprint.clone_from(&cmd.fingerprint);
        }
        let ev = Event { id: state.ids.next(now.0), command_id: cmd.id.clone(), at: now, body };
        state.evolve(&ev);
        out.push(ev);
    }
    out
}

fn reject(status: u16, message: impl Into<String>) -> Vec<EventBody> {
    vec![EventBody::Decided { status, answer: Answer::Rejected { message: message.into() }, fingerprint: None }]
}

fn decided(status: u16, answer: Answer) -> EventBody {
    EventBody::Decided { status, answer, fingerprint: None }
}

/// Ids minted inside one decision, before the state has seen them.
struct Mint<'a> {
    state: &'a mut PartitionState,
    now: Ts,
}

impl Mint<'_> {
    fn id(&mut self) -> Id {
        self.state.ids.next(self.now.0)
    }
}

fn decide(state: &mut PartitionState, cmd: &Command, now: Ts) -> Vec<EventBody> {
    use CommandBody::*;
    match &cmd.body {
        CreateUser { email, username, password_hash, subject } => {
            if state.emails.contains_key(email.as_str()) {
                return reject(409, "a user with this email already exists");
            }
            let id = Mint { state, now }.id();
            let user =
                User::new(id, email.as_str().to_string(), username.clone(), now, password_hash.clone()).with_subject(subject.clone());
            vec![EventBody::UserCreated { user: user.clone(), imported: false }, decided(201, Answer::User { user: user.answer() })]
        }
        UpdateUser { id, email, username, password_hash, subject } => {
            let Some(old) = state.users.get(id) else { return reject(404, "user not found") };
            if let Some(e) = email {
                if state.emails.get(e.as_str()).is_some_and(|owner| owner != id) {
                    return reject(409, "a user with this email already exists");
                }
            }
            let mut user = old.clone();
            // A user from before sealing takes the command's data key.
            if user.subject.is_none() {
                user.subject.clone_from(subject);
            }
            if let Some(e) = email {
                user.email = e.as_str().to_string();
            }
            if let Some(u) = username {
                user.username = Some(u.clone());
            }
            if let Some(h) = password_hash {
                user.password_hash = Some(h.clone());
                user.end_all_sessions(now);
            }
            user.updated_at = now;
            vec![EventBody::UserUpdated { user: user.clone() }, decided(200, Answer::User { user: user.answer() })]
        }
        CreateApiKey { id, key } => {
            let Some(old) = state.users.get(id) else { return reject(404, "user not found") };
            if old.api_keys.iter().any(|k| k.id == key.id) {
                return reject(409, "an API key with this id already exists");
            }
            if old.api_keys.len() >= User::MAX_API_KEYS {
                return reject(409, format!("a user has at most {} API keys; revoke one first", User::MAX_API_KEYS));
            }
            let mut user = old.clone();
            user.api_keys.push(kurz_schemas::ApiKey { created_at: now, last_used_at: None, ..key.clone() });
            user.updated_at = now;
            vec![EventBody::UserUpdated { user: user.clone() }, decided(201, Answer::User { user: user.answer() })]
        }
        RevokeApiKey { id, key_id } => {
            let Some(old) = state.users.get(id) else { return reject(404, "user not found") };
            if !old.api_keys.iter().any(|k| &k.id == key_id) {
                return reject(404, "API key not found");
            }
            let mut user = old.clone();
            user.api_keys.retain(|k| &k.id != key_id);
            user.updated_at = now;
            vec![EventBody::UserUpdated { user: user.clone() }, decided(200, Answer::User { user: user.answer() })]
        }
        TouchApiKey { id, key_id, at } => {
            let Some(old) = state.users.get(id) else { return reject(404, "user not found") };
            let mut user = old.clone();
            let Some(k) = user.api_keys.iter_mut().find(|k| &k.id == key_id) else { return reject(404, "API key not found") };
            if k.last_used_at.is_some_and(|t| t >= *at) {
                return vec![decided(200, Answer::User { user: user.answer() })];
            }
            k.last_used_at = Some(*at);
            vec![EventBody::UserUpdated { user: user.clone() }, decided(200, Answer::User { user: user.answer() })]
        }
        RevokeSession { id, session, until } => {
            let Some(old) = state.users.get(id) else { return reject(404, "user not found") };
            let mut user = old.clone();
            user.revoke_session(session.clone(), *until, now);
            vec![EventBody::UserUpdated { user: user.clone() }, decided(200, Answer::User { user: user.answer() })]
        }
        DeleteUser { id } => {
            let Some(user) = state.users.get(id).cloned() else { return reject(404, "user not found") };
            vec![EventBody::UserDeleted { user }, decided(200, Answer::Deleted { id: *id })]
        }
        ImportUsers { rows } => {
            let mut out = Vec::new();
            let mut skipped = Vec::new();
            let mut seen_emails = std::collections::HashSet::new();
            let mut batch_ids = std::collections::HashSet::new();
            for (i, row) in rows.iter().enumerate() {
                if state.emails.contains_key(row.email.as_str()) || !seen_emails.insert(row.email.clone()) {
                    // No e-mail in the text: it rides in `Decided`, on the events topic.
                    skipped.push(format!("row {}: the email already exists", i + 1));
                    continue;
                }
                if let Some(id) = row.id {
                    if state.user_ids.contains(&id) || !batch_ids.insert(id) {
                        skipped.push(format!("row {}: user id {id} already exists", i + 1));
                        continue;
                    }
                }
                let id = row.id.unwrap_or_else(|| Mint { state, now }.id());
                let at = row.created_at.unwrap_or(now);
                let user = User::new(id, row.email.as_str().to_string(), row.username.clone(), at, None).with_subject(row.subject.clone());
                out.push(EventBody::UserCreated { user, imported: true });
            }
            let count = out.len() as u64;
            out.push(decided(201, Answer::Count { count, skipped }));
            out
        }
        CreateLink { code, original_url, title, user_id, existing_ok, options, domain, .. } => {
            if let Some(existing) = state.links.get(key(domain, code).as_ref()) {
                let l = &existing.link;
                if *existing_ok && !existing.deleted && l.is_active && l.user_id == *user_id && l.original_url == original_url.as_str() {
                    return vec![decided(200, Answer::Link { link: l.clone() })];
                }
                return reject(409, format!("short_code '{}' already exists", code.as_str()));
            }
            let id = Mint { state, now }.id();
            let link = Link {
                id,
                short_code: code.as_str().to_string(),
                original_url: original_url.as_str().to_string(),
                title: title.clone(),
                is_active: true,
                user_id: *user_id,
                created_at: now,
                updated_at: now,
                options: options.clone(),
                domain: domain.as_ref().map(|d| d.to_string()),
            };
            vec![EventBody::LinkCreated { link: link.clone(), imported: false }, decided(201, Answer::Link { link })]
        }
        UpdateLink { code, id, title, original_url, is_active, owner, options, domain } => {
            let Some(old) = state.live_link(&key(domain, code)).filter(|l| l.id == *id) else { return reject(404, "url not found") };
            if owner.is_some() && old.user_id != *owner {
                return reject(403, "this url belongs to another user");
            }
            let mut link = old.clone();
            if let Some(t) = title {
                link.title = Some(t.clone());
            }
            if let Some(u) = original_url {
                link.original_url = u.as_str().to_string();
            }
            if let Some(a) = is_active {
                link.is_active = *a;
            }
            // Checked against the link's current options: a window is whole or refused.
            match options.applied_to(&link.options) {
                Ok(o) => link.options = o,
                Err(e) => return reject(400, e.to_string()),
            }
            link.updated_at = now;
            vec![EventBody::LinkUpdated { link: link.clone() }, decided(200, Answer::Link { link })]
        }
        DeleteLink { code, id, owner, domain } => {
            let Some(old) = state.live_link(&key(domain, code)).filter(|l| l.id == *id) else { return reject(404, "url not found") };
            if owner.is_some() && old.user_id != *owner {
                return reject(403, "this url belongs to another user");
            }
            let mut link = old.clone();
            link.updated_at = now;
            vec![EventBody::LinkDeleted { link }, decided(200, Answer::Deleted { id: *id })]
        }
        ImportLinks { rows, .. } => {
            let mut out = Vec::new();
            let mut skipped = Vec::new();
            let mut batch_codes = std::collections::HashSet::new();
            let mut batch_ids = std::collections::HashSet::new();
            for (i, row) in rows.iter().enumerate() {
                let k = key(&row.domain, &row.code);
                if state.links.contains_key(k.as_ref()) || !batch_codes.insert(k.into_owned()) {
                    skipped.push(format!("row {}: short_code {} already exists", i + 1, row.code.as_str()));
                    continue;
                }
                if let Some(id) = row.id {
                    if state.link_ids.contains(&id) || !batch_ids.insert(id) {
                        skipped.push(format!("row {}: url id {id} already exists", i + 1));
                        continue;
                    }
                }
                let id = row.id.unwrap_or_else(|| Mint { state, now }.id());
                let created = row.created_at.unwrap_or(now);
                let link = Link {
                    id,
                    short_code: row.code.as_str().to_string(),
                    original_url: row.original_url.as_str().to_string(),
                    title: row.title.clone(),
                    is_active: row.is_active,
                    user_id: row.user_id,
                    created_at: created,
                    updated_at: row.updated_at.unwrap_or(created),
                    options: row.options.clone(),
                    domain: row.domain.as_ref().map(|d| d.to_string()),
                };
                out.push(EventBody::LinkCreated { link, imported: true });
            }
            let count = out.len() as u64;
            out.push(decided(201, Answer::Count { count, skipped }));
            out
        }
        RecordEvent { code, url_id, user_id, event_type, details, owner, domain } => {
            let Some(link) = state.live_link(&key(domain, code)).filter(|l| l.id == *url_id) else { return reject(404, "url not found") };
            if owner.is_some() && link.user_id != *owner {
                return reject(403, "this url belongs to another user");
            }
            if !link.is_active {
                return reject(400, "url is inactive");
            }
            let id = Mint { state, now }.id();
            let event = HistoryEvent {
                id,
                url_id: *url_id,
                user_id: *user_id,
                event_type: event_type.clone(),
                timestamp: now,
                details: details.clone(),
            };
            vec![EventBody::EventRecorded { event: event.clone() }, decided(201, Answer::Event { event })]
        }
        PutDomain { host, base_url_redirect, not_found_redirect, expired_redirect } => {
            let old = state.domains.get(host);
            let listed = state.domains.keys().filter(|h| h.as_str() != DEFAULT).count();
            if old.is_none() && host != DEFAULT && listed >= MAX_DOMAINS {
                return reject(409, format!("at most {MAX_DOMAINS} domains can be registered; delete one first"));
            }
            let target = |t: &Option<kurz_schemas::TargetUrl>| t.as_ref().map(|t| t.as_str().to_string());
            let domain = Domain {
                host: host.clone(),
                base_url_redirect: target(base_url_redirect),
                not_found_redirect: target(not_found_redirect),
                expired_redirect: target(expired_redirect),
                created_at: old.map_or(now, |d| d.created_at),
                updated_at: now,
            };
            let status = if old.is_some() { 200 } else { 201 };
            vec![EventBody::DomainRegistered { domain: domain.clone() }, decided(status, Answer::Domain { domain })]
        }
        DeleteDomain { host } => {
            let Some(domain) = state.domains.get(host).cloned() else { return reject(404, "domain not found") };
            vec![EventBody::DomainDeleted { domain: domain.clone() }, decided(200, Answer::Domain { domain })]
        }
        ReserveIds { kind, ids } => {
            let mut granted = Vec::new();
            let mut refused = Vec::new();
            for id in ids {
                if state.reserved.contains(&(*kind, *id)) || granted.contains(id) {
                    refused.push(*id);
                } else {
                    granted.push(*id);
                }
            }
            let mut out = Vec::new();
            if !granted.is_empty() {
                out.push(EventBody::IdsReserved { kind: *kind, ids: granted });
            }
            out.push(decided(201, Answer::Reserved { refused }));
            out
        }
        ImportEvents { rows, .. } => {
            let mut out = Vec::new();
            let mut skipped = Vec::new();
            let mut batch_ids = std::collections::HashSet::new();
            for (i, row) in rows.iter().enumerate() {
                if let Some(id) = row.id {
                    if state.history_ids.contains(&id) || !batch_ids.insert(id) {
                        skipped.push(format!("row {}: event id {id} already exists", i + 1));
                        continue;
                    }
                }
                let id = row.id.unwrap_or_else(|| Mint { state, now }.id());
                let event = HistoryEvent {
                    id,
                    url_id: row.url_id,
                    user_id: row.user_id,
                    event_type: row.event_type.clone(),
                    timestamp: row.timestamp.unwrap_or(now),
                    details: row.details.clone(),
                };
                out.push(EventBody::EventRecorded { event });
            }
            let count = out.len() as u64;
            out.push(decided(201, Answer::Count { count, skipped }));
            out
        }
    }
}
