use super::Domains;
use crate::projections::{Input, Projection};
use kurz_schemas::{CommandId, Domain, Event, EventBody, Id, Ts};
use kurz_storage::store::Mutation;

#[test]
fn domain_events_become_absolute_puts_and_deletes_and_nothing_else_does() {
    let domain = Domain {
        host: "go.example".into(),
        base_url_redirect: None,
        not_found_redirect: Some("https://example.com/404".into()),
        expired_redirect: None,
        created_at: Ts(1),
        updated_at: Ts(2),
    };
    let ev = |body| Event { id: Id::new(100).unwrap(), command_id: CommandId("c".into()), at: Ts(1), body };
    let put = ev(EventBody::DomainRegistered { domain: domain.clone() });
    let gone = ev(EventBody::DomainDeleted { domain: domain.clone() });
    let other = ev(EventBody::IdsReserved { kind: kurz_schemas::IdKind::Link, ids: vec![] });
    let mut out = Vec::new();
    for e in [&put, &put, &other, &gone] {
        Domains.apply(Input::Event { event: e, partition: 0, offset: 1 }, &mut out);
    }
    assert_eq!(out, vec![Mutation::PutDomain(domain.clone()), Mutation::PutDomain(domain.clone()), Mutation::DeleteDomain(domain)]);
}
