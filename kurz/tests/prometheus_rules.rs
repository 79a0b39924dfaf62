//! The Prometheus alert and recording rules, unit-tested with `promtool test rules`
//! (Debian's `prometheus` package; scripts/test.sh installs it). A missing promtool is a
//! failure, not a skip.

use std::path::Path;
use std::process::Command;

#[test]
fn alert_rules_pass_their_promtool_tests() {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/prometheus/rules");
    let check = Command::new("promtool")
        .args(["check", "rules", "kurz.yml"])
        .current_dir(&rules)
        .output()
        .expect("promtool must be installed (apt-get install prometheus; scripts/test.sh does)");
    assert!(
        check.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let out = Command::new("promtool").args(["test", "rules", "kurz.test.yml"]).current_dir(&rules).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("SUCCESS"), "promtool test rules failed:\n{text}");
}

#[test]
fn the_scrape_config_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/prometheus");
    let out =
        Command::new("promtool").args(["check", "config", "--syntax-only", "prometheus.yml"]).current_dir(&dir).output().expect("promtool");
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}
