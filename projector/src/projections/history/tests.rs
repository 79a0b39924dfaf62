use super::History;
use crate::projections::{Input, Projection};
use kurz_schemas::{CommandId, Event, EventBody, Id, Link, Ts};
use kurz_storage::store::Mutation;

fn link() -> Link {
    Link {
        domain: None,
        id: Id::new(5).unwrap(),
        short_code: "abc1234".into(),
        original_url: "https://x.io".into(),
        title: None,
        is_active: true,
        user_id: Some(Id::new(9).unwrap()),
        created_at: Ts(1),
        updated_at: Ts(1),
        options: Default::default(),
    }
}

#[test]
fn lifecycle_rows_use_the_event_id_and_skip_imports() {
    let ev = |id: u64, body| Event { id: Id::new(id).unwrap(), command_id: CommandId("c".into()), at: Ts(42), body };
    let mut out = Vec::new();
    History.apply(
        Input::Event { event: &ev(100, EventBody::LinkCreated { link: link(), imported: false }), partition: 0, offset: 0 },
        &mut out,
    );
    History.apply(
        Input::Event { event: &ev(101, EventBody::LinkCreated { link: link(), imported: true }), partition: 0, offset: 1 },
        &mut out,
    );
    History.apply(Input::Event { event: &ev(102, EventBody::LinkDeleted { link: link() }), partition: 0, offset: 2 }, &mut out);
    let rows: Vec<_> = out
        .iter()
        .map(|m| match m {
            Mutation::PutHistory(h) => (h.id.get(), h.event_type.clone(), h.url_id.get(), h.user_id.map(|u| u.get()), h.timestamp),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(rows, vec![(100, "created".into(), 5, Some(9), Ts(42)), (102, "deleted".into(), 5, Some(9), Ts(42))]);
}
