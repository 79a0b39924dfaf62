//! What the decider tests share: link commands routed over `PARTITIONS` command
//! partitions, appended as the command-api would, and the deciders' metrics by partition.
#![allow(dead_code)]

use kurz_schemas::{headers, topics, Actor, Command, CommandBody, CommandId, ShortCode, TargetUrl};
use kurz_storage::log::{partition_for, EventLog, NewRecord};

pub const PARTITIONS: u32 = 4;

/// A custom-code create of `code` under command id `id`.
pub fn create(id: &str, code: &str) -> Command {
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

pub fn partition_of(cmd: &Command) -> u32 {
    partition_for(&cmd.key(), PARTITIONS)
}

/// Appends `cmd` (it carries no personal data) to its commands partition.
pub async fn submit(log: &dyn EventLog, cmd: &Command) {
    let rec = NewRecord::new(cmd.key(), cmd.encode()).header(headers::COMMAND_ID, cmd.id.as_str());
    log.append(topics::COMMANDS, partition_of(cmd), vec![rec]).await.unwrap();
}

/// The value of metric `name` (a counter or a gauge) for partition `p`.
pub fn metric(name: &str, p: u32) -> f64 {
    prometheus::gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().to_vec())
        .filter(|m| m.get_label().iter().any(|l| l.name() == "partition" && l.value() == p.to_string()))
        .map(|m| m.get_counter().get_value() + m.get_gauge().get_value())
        .sum()
}
