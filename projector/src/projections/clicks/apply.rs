use crate::Input;
use kurz_schemas::{HistoryEvent, Id};
use kurz_storage::store::Mutation;
use serde_json::{json, Value};

/// A counted click (not a bot, not a HEAD request) adds one to its link's count and one
/// row to `/events`. Clicks that do not count stay in the clicks topic, flagged.
pub fn apply(input: Input<'_>, out: &mut Vec<Mutation>) {
    let Input::Click { click, partition, offset } = input else { return };
    if !click.counted() {
        return;
    }
    out.push(Mutation::AddClicks { link_id: click.link_id, n: 1 });
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
