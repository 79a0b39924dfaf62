use crate::Input;
use kurz_schemas::EventBody;
use kurz_storage::store::Mutation;

pub fn apply(input: Input<'_>, out: &mut Vec<Mutation>) {
    let Input::Event { event, .. } = input else { return };
    match &event.body {
        EventBody::DomainRegistered { domain } => out.push(Mutation::PutDomain(domain.clone())),
        EventBody::DomainDeleted { domain } => out.push(Mutation::DeleteDomain(domain.clone())),
        _ => {}
    }
}
