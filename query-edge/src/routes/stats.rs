//! `GET /urls/{id}/stats?from=&to=&bucket=hour|day`: a link's click analytics from the
//! projector's aggregates.
//!
//! - `from`, `to`: RFC 3339 times or Unix milliseconds; default the last 30 days up to
//!   now. `to` is exclusive.
//! - `bucket`: `day` (default) or `hour`; at most 2,000 buckets per answer.
//!
//! The answer: `total_clicks` in the range, `unique_visitors` (distinct visitors summed
//! over the range's UTC days), the `series` (clicks per bucket, plus unique visitors per
//! day bucket), and the top 10 `referrers`, `browsers`, `os`, `devices`, `countries`
//! and `utm_sources` over the days the range touches (breakdowns are kept per day:
//! [`Dimension`]). Bots and HEAD requests are not counted. The aggregates' names are
//! the clicks projection's, read with its parsers (`kurz_schemas::analytics`).

use super::path_id;
use crate::EdgeState;
use axum::extract::{Path, State};
use axum::Json;
use kurz_schemas::analytics::{self, Dimension, DAY_MS, HOUR_MS};
use kurz_schemas::Ts;
use kurz_web::{ApiError, Params};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};

const DEFAULT_SPAN_MS: i64 = 30 * DAY_MS;
const MAX_BUCKETS: i64 = 2_000;
const TOP: usize = 10;

fn time_param(q: &Params, name: &str) -> Result<Option<i64>, ApiError> {
    let Some(raw) = q.get(name).filter(|v| !v.is_empty()) else { return Ok(None) };
    if let Ok(ms) = raw.parse::<i64>() {
        return Ok(Some(ms));
    }
    Ts::parse(raw)
        .map(|t| Some(t.0))
        .ok_or_else(|| ApiError::BadRequest(format!("{name} must be an RFC 3339 time or Unix milliseconds, not '{raw}'")))
}

pub async fn stats(State(s): State<EdgeState>, Path(raw): Path<String>, q: Params) -> Result<Json<Value>, ApiError> {
    let id = path_id(&raw, "url")?;
    let link = s.store.link(id).await?.ok_or_else(|| ApiError::NotFound("url not found".into()))?.link;
    let bucket_ms = match q.get("bucket").unwrap_or("day") {
        "day" => DAY_MS,
        "hour" => HOUR_MS,
        other => return Err(ApiError::BadRequest(format!("bucket must be hour or day, not '{other}'"))),
    };
    let to = time_param(&q, "to")?.unwrap_or_else(|| Ts::now().0);
    let from = time_param(&q, "from")?.unwrap_or(to - DEFAULT_SPAN_MS);
    if from >= to {
        return Err(ApiError::BadRequest("from must be before to".into()));
    }
    // Buckets aligned to UTC hours or days, covering [from, to).
    let first = from.div_euclid(bucket_ms) * bucket_ms;
    let buckets = (to - first + bucket_ms - 1).div_euclid(bucket_ms);
    if buckets > MAX_BUCKETS {
        return Err(ApiError::BadRequest(format!(
            "the range holds {buckets} {} buckets; at most {MAX_BUCKETS}",
            if bucket_ms == DAY_MS { "day" } else { "hour" }
        )));
    }
    let (first_day, end_day) = (from.div_euclid(DAY_MS), (to - 1).div_euclid(DAY_MS) + 1);

    let hours = s
        .store
        .click_counts(
            id,
            &analytics::hour(from.div_euclid(HOUR_MS) * HOUR_MS),
            &analytics::hour((to - 1).div_euclid(HOUR_MS) * HOUR_MS + HOUR_MS),
        )
        .await?;
    let dims = s.store.click_counts(id, &analytics::day_start(first_day), &analytics::day_start(end_day)).await?;
    let visitors: HashMap<i64, u64> = s.store.visitors_per_day(id, first_day, end_day).await?.into_iter().collect();

    let mut series: BTreeMap<i64, u64> = (0..buckets).map(|i| (first + i * bucket_ms, 0)).collect();
    let mut total = 0u64;
    for (name, n) in hours {
        let Some(hour) = analytics::parse_hour(&name) else { continue };
        if hour + HOUR_MS <= from || hour >= to {
            continue;
        }
        total += n;
        *series.entry(hour.div_euclid(bucket_ms) * bucket_ms).or_default() += n;
    }
    let series: Vec<Value> = series
        .into_iter()
        .map(|(start, clicks)| {
            let mut b = json!({ "start": Ts(start).to_rfc3339(), "clicks": clicks });
            if bucket_ms == DAY_MS {
                b["unique_visitors"] = json!(visitors.get(&start.div_euclid(DAY_MS)).copied().unwrap_or(0));
            }
            b
        })
        .collect();

    let mut by_dim: HashMap<Dimension, HashMap<String, u64>> = HashMap::new();
    for (name, n) in &dims {
        if let Some((_, dim, value)) = analytics::parse_dim(name) {
            *by_dim.entry(dim).or_default().entry(value.to_string()).or_default() += n;
        }
    }
    let mut body = json!({
        "url_id": link.id,
        "short_code": link.short_code,
        "from": Ts(from).to_rfc3339(),
        "to": Ts(to).to_rfc3339(),
        "bucket": if bucket_ms == DAY_MS { "day" } else { "hour" },
        "total_clicks": total,
        "unique_visitors": visitors.values().sum::<u64>(),
        "series": series,
    });
    for dim in Dimension::ALL {
        let mut top: Vec<(String, u64)> = by_dim.remove(&dim).unwrap_or_default().into_iter().collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top.truncate(TOP);
        body[dim.answer_key()] = Value::Array(top.into_iter().map(|(value, clicks)| json!({ "value": value, "clicks": clicks })).collect());
    }
    Ok(Json(body))
}
