use crate::Input;
use kurz_schemas::EventBody;
use kurz_storage::store::{Mutation, VersionedLink};

pub fn apply(input: Input<'_>, out: &mut Vec<Mutation>) {
    let Input::Event { event, offset, .. } = input else { return };
    match &event.body {
        EventBody::LinkCreated { link, .. } | EventBody::LinkUpdated { link } => {
            out.push(Mutation::PutLink(VersionedLink { link: link.clone(), version: offset }))
        }
        EventBody::LinkDeleted { link } => out.push(Mutation::DeleteLink(VersionedLink { link: link.clone(), version: offset })),
        _ => {}
    }
}
