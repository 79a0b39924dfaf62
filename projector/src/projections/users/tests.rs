use super::Users;
use crate::projections::{Input, Projection};
use kurz_schemas::{CommandId, Event, EventBody, Id, Ts, User};
use kurz_storage::store::Mutation;

#[test]
fn user_events_become_absolute_puts_and_deletes() {
    let user = User::new(Id::new(7).unwrap(), "a@b.io".into(), None, Ts(1), None);
    let ev = |body| Event { id: Id::new(100).unwrap(), command_id: CommandId("c".into()), at: Ts(1), body };
    let created = ev(EventBody::UserCreated { user: user.clone(), imported: false });
    let deleted = ev(EventBody::UserDeleted { user: user.clone() });
    let mut out = Vec::new();
    for e in [&created, &created, &deleted] {
        Users.apply(Input::Event { event: e, partition: 0, offset: 1 }, &mut out);
    }
    assert_eq!(out, vec![Mutation::PutUser(user.clone()), Mutation::PutUser(user.clone()), Mutation::DeleteUser(user)]);
}
