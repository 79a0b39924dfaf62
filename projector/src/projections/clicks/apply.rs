use crate::Input;
use kurz_schemas::{HistoryEvent, Id};
use kurz_storage::store::Mutation;
use serde_json::{json, Value};

pub fn apply(input: Input<'_>, out: &mut Vec<Mutation>) {
    let Input::Click { click, partition, offset } = input else { return };
    out.push(Mutation::AddClicks { link_id: click.link_id, n: 1 });
    let mut details = serde_json::Map::new();
    details.insert("short_code".into(), json!(click.code));
    if let Some(r) = &click.referrer_host {
        details.insert("referrer".into(), Value::String(r.clone()));
    }
    if let Some(ua) = &click.user_agent {
        details.insert("user_agent".into(), Value::String(ua.clone()));
    }
    out.push(Mutation::PutHistory(HistoryEvent {
        id: Id::for_click(partition, offset),
        url_id: click.link_id,
        user_id: click.owner_id,
        event_type: "click".into(),
        timestamp: click.at,
        details,
    }));
}
