use crate::Input;
use kurz_schemas::analytics::{self, Dimension, DAY_MS, HOUR_MS};
use kurz_schemas::{Click, HistoryEvent, Id, Orphan};
use kurz_storage::store::Mutation;
use serde_json::{json, Value};

/// What a click counts under in `dim`: its value, or `None` for a click not counted
/// there.
fn value(click: &Click, dim: Dimension) -> Option<&str> {
    let agent = click.agent.as_ref();
    Some(match dim {
        Dimension::Referrer => click.referrer_host.as_deref().unwrap_or("direct"),
        Dimension::Browser => agent.map(|a| a.browser.as_str()).unwrap_or("unknown"),
        Dimension::Os => agent.map(|a| a.os.as_str()).unwrap_or("unknown"),
        Dimension::Device => agent.map(|a| a.device.as_str()).unwrap_or("unknown"),
        Dimension::Country => click.country.as_deref().unwrap_or("unknown"),
        Dimension::UtmSource => return click.utm.source.as_deref(),
    })
}

/// The click's share of its link's analytics (names: [`kurz_schemas::analytics`]): its
/// hour, its day's breakdowns, and its visitor (once per day, however often they click).
fn aggregates(click: &Click, out: &mut Vec<Mutation>) {
    let link_id = click.link_id;
    let day = click.at.0.div_euclid(DAY_MS);
    let hour = click.at.0.div_euclid(HOUR_MS) * HOUR_MS;
    out.push(Mutation::AddCount { link_id, name: analytics::hour(hour), n: 1 });
    for dim in Dimension::ALL {
        if let Some(value) = value(click, dim) {
            out.push(Mutation::AddCount { link_id, name: analytics::dim(day, dim, value), n: 1 });
        }
    }
    if let Some(v) = &click.visitor {
        out.push(Mutation::AddVisitor { link_id, day, visitor: v.clone() });
    }
}

/// A counted orphan visit adds one to its kind's hour, under the orphans' own
/// aggregates ([`analytics::ORPHANS`]): never to a link's counts, and no `/events` row
/// (what an unknown path asks for is the visitor's, not a link's, and unbounded).
fn orphan(orphan: &Orphan, out: &mut Vec<Mutation>) {
    if !orphan.counted() {
        return;
    }
    let hour = orphan.at.0.div_euclid(HOUR_MS) * HOUR_MS;
    out.push(Mutation::AddCount { link_id: analytics::ORPHANS, name: analytics::orphan_hour(hour, orphan.orphan), n: 1 });
}

/// A counted click (not a bot, not a HEAD request) adds one to its link's count and one
/// row to `/events`. Clicks that do not count stay in the clicks topic, flagged.
pub fn apply(input: Input<'_>, out: &mut Vec<Mutation>) {
    let (click, partition, offset) = match input {
        Input::Click { click, partition, offset } => (click, partition, offset),
        Input::Orphan { orphan: o } => return orphan(o, out),
        Input::Event { .. } => return,
    };
    if !click.counted() {
        return;
    }
    out.push(Mutation::AddClicks { link_id: click.link_id, n: 1 });
    aggregates(click, out);
    let mut details = serde_json::Map::new();
    details.insert("short_code".into(), json!(click.code));
    let mut put = |k: &str, v: Option<&str>| {
        if let Some(v) = v {
            details.insert(k.into(), Value::String(v.to_string()));
        }
    };
    put("referrer", click.referrer_host.as_deref());
    // v1 records carried the raw header; v2 records carry its class.
    put("user_agent", click.user_agent.as_deref());
    if let Some(a) = &click.agent {
        put("browser", Some(&a.browser));
        put("os", Some(&a.os));
        put("device", Some(a.device.as_str()));
    }
    put("country", click.country.as_deref());
    put("utm_source", click.utm.source.as_deref());
    put("utm_medium", click.utm.medium.as_deref());
    put("utm_campaign", click.utm.campaign.as_deref());
    put("utm_term", click.utm.term.as_deref());
    put("utm_content", click.utm.content.as_deref());
    out.push(Mutation::PutHistory(HistoryEvent {
        id: Id::for_click(partition, offset),
        url_id: click.link_id,
        user_id: click.owner_id,
        event_type: "click".into(),
        timestamp: click.at,
        details,
    }));
}
