use super::Clicks;
use crate::projections::{Input, Projection};
use kurz_schemas::analytics::{self, Dimension};
use kurz_schemas::{Agent, Click, Device, Id, Ts, Utm};
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

/// The stats route reads the dimensions of `Dimension::ALL` by the schemas' parsers: a
/// click with every field set writes one name per dimension, and nothing it writes is
/// a name the route would not read.
#[test]
fn every_name_a_click_writes_is_one_the_stats_route_reads() {
    let c = Click {
        referrer_host: Some("news.io:8080".into()),
        agent: Some(Agent { browser: "Safari".into(), os: "iOS".into(), device: Device::Mobile }),
        country: Some("DE".into()),
        utm: Utm { source: Some("mail".into()), ..Utm::default() },
        visitor: Some("v".into()),
        ..Click::new(Id::new(3).unwrap(), "abc", Ts(3 * analytics::DAY_MS + 5 * analytics::HOUR_MS + 7))
    };
    let mut out = Vec::new();
    Clicks.apply(Input::Click { click: &c, partition: 0, offset: 1 }, &mut out);
    let mut hours = Vec::new();
    let mut dims = Vec::new();
    for m in &out {
        let Mutation::AddCount { name, .. } = m else { continue };
        match (analytics::parse_hour(name), analytics::parse_dim(name)) {
            (Some(h), None) => hours.push(h),
            (None, Some((day, dim, value))) => dims.push((day, dim, value.to_string())),
            _ => panic!("{name} is read by neither of the stats route's parsers"),
        }
    }
    assert_eq!(hours, vec![3 * analytics::DAY_MS + 5 * analytics::HOUR_MS]);
    let values = ["news.io:8080", "Safari", "iOS", "mobile", "DE", "mail"];
    assert_eq!(dims, Dimension::ALL.into_iter().zip(values).map(|(d, v)| (3, d, v.to_string())).collect::<Vec<_>>());
    assert!(out.contains(&Mutation::AddVisitor { link_id: c.link_id, day: 3, visitor: "v".into() }));
}

#[test]
fn an_orphan_visit_counts_under_its_kind_and_hour_never_under_a_link() {
    use kurz_schemas::{Orphan, OrphanKind};
    let o = Orphan {
        orphan: OrphanKind::NotFound,
        at: Ts(analytics::HOUR_MS * 5 + 17),
        code: Some("nonexistent1".into()),
        link_id: None,
        referrer_host: Some("news.io".into()),
        agent: None,
        bot: false,
        head: false,
        visitor: Some("0123456789abcdef0123456789abcdef".into()),
        country: None,
    };
    let mut out = Vec::new();
    Clicks.apply(Input::Orphan { orphan: &o }, &mut out);
    assert_eq!(
        out,
        vec![Mutation::AddCount {
            link_id: analytics::ORPHANS,
            name: analytics::orphan_hour(analytics::HOUR_MS * 5, OrphanKind::NotFound),
            n: 1
        }]
    );
    // An expired link's orphan visit is still not its click.
    let mut out = Vec::new();
    Clicks.apply(
        Input::Orphan { orphan: &Orphan { orphan: OrphanKind::Expired, link_id: Some(Id::new(3).unwrap()), ..o.clone() } },
        &mut out,
    );
    assert!(matches!(&out[..], [Mutation::AddCount { link_id, .. }] if *link_id == analytics::ORPHANS), "{out:?}");
    for uncounted in [Orphan { bot: true, ..o.clone() }, Orphan { head: true, ..o.clone() }] {
        let mut out = Vec::new();
        Clicks.apply(Input::Orphan { orphan: &uncounted }, &mut out);
        assert!(out.is_empty(), "bots and HEAD requests are recorded, not counted");
    }
}
