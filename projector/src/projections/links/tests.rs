use super::{cache_entry, Links};
use crate::projections::{Input, Projection};
use kurz_schemas::{CachedLink, CommandId, Event, EventBody, Id, Link, Ts};
use kurz_storage::store::{Mutation, VersionedLink};

fn link() -> Link {
    Link {
        domain: None,
        id: Id::new(5).unwrap(),
        short_code: "abc1234".into(),
        original_url: "https://x.io".into(),
        title: None,
        is_active: true,
        user_id: None,
        created_at: Ts(1),
        updated_at: Ts(1),
        options: Default::default(),
    }
}

#[test]
fn link_events_carry_their_offset_as_version() {
    let link = link();
    let ev = |body| Event { id: Id::new(100).unwrap(), command_id: CommandId("c".into()), at: Ts(1), body };
    let mut out = Vec::new();
    Links.apply(
        Input::Event { event: &ev(EventBody::LinkCreated { link: link.clone(), imported: false }), partition: 2, offset: 10 },
        &mut out,
    );
    Links.apply(Input::Event { event: &ev(EventBody::LinkDeleted { link: link.clone() }), partition: 2, offset: 11 }, &mut out);
    Links.apply(
        Input::Event {
            event: &ev(EventBody::Decided { status: 200, answer: kurz_schemas::event::Answer::Deleted { id: link.id }, fingerprint: None }),
            partition: 2,
            offset: 12,
        },
        &mut out,
    );
    assert_eq!(
        out,
        vec![
            Mutation::PutLink(VersionedLink { link: link.clone(), version: 10 }),
            Mutation::DeleteLink(VersionedLink { link, version: 11 })
        ]
    );
}

/// The projector offers the cache what its mutations leave, an edge following the log
/// what the events leave: the same entries.
#[test]
fn the_cache_gets_what_the_event_leaves() {
    let l = link();
    for body in [
        EventBody::LinkCreated { link: l.clone(), imported: true },
        EventBody::LinkUpdated { link: l.clone() },
        EventBody::LinkDeleted { link: l.clone() },
    ] {
        let event = Event { id: Id::new(100).unwrap(), command_id: CommandId("c".into()), at: Ts(1), body };
        let mut out = Vec::new();
        Links.apply(Input::Event { event: &event, partition: 0, offset: 33 }, &mut out);
        let offered: Vec<(std::borrow::Cow<'_, str>, CachedLink)> = out.iter().filter_map(cache_entry).collect();
        assert_eq!(offered, vec![CachedLink::of_event(&event.body, 33).unwrap()], "{:?}", event.body);
    }
}
