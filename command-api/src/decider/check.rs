//! The log checker: reads an events topic's records and reports every alias granted
//! twice, every id minted twice and every command decided twice. Pure: the caller
//! reads the log (by the claims rule, as every reader does, for what kurz holds true;
//! raw, to see what stale writers left behind). Sealed personal data is not opened: the
//! checker reads only ids, codes and command ids.

use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};

#[derive(Deserialize)]
struct Peek {
    #[serde(rename = "type")]
    kind: String,
    command_id: String,
    id: u64,
    link: Option<PeekObj>,
    user: Option<PeekObj>,
}

#[derive(Deserialize)]
struct PeekObj {
    id: u64,
    short_code: Option<String>,
    /// A link's domain: a code is granted once per domain.
    domain: Option<String>,
}

/// How many examples of each problem a report lists.
const EXAMPLES: usize = 20;

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Problems {
    pub count: u64,
    pub examples: Vec<String>,
}

impl Problems {
    fn add(&mut self, what: String) {
        self.count += 1;
        if self.examples.len() < EXAMPLES {
            self.examples.push(what);
        }
    }
}

/// What the checker found.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub events: u64,
    pub aliases_granted_twice: Problems,
    pub ids_minted_twice: Problems,
    pub commands_decided_twice: Problems,
    /// Records that are not kurz events (another version, damage): not checked.
    pub unreadable: Problems,
    /// How many commands created how many links: `{1: 19990, 250: 4}` is 19990 single
    /// creates and 4 imports of 250 rows. A single create counted under 2 is a command
    /// whose links were created twice.
    pub links_created_per_command: std::collections::BTreeMap<u64, u64>,
}

impl Report {
    pub fn problems(&self) -> u64 {
        self.aliases_granted_twice.count + self.ids_minted_twice.count + self.commands_decided_twice.count + self.unreadable.count
    }

    pub fn render(&self) -> String {
        let mut s = format!("{} events checked, {} problems\n", self.events, self.problems());
        for (name, p) in [
            ("aliases granted twice", &self.aliases_granted_twice),
            ("ids minted twice", &self.ids_minted_twice),
            ("commands decided twice", &self.commands_decided_twice),
            ("unreadable records", &self.unreadable),
        ] {
            s.push_str(&format!("  {name}: {}\n", p.count));
            for e in &p.examples {
                s.push_str(&format!("    {e}\n"));
            }
        }
        let per: Vec<String> = self.links_created_per_command.iter().map(|(links, commands)| format!("{links} × {commands}")).collect();
        s.push_str(&format!("  link_created per command (links × commands): {}\n", per.join(", ")));
        s
    }
}

/// Feed it every event record, partition by partition in offset order.
#[derive(Default)]
pub struct Checker {
    report: Report,
    codes: HashMap<String, String>,
    link_ids: HashSet<u64>,
    user_ids: HashSet<u64>,
    event_ids: HashSet<u64>,
    decided: HashMap<String, String>,
    links_by_command: HashMap<String, u64>,
}

impl Checker {
    pub fn new() -> Checker {
        Checker::default()
    }

    /// Checks one record's payload; `at` names it in the report (`partition/offset`).
    pub fn add(&mut self, at: &str, payload: &[u8]) {
        self.report.events += 1;
        let Ok(ev) = serde_json::from_slice::<Peek>(payload) else {
            self.report.unreadable.add(at.to_string());
            return;
        };
        if !self.event_ids.insert(ev.id) {
            self.report.ids_minted_twice.add(format!("event id {} again at {at}", ev.id));
        }
        match (ev.kind.as_str(), ev.link, ev.user) {
            ("link_created", Some(link), _) => {
                if let Some(code) = link.short_code {
                    let code = kurz_schemas::domain::lookup_key(link.domain.as_deref(), &code).into_owned();
                    if let Some(first) = self.codes.insert(code.clone(), at.to_string()) {
                        self.report.aliases_granted_twice.add(format!("'{code}' at {first} and {at}"));
                    }
                }
                if !self.link_ids.insert(link.id) {
                    self.report.ids_minted_twice.add(format!("link id {} again at {at}", link.id));
                }
                *self.links_by_command.entry(ev.command_id.clone()).or_default() += 1;
            }
            ("user_created", _, Some(user)) if !self.user_ids.insert(user.id) => {
                self.report.ids_minted_twice.add(format!("user id {} again at {at}", user.id));
            }
            ("decided", _, _) => {
                if let Some(first) = self.decided.insert(ev.command_id.clone(), at.to_string()) {
                    self.report.commands_decided_twice.add(format!("command {} at {first} and {at}", ev.command_id));
                }
            }
            _ => {}
        }
    }

