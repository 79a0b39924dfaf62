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

/// The last instant a range may name: the end of year 9999, in Unix milliseconds.
const LATEST_MS: i64 = 253_402_300_799_999;

/// A time parameter, between the Unix epoch and [`LATEST_MS`]: outside that, bucket
/// arithmetic would overflow and no click exists anyway.
pub(crate) fn time_param(q: &Params, name: &str) -> Result<Option<i64>, ApiError> {
    let Some(raw) = q.get(name).filter(|v| !v.is_empty()) else { return Ok(None) };
    let ms = match raw.parse::<i64>() {
        Ok(ms) => Some(ms),
        Err(_) => Ts::parse(raw).map(|t| t.0),
    };
    ms.filter(|ms| (0..=LATEST_MS).contains(ms))
        .map(Some)
        .ok_or_else(|| ApiError::BadRequest(format!("{name} must be an RFC 3339 time or Unix milliseconds from 1970 to 9999")))
}

/// The time range and buckets of an analytics read: `from`, `to` (exclusive; default
/// the last 30 days up to now) and `bucket` (`day` or `hour`, at most [`MAX_BUCKETS`]).
pub(crate) struct Range {
    pub from: i64,
    pub to: i64,
    pub bucket_ms: i64,
    /// The first bucket's start (aligned to UTC hours or days) and how many cover
    /// `[from, to)`.
    pub first: i64,
    pub buckets: i64,
}

impl Range {
    pub fn parse(q: &Params) -> Result<Range, ApiError> {
        let bucket_ms = match q.get("bucket").unwrap_or("day") {
            "day" => DAY_MS,
            "hour" => HOUR_MS,
            other => return Err(ApiError::BadRequest(format!("bucket must be hour or day, not '{other}'"))),
        };
        let to = time_param(q, "to")?.unwrap_or_else(|| Ts::now().0);
        let from = time_param(q, "from")?.unwrap_or(to.saturating_sub(DEFAULT_SPAN_MS));
        if from >= to {
            return Err(ApiError::BadRequest("from must be before to".into()));
        }
        let first = from.div_euclid(bucket_ms) * bucket_ms;
        let buckets = (to.saturating_sub(first).saturating_add(bucket_ms - 1)).div_euclid(bucket_ms);
        if buckets > MAX_BUCKETS {
            return Err(ApiError::BadRequest(format!(
                "the range holds {buckets} {} buckets; at most {MAX_BUCKETS}",
                if bucket_ms == DAY_MS { "day" } else { "hour" }
            )));
        }
        Ok(Range { from, to, bucket_ms, first, buckets })
    }

    pub fn bucket_name(&self) -> &'static str {
        if self.bucket_ms == DAY_MS {
            "day"
        } else {
            "hour"
        }
    }

    /// The start of every bucket, each with `T::default()`.
    pub fn empty_series<T: Default>(&self) -> BTreeMap<i64, T> {
        (0..self.buckets).map(|i| (self.first + i * self.bucket_ms, T::default())).collect()
    }

    /// Whether the hour starting at `hour` overlaps the range, and then its bucket.
    pub fn bucket_of_hour(&self, hour: i64) -> Option<i64> {
        (hour + HOUR_MS > self.from && hour < self.to).then(|| hour.div_euclid(self.bucket_ms) * self.bucket_ms)
    }

    /// The first and the end hour start (exclusive) the range touches.
    pub fn hours(&self) -> (i64, i64) {
        (self.from.div_euclid(HOUR_MS) * HOUR_MS, (self.to - 1).div_euclid(HOUR_MS) * HOUR_MS + HOUR_MS)
    }
}

pub async fn stats(State(s): State<EdgeState>, Path(raw): Path<String>, q: Params) -> Result<Json<Value>, ApiError> {
    let id = path_id(&raw, "url")?;
    let link = s.store.link(id).await?.ok_or_else(|| ApiError::NotFound("url not found".into()))?.link;
    let range = Range::parse(&q)?;
    let Range { from, to, bucket_ms, .. } = range;
    let (first_day, end_day) = (from.div_euclid(DAY_MS), (to - 1).div_euclid(DAY_MS) + 1);

    let (first_hour, end_hour) = range.hours();
    let hours = s.store.click_counts(id, &analytics::hour(first_hour), &analytics::hour(end_hour)).await?;
    let dims = s.store.click_counts(id, &analytics::day_start(first_day), &analytics::day_start(end_day)).await?;
    let visitors: HashMap<i64, u64> = s.store.visitors_per_day(id, first_day, end_day).await?.into_iter().collect();

    let mut series: BTreeMap<i64, u64> = range.empty_series();
    let mut total = 0u64;
    for (name, n) in hours {
        let Some(bucket) = analytics::parse_hour(&name).and_then(|h| range.bucket_of_hour(h)) else { continue };
        total += n;
        *series.entry(bucket).or_default() += n;
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
        "bucket": range.bucket_name(),
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
