//! Orphan visits: requests that reach no link ([`kurz_schemas::Orphan`]).
//!
//! - `GET /` (and `HEAD /`): there is no link at the root. Recorded as a `base` orphan
//!   visit and answered with the host's `base_url_redirect` (`crate::domains`), else 404; unknown codes and expired links are recorded by the
//!   redirect itself (`super::redirect`).
//! - `GET /visits/orphan?from=&to=&bucket=hour|day`: their counts from the clicks
//!   projection's orphan aggregates (`kurz_schemas::analytics::orphan_hour`), per kind
//!   and bucket, over the same range rules as a link's stats (`super::stats::Range`).
//!   Bots and HEAD requests are recorded in the clicks topic, not counted. In token
//!   mode only the admin token reads them: they belong to no user.

use super::stats::Range;
use crate::capture::Visited;
use crate::EdgeState;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use kurz_schemas::analytics::{self, ORPHANS};
use kurz_schemas::{OrphanKind, Ts};
use kurz_web::{ApiError, Params};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;

pub async fn base(State(s): State<EdgeState>, req: Request) -> Response {
    let (req, _) = req.into_parts();
    let peer = req.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(a)| a.ip());
    if let Some((refused, wait)) = peer.and_then(|p| super::redirect::limited(&s, p, &req.headers)) {
        return kurz_web::ratelimit::tarpit(refused, wait).await;
    }
    if s.clicks.enabled() {
        let visited = Visited::Orphan { kind: OrphanKind::Base, code: None, link_id: None };
        s.clicks.record(super::redirect::raw_click(&s.clicks, visited, &req.method, &req.uri, &req.headers, peer));
    }
    match s.domains.fallback(&req.headers, &req.uri, OrphanKind::Base) {
        Some(target) => super::redirect::fallback_redirect(&s, target),
        None => ApiError::NotFound("no link here: short links are served at /{code}".into()).into_response(),
    }
}

pub async fn visits(State(s): State<EdgeState>, headers: HeaderMap, q: Params) -> Result<Json<Value>, ApiError> {
    if !s.reads_as_admin(&headers) {
        let why = "orphan visits are read with the admin token".to_string();
        return Err(if kurz_web::admin::bearer(&headers).is_none() { ApiError::Unauthorized(why) } else { ApiError::Forbidden(why) });
    }
    let range = Range::parse(&q)?;
    let (first_hour, end_hour) = range.hours();
    let rows = s.store.click_counts(ORPHANS, &analytics::orphan_hour_start(first_hour), &analytics::orphan_hour_start(end_hour)).await?;
    let mut series: BTreeMap<i64, BTreeMap<OrphanKind, u64>> = range.empty_series();
    let mut totals: BTreeMap<OrphanKind, u64> = OrphanKind::ALL.into_iter().map(|k| (k, 0)).collect();
    for (name, n) in rows {
        let Some((hour, kind)) = analytics::parse_orphan_hour(&name) else { continue };
        let Some(bucket) = range.bucket_of_hour(hour) else { continue };
        *series.entry(bucket).or_default().entry(kind).or_default() += n;
        *totals.entry(kind).or_default() += n;
    }
    let by_kind = |counts: &BTreeMap<OrphanKind, u64>| -> Map<String, Value> {
        OrphanKind::ALL.into_iter().map(|k| (k.as_str().to_string(), json!(counts.get(&k).copied().unwrap_or(0)))).collect()
    };
    let series: Vec<Value> = series
        .iter()
        .map(|(start, counts)| {
            let mut b = by_kind(counts);
            b.insert("start".into(), json!(Ts(*start).to_rfc3339()));
            b.insert("visits".into(), json!(counts.values().sum::<u64>()));
            Value::Object(b)
        })
        .collect();
    Ok(Json(json!({
        "from": Ts(range.from).to_rfc3339(),
        "to": Ts(range.to).to_rfc3339(),
        "bucket": range.bucket_name(),
        "total_visits": totals.values().sum::<u64>(),
        "by_kind": by_kind(&totals),
        "series": series,
    })))
}
