use crate::Input;
use kurz_schemas::event::Answer;
use kurz_schemas::EventBody;
use kurz_storage::store::{Mutation, StoredOutcome};

pub fn apply(input: Input<'_>, out: &mut Vec<Mutation>) {
    let Input::Event { event, .. } = input else { return };
    if let EventBody::Decided { status, answer, fingerprint } = &event.body {
        out.push(Mutation::PutOutcome {
            command_id: event.command_id.as_str().to_string(),
            outcome: StoredOutcome { status: *status, answer: impersonal(answer), at: event.at, fingerprint: fingerprint.clone() },
        });
    }
}

/// An outcome keeps no personal data: a user's answer is completed from its row when
/// it is read (`command-api`'s submit), so an erasure leaves no copy here, and a
/// replay after one stores the same outcome as before it.
fn impersonal(answer: &Answer) -> Answer {
    match answer {
        Answer::User { user } => Answer::User { user: user.impersonal() },
        other => other.clone(),
    }
}
