use super::Outcomes;
use crate::projections::{Input, Projection};
use kurz_schemas::event::Answer;
use kurz_schemas::{CommandId, Event, EventBody, Id, Ts};
use kurz_storage::store::{Mutation, StoredOutcome};

#[test]
fn decided_events_become_outcomes_keyed_by_command() {
    let answer = Answer::Rejected { message: "nope".into() };
    let ev = Event {
        id: Id::new(1).unwrap(),
        command_id: CommandId("cmd-9".into()),
        at: Ts(5),
        body: EventBody::Decided { status: 409, answer: answer.clone(), fingerprint: Some("f".into()) },
    };
    let mut out = Vec::new();
    Outcomes.apply(Input::Event { event: &ev, partition: 0, offset: 0 }, &mut out);
    assert_eq!(
        out,
        vec![Mutation::PutOutcome {
            command_id: "cmd-9".into(),
            outcome: StoredOutcome { status: 409, answer, at: Ts(5), fingerprint: Some("f".into()) }
        }]
    );
}
