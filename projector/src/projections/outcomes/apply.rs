use crate::Input;
use kurz_schemas::EventBody;
use kurz_storage::store::{Mutation, StoredOutcome};

pub fn apply(input: Input<'_>, out: &mut Vec<Mutation>) {
    let Input::Event { event, .. } = input else { return };
    if let EventBody::Decided { status, answer, fingerprint } = &event.body {
        out.push(Mutation::PutOutcome {
            command_id: event.command_id.as_str().to_string(),
            outcome: StoredOutcome { status: *status, answer: answer.clone(), at: event.at, fingerprint: fingerprint.clone() },
        });
    }
}
