use super::Clicks;
use crate::projections::{Input, Projection};
use kurz_schemas::{Agent, Click, Device, Id, Ts};
use kurz_storage::store::Mutation;

#[test]
fn a_click_counts_once_and_gets_a_position_derived_id() {
    let c = Click {
        referrer_host: Some("news.io".into()),
        agent: Some(Agent { browser: "Firefox".into(), os: "Linux".into(), device: Device::Desktop }),
        country: Some("NL".into()),
        ..Click::new(Id::new(3).unwrap(), "abc", Ts(9))
    };
    let mut a = Vec::new();
    let mut b = Vec::new();
    Clicks.apply(Input::Click { click: &c, partition: 1, offset: 77 }, &mut a);
    Clicks.apply(Input::Click { click: &c, partition: 1, offset: 77 }, &mut b);
    assert_eq!(a, b, "the same record maps to the same mutations");
    assert_eq!(a[0], Mutation::AddClicks { link_id: c.link_id, n: 1 });
    let names: Vec<&str> = a
        .iter()
        .filter_map(|m| match m {
            Mutation::AddCount { name, n: 1, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        names,
        vec![
            "h:0000000000000",
            "d:000000:referrer:news.io",
            "d:000000:browser:Firefox",
            "d:000000:os:Linux",
            "d:000000:device:desktop",
            "d:000000:country:NL"
        ]
    );
    match a.last().unwrap() {
        Mutation::PutHistory(h) => {
            assert_eq!(h.id, Id::for_click(1, 77));
            assert_eq!(h.event_type, "click");
            assert_eq!(h.details["referrer"], "news.io");
            assert_eq!(
                (h.details["browser"].as_str(), h.details["device"].as_str(), h.details["country"].as_str()),
                (Some("Firefox"), Some("desktop"), Some("NL"))
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn bots_and_head_requests_are_not_counted() {
    for c in [
        Click { bot: true, ..Click::new(Id::new(3).unwrap(), "abc", Ts(9)) },
        Click { head: true, ..Click::new(Id::new(3).unwrap(), "abc", Ts(9)) },
    ] {
        let mut out = Vec::new();
        Clicks.apply(Input::Click { click: &c, partition: 0, offset: 1 }, &mut out);
        assert!(out.is_empty(), "{c:?} produced {out:?}");
    }
}
