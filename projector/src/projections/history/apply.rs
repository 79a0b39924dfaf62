use crate::Input;
use kurz_schemas::{EventBody, HistoryEvent, Link};
use kurz_storage::store::Mutation;
use serde_json::{json, Map, Value};

fn row(event_id: kurz_schemas::Id, link: &Link, kind: &str, at: kurz_schemas::Ts, details: Value) -> Mutation {
    let details = match details {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    Mutation::PutHistory(HistoryEvent {
        id: event_id,
        url_id: link.id,
        user_id: link.user_id,
        event_type: kind.into(),
        timestamp: at,
        details,
    })
}

pub fn apply(input: Input<'_>, out: &mut Vec<Mutation>) {
    let Input::Event { event, .. } = input else { return };
    match &event.body {
        // Imported links bring their own history (see `/events/bulk`).
        EventBody::LinkCreated { link, imported: false } => {
            out.push(row(event.id, link, "created", event.at, json!({ "short_code": link.short_code, "original_url": link.original_url })))
        }
        EventBody::LinkUpdated { link } => out.push(row(
            event.id,
            link,
            "updated",
            event.at,
            json!({ "original_url": link.original_url, "title": link.title, "is_active": link.is_active }),
        )),
        EventBody::LinkDeleted { link } => out.push(row(event.id, link, "deleted", event.at, json!({ "short_code": link.short_code }))),
        EventBody::EventRecorded { event: e } => out.push(Mutation::PutHistory(e.clone())),
        _ => {}
    }
}
