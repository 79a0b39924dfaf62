use crate::Input;
use kurz_schemas::EventBody;
use kurz_storage::store::Mutation;

pub fn apply(input: Input<'_>, out: &mut Vec<Mutation>) {
    let Input::Event { event, .. } = input else { return };
    match &event.body {
        // An erased user (read after its key was destroyed) is always followed by its
        // deletion: nothing of it is stored.
        EventBody::UserCreated { user, .. } | EventBody::UserUpdated { user } if user.erased => {}
        EventBody::UserCreated { user, .. } | EventBody::UserUpdated { user } => out.push(Mutation::PutUser(user.clone())),
        EventBody::UserDeleted { user } => out.push(Mutation::DeleteUser(user.clone())),
        _ => {}
    }
}
