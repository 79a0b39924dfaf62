use super::Clicks;
use crate::projections::{Input, Projection};
use kurz_schemas::{Click, Id, Ts};
use kurz_storage::store::Mutation;

#[test]
fn a_click_counts_once_and_gets_a_position_derived_id() {
    let c = Click {
        link_id: Id::new(3).unwrap(),
        code: "abc".into(),
        at: Ts(9),
        referrer_host: Some("news.io".into()),
        user_agent: None,
        owner_id: None,
    };
    let mut a = Vec::new();
    let mut b = Vec::new();
    Clicks.apply(Input::Click { click: &c, partition: 1, offset: 77 }, &mut a);
    Clicks.apply(Input::Click { click: &c, partition: 1, offset: 77 }, &mut b);
    assert_eq!(a, b, "the same record maps to the same mutations");
    assert_eq!(a[0], Mutation::AddClicks { link_id: c.link_id, n: 1 });
    match &a[1] {
        Mutation::PutHistory(h) => {
            assert_eq!(h.id, Id::for_click(1, 77));
            assert_eq!(h.event_type, "click");
            assert_eq!(h.details["referrer"], "news.io");
        }
        other => panic!("{other:?}"),
    }
}