    pub fn report(mut self) -> Report {
        for n in self.links_by_command.values() {
            *self.report.links_created_per_command.entry(*n).or_default() += 1;
        }
        self.report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decider::{decide, state::PartitionState};
    use kurz_schemas::{Actor, Command, CommandBody, CommandId, ShortCode, TargetUrl, Ts};

    fn create(id: &str, code: &str) -> Command {
        Command::new(
            CommandId(id.into()),
            Actor::Anonymous,
            CommandBody::CreateLink {
                code: ShortCode::parse(code).unwrap(),
                custom: true,
                original_url: TargetUrl::parse("https://example.com/").unwrap(),
                title: None,
                user_id: None,
                existing_ok: false,
                options: Default::default(),
                domain: None,
            },
        )
    }

    #[test]
    fn finds_an_alias_granted_twice_an_id_minted_twice_and_a_command_decided_twice() {
        // Two deciders restored from the same (empty) history decide the same alias.
        let (mut a, mut b) = (PartitionState::new(0), PartitionState::new(0));
        let now = Ts(1_764_646_000_000);
        let mut checker = Checker::new();
        let evs_a = decide::handle(&mut a, &create("c1", "twice"), now);
        let evs_b = decide::handle(&mut b, &create("c1", "twice"), now);
        for (i, e) in evs_a.iter().chain(&evs_b).enumerate() {
            checker.add(&format!("0/{i}"), &e.encode());
        }
        checker.add("0/9", b"not json");
        let r = checker.report();
        assert_eq!(r.events, 5);
        assert_eq!(r.aliases_granted_twice.count, 1);
        assert_eq!(r.aliases_granted_twice.examples, vec!["'twice' at 0/0 and 0/2".to_string()]);
        // Same partition, same clock: the link id and both event ids repeat.
        assert_eq!(r.ids_minted_twice.count, 3, "{:?}", r.ids_minted_twice);
        assert_eq!(r.commands_decided_twice.count, 1);
        assert_eq!(r.links_created_per_command, [(2, 1)].into(), "one command, two links");
        assert_eq!(r.unreadable.count, 1);
        assert_eq!(r.problems(), 6);
        assert!(r.render().contains("aliases granted twice: 1"));
    }

    #[test]
    fn one_decider_s_history_is_clean() {
        let mut s = PartitionState::new(0);
        let mut checker = Checker::new();
        let now = Ts(1_764_646_000_000);
        let mut i = 0;
        for (id, code) in [("a", "one"), ("b", "two"), ("c", "one")] {
            for e in decide::handle(&mut s, &create(id, code), now) {
                checker.add(&format!("0/{i}"), &e.encode());
                i += 1;
            }
        }
        let r = checker.report();
        assert_eq!((r.events, r.problems()), (5, 0), "{r:?}");
        assert_eq!(r.links_created_per_command, [(1, 2)].into(), "two creates of one link each (the third was refused)");
    }

    #[test]
    fn one_code_on_two_domains_is_two_aliases() {
        let mut s = PartitionState::new(0);
        let mut checker = Checker::new();
        let on_go = match create("b", "promo").body {
            CommandBody::CreateLink { code, custom, original_url, title, user_id, existing_ok, options, .. } => CommandBody::CreateLink {
                code,
                custom,
                original_url,
                title,
                user_id,
                existing_ok,
                options,
                domain: Some(kurz_schemas::DomainHost::parse("go.example").unwrap()),
            },
            other => other,
        };
        let now = Ts(1_764_646_000_000);
        let events: Vec<_> = [create("a", "promo"), Command::new(CommandId("b".into()), Actor::Anonymous, on_go)]
            .iter()
            .flat_map(|c| decide::handle(&mut s, c, now))
            .collect();
        for (i, e) in events.iter().enumerate() {
            checker.add(&format!("0/{i}"), &e.encode());
        }
        let r = checker.report();
        assert_eq!((r.events, r.problems()), (4, 0), "{r:?}");
    }
}
