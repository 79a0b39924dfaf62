use crate::Input;
use kurz_schemas::EventBody;
use kurz_storage::store::Mutation;

pub fn apply(input: Input<'_>, out: &mut Vec<Mutation>) {
    let Input::Event { event, .. } = input else { return };
    match &event.body {
        EventBody::UserCreated { user, .. } | EventBody::UserUpdated { user } => out.push(Mutation::PutUser(user.clone())),
        EventBody::UserDeleted { user } => out.push(Mutation::DeleteUser(user.clone())),
        _ => {}
    }
}
