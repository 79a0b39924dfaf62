//! The production deployment description (`docker-compose.yml` and `infra/`) is valid
//! and complete.
//!
//! `docker-compose config` (Debian's docker-compose 1.29, which needs no Docker engine)
//! validates the file against the compose schema, resolves anchors, merges and
//! variables, and prints the result; the checks below read that resolved output. A
//! missing `docker-compose` fails the test: it is never skipped.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ROLES: [&str; 4] = ["command-api", "projector", "query-edge", "watchdog"];
const BACKENDS: [&str; 3] = ["kafka", "scylla", "redis"];
const SERVICES: [&str; 11] =
    ["command-api", "projector", "query-edge", "watchdog", "kafka", "scylla", "redis", "prometheus", "grafana", "otel-collector", "nginx"];

const SECRET: &str = "test-secret-value-0123456789abcdef";
const ADMIN_TOKEN: &str = "test-admin-token-value-0123456789abcdef";
const GRAFANA_PASSWORD: &str = "test-grafana-password";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("kurz/ sits in the workspace root").to_path_buf()
}

fn compose_file() -> PathBuf {
    repo_root().join("docker-compose.yml")
}

/// Runs `docker-compose config` on `file` with the repo root as project directory, in
/// an environment that holds only the variables given (no inherited `KURZ_*`,
/// `GRAFANA_*`, `COMPOSE_*` and no `.env` file), so the result depends on the file alone.
fn compose_config(file: &Path, vars: &[(&str, &str)]) -> Output {
    let root = repo_root();
    let scratch = tempfile::tempdir().expect("tempdir");
    let empty_env = scratch.path().join("empty.env");
    std::fs::write(&empty_env, "").expect("write empty env file");

    let mut cmd = Command::new("docker-compose");
    cmd.arg("--project-directory").arg(&root).arg("--env-file").arg(&empty_env).arg("-f").arg(file).arg("config").current_dir(&root);
    for (k, _) in std::env::vars_os() {
        let name = k.to_string_lossy();
        if name.starts_with("KURZ_") || name.starts_with("GRAFANA_") || name.starts_with("COMPOSE_") {
            cmd.env_remove(&k);
        }
    }
    cmd.envs(vars.iter().copied());
    match cmd.output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "docker-compose is not installed (not found on PATH). This test validates docker-compose.yml and is never \
             skipped: install Debian's docker-compose (`apt-get install docker-compose`; scripts/test.sh does it)."
        ),
        Err(e) => panic!("could not run docker-compose: {e}"),
    }
}

fn all_secrets() -> Vec<(&'static str, &'static str)> {
    vec![("KURZ_SECRET", SECRET), ("KURZ_ADMIN_TOKEN", ADMIN_TOKEN), ("GRAFANA_ADMIN_PASSWORD", GRAFANA_PASSWORD)]
}

/// The resolved configuration of the repo's compose file; panics with docker-compose's
/// own message if it does not validate or warns.
fn resolved_config() -> String {
    let out = compose_config(&compose_file(), &all_secrets());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "docker-compose config rejected docker-compose.yml ({}):\n{stderr}", out.status);
    assert!(!stderr.to_lowercase().contains("warn"), "docker-compose config warned:\n{stderr}");
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Every `env = "KURZ_..."` name the configuration reads.
fn config_env_names() -> BTreeSet<String> {
    let src = std::fs::read_to_string(repo_root().join("kurz/src/config.rs")).expect("read kurz/src/config.rs");
    let mut names = BTreeSet::new();
    let mut rest = src.as_str();
    while let Some(i) = rest.find("env = \"") {
        rest = &rest[i + "env = \"".len()..];
        let end = rest.find('"').expect("closing quote");
        if rest[..end].starts_with("KURZ_") {
            names.insert(rest[..end].to_string());
        }
        rest = &rest[end..];
    }
    assert!(names.contains("KURZ_HTTP_ADDR") && names.len() >= 10, "could not read the settings from config.rs: {names:?}");
    names
}

// ---- a tiny reader for docker-compose's normalized YAML output ---------------------------
//
// `docker-compose config` prints block YAML with two-space indentation, mapping keys
// sorted, and sequence items (`- x`) at the indentation of their parent key. These
// helpers address a node by its exact indentation, which is all the checks need.

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// The lines nested under `key:` at exactly `indent` spaces (deeper lines, and sequence
/// items at the same indentation).
fn section<'a>(lines: &[&'a str], indent: usize, key: &str) -> Option<Vec<&'a str>> {
    let head = format!("{}{key}:", " ".repeat(indent));
    let start = lines.iter().position(|l| *l == head)?;
    Some(
        lines[start + 1..]
            .iter()
            .copied()
            .filter(|l| !l.trim().is_empty())
            .take_while(|l| indent_of(l) > indent || (indent_of(l) == indent && l.trim_start().starts_with("- ")))
            .collect(),
    )
}

fn unquote(v: &str) -> String {
    let v = v.trim();
    if v.len() >= 2 && v.starts_with('\'') && v.ends_with('\'') {
        v[1..v.len() - 1].replace("''", "'")
    } else if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
        v[1..v.len() - 1].replace("\\\"", "\"")
    } else {
        v.to_string()
    }
}

/// The scalar value of `key: value` at exactly `indent` spaces (its first line).
fn scalar(lines: &[&str], indent: usize, key: &str) -> Option<String> {
    let head = format!("{}{key}: ", " ".repeat(indent));
    lines.iter().find_map(|l| l.strip_prefix(head.as_str())).map(unquote)
}

/// The keys of the mapping whose entries sit at exactly `indent` spaces.
fn keys(lines: &[&str], indent: usize) -> Vec<String> {
    lines
        .iter()
        .filter(|l| indent_of(l) == indent && !l.trim_start().starts_with("- "))
        .filter_map(|l| l.trim_start().split_once(':').map(|(k, _)| k.to_string()))
        .collect()
}

/// The scalar items of the sequence whose items sit at exactly `indent` spaces.
fn items(lines: &[&str], indent: usize) -> Vec<String> {
    lines.iter().filter(|l| indent_of(l) == indent).filter_map(|l| l.trim_start().strip_prefix("- ")).map(unquote).collect()
}

struct Resolved<'a> {
    services: Vec<&'a str>,
}

impl<'a> Resolved<'a> {
    fn new(text: &'a str) -> Resolved<'a> {
        let lines: Vec<&str> = text.lines().collect();
        Resolved { services: section(&lines, 0, "services").expect("resolved config has services") }
    }

    fn names(&self) -> Vec<String> {
        keys(&self.services, 2)
    }

    fn service(&self, name: &str) -> Vec<&'a str> {
        section(&self.services, 2, name).unwrap_or_else(|| panic!("service {name} missing from the resolved config"))
    }
}

// ---- the checks ----------------------------------------------------------------------------

#[test]
fn compose_file_validates_and_has_every_service_with_a_health_check() {
    let text = resolved_config();
    let cfg = Resolved::new(&text);
    let names = cfg.names();
    for s in SERVICES {
        assert!(names.iter().any(|n| n == s), "service {s} missing; services: {names:?}");
    }
    for s in &names {
        let svc = cfg.service(s);
        let hc = section(&svc, 4, "healthcheck").unwrap_or_else(|| panic!("service {s} has no healthcheck"));
        assert!(!items(&hc, 6).is_empty() || scalar(&hc, 6, "test").is_some(), "service {s}: healthcheck without a test");
    }
    assert!(text.lines().any(|l| l.starts_with("version: ")), "resolved config has no version:\n{text}");
}

#[test]
fn every_role_sets_every_setting_and_runs_its_role_from_the_one_image() {
    let text = resolved_config();
    let cfg = Resolved::new(&text);
    // KURZ_CONFIG only names an optional env-style settings file; the compose file sets
    // every setting directly, so it may stay unset (and does).
    let required: Vec<String> = config_env_names().into_iter().filter(|n| n != "KURZ_CONFIG").collect();
    let mut images = BTreeSet::new();
    for role in ROLES {
        let svc = cfg.service(role);
        let env = section(&svc, 4, "environment").unwrap_or_else(|| panic!("{role} has no environment"));
        for name in &required {
            let value = scalar(&env, 6, name).unwrap_or_else(|| panic!("{role} does not set {name}"));
            // Settings whose absence is a choice (no CDN country header, no GeoIP
            // database) are present and may be empty: kurz reads empty as unset.
            let may_be_empty = ["KURZ_COUNTRY_HEADER", "KURZ_GEOIP_DB", "KURZ_CORS_ORIGINS", "KURZ_DENY_HOSTS", "KURZ_PREVIOUS_SECRETS"]
                .contains(&name.as_str());
            assert!(may_be_empty || !value.is_empty(), "{role} sets {name} to an empty value");
        }
        // The secrets come from the caller's environment, not from defaults in the file.
        assert_eq!(scalar(&env, 6, "KURZ_SECRET").as_deref(), Some(SECRET), "{role}: KURZ_SECRET");
        assert_eq!(scalar(&env, 6, "KURZ_ADMIN_TOKEN").as_deref(), Some(ADMIN_TOKEN), "{role}: KURZ_ADMIN_TOKEN");
        // The production backends.
        assert_eq!(scalar(&env, 6, "KURZ_LOG_URL").as_deref(), Some("kafka://kafka:9092"), "{role}");
        assert_eq!(scalar(&env, 6, "KURZ_STORE_URL").as_deref(), Some("scylla://scylla:9042/kurz"), "{role}");
        assert_eq!(scalar(&env, 6, "KURZ_CACHE_URL").as_deref(), Some("redis://redis:6379"), "{role}");
        assert_eq!(
            scalar(&env, 6, "KURZ_VAULT_URL").as_deref(),
            Some("scylla://scylla:9042/kurz_vault"),
            "{role}: one vault for every role"
        );
        assert!(scalar(&env, 6, "OTEL_EXPORTER_OTLP_ENDPOINT").is_some(), "{role}: OTEL_EXPORTER_OTLP_ENDPOINT");
        assert!(scalar(&env, 6, "OTEL_SERVICE_NAME").is_some(), "{role}: OTEL_SERVICE_NAME");

        let command = scalar(&svc, 4, "command").or_else(|| section(&svc, 4, "command").map(|c| items(&c, 4).join(" ")));
        assert_eq!(command.as_deref(), Some(role), "{role}: command must pick the role");

        let build = section(&svc, 4, "build").unwrap_or_else(|| panic!("{role} is not built from the Dockerfile"));
        assert_eq!(scalar(&build, 6, "context").map(PathBuf::from), Some(repo_root()), "{role}: build context");
        assert_eq!(scalar(&build, 6, "dockerfile").as_deref(), Some("Dockerfile"), "{role}: dockerfile");
        images.insert(scalar(&svc, 4, "image").unwrap_or_else(|| panic!("{role} names no image")));

        let deps = section(&svc, 4, "depends_on").unwrap_or_else(|| panic!("{role} has no depends_on"));
        for b in BACKENDS {
            let dep = section(&deps, 6, b).unwrap_or_else(|| panic!("{role} does not wait for {b}"));
            assert_eq!(scalar(&dep, 8, "condition").as_deref(), Some("service_healthy"), "{role} -> {b}");
        }
    }
    assert_eq!(images.len(), 1, "the roles must share one image: {images:?}");

    let nginx = cfg.service("nginx");
    let deps = section(&nginx, 4, "depends_on").expect("nginx has depends_on");
    for role in ["command-api", "query-edge"] {
        let dep = section(&deps, 6, role).unwrap_or_else(|| panic!("nginx does not wait for {role}"));
        assert_eq!(scalar(&dep, 8, "condition").as_deref(), Some("service_healthy"), "nginx -> {role}");
    }
}

#[test]
fn bind_mounted_configs_exist() {
    let text = resolved_config();
    let cfg = Resolved::new(&text);
    let mut mounted = 0;
    for s in cfg.names() {
        let svc = cfg.service(&s);
        let Some(volumes) = section(&svc, 4, "volumes") else { continue };
        for v in items(&volumes, 4) {
            let source = v.split(':').next().unwrap_or_default();
            if source.starts_with('/') {
                assert!(Path::new(source).exists(), "service {s} mounts {source}, which does not exist");
                mounted += 1;
            }
        }
    }
    assert!(mounted >= 5, "expected the infra/ configs to be bind-mounted; found {mounted} mounts");
}

#[test]
fn secrets_have_no_defaults() {
    for missing in ["KURZ_SECRET", "KURZ_ADMIN_TOKEN"] {
        let vars: Vec<_> = all_secrets().into_iter().filter(|(k, _)| *k != missing).collect();
        let out = compose_config(&compose_file(), &vars);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "docker-compose config accepted the file without {missing}");
        assert!(stderr.contains(&format!("set {missing}")), "the error should name {missing}:\n{stderr}");
    }
}

#[test]
fn validator_rejects_an_unknown_key() {
    let original = std::fs::read_to_string(compose_file()).expect("read docker-compose.yml");
    let dir = tempfile::tempdir().expect("tempdir");

    // The verbatim copy validates from the temporary location...
    let copy = dir.path().join("docker-compose.yml");
    std::fs::write(&copy, &original).expect("write copy");
    let out = compose_config(&copy, &all_secrets());
    assert!(out.status.success(), "the verbatim copy should validate:\n{}", String::from_utf8_lossy(&out.stderr));

    // ...and fails once a key the schema does not know is added to a service.
    let mut injected = String::new();
    let mut done = false;
    for line in original.lines() {
        injected.push_str(line);
        injected.push('\n');
        if line == "  nginx:" && !done {
            injected.push_str("    no_such_option_injected: true\n");
            done = true;
        }
    }
    assert!(done, "docker-compose.yml has no `  nginx:` service line to inject into");
    let bad = dir.path().join("bad.yml");
    std::fs::write(&bad, injected).expect("write injected copy");
    let out = compose_config(&bad, &all_secrets());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "docker-compose config accepted an unknown key; it is not validating");
    assert!(stderr.contains("no_such_option_injected"), "the error should name the unknown key:\n{stderr}");
}

/// nginx.conf without comments.
fn nginx_conf() -> String {
    let text = std::fs::read_to_string(repo_root().join("infra/nginx/nginx.conf")).expect("read infra/nginx/nginx.conf");
    text.lines().map(|l| l.split('#').next().unwrap_or_default()).collect::<Vec<_>>().join("\n")
}

/// The body of the first `<head> {` block in `text`.
fn block<'a>(text: &'a str, head: &str) -> Option<&'a str> {
    let start = text.find(head)? + head.len();
    let open = start + text[start..].find('{')? + 1;
    let mut depth = 1;
    for (i, c) in text[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&text[open..open + i]);
                }
            }
            _ => {}
        }
    }
    None
}

#[test]
fn nginx_sends_writes_to_command_api_and_reads_to_query_edge() {
    let conf = nginx_conf();
    let map =
        block(&conf, "map \"$request_method:$uri\" $kurz_upstream").expect("nginx.conf maps \"$request_method:$uri\" to $kurz_upstream");
    // The map as nginx evaluates it: exact keys, then regexes (`~`) in order, then the
    // default.
    let entries: Vec<(String, String)> = map
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.trim_end_matches(';').rsplit_once(char::is_whitespace).expect("a map entry: key value;");
            (k.trim().trim_matches('"').to_string(), v.trim().to_string())
        })
        .collect();
    let target = |method: &str, uri: &str| -> String {
        let key = format!("{method}:{uri}");
        let default = entries.iter().find(|(k, _)| k == "default").map(|(_, v)| v.clone()).expect("a default");
        if let Some((_, v)) = entries.iter().find(|(k, _)| !k.starts_with('~') && *k == key) {
            return v.clone();
        }
        entries
            .iter()
            .filter_map(|(k, v)| k.strip_prefix('~').map(|re| (regex::Regex::new(re).expect("a valid regex"), v)))
            .find(|(re, _)| re.is_match(&key))
            .map_or(default, |(_, v)| v.clone())
    };
    for m in ["POST", "PUT", "DELETE", "PATCH"] {
        for uri in ["/urls", "/users/5", "/users/5/api-keys", "/auth/logout"] {
            assert_eq!(target(m, uri), "command_api", "{m} {uri} must go to command-api");
        }
    }
    for m in ["GET", "HEAD"] {
        for uri in ["/abc1234", "/users", "/users/5", "/urls/7", "/events", "/health/ready", "/users/5/api-keys/x"] {
            assert_eq!(target(m, uri), "query_edge", "{m} {uri} must go to query-edge");
        }
        // The reads the command-api serves: a user's API keys, the domain registry.
        assert_eq!(target(m, "/users/5/api-keys"), "command_api", "{m} of a user's API keys");
        assert_eq!(target(m, "/domains"), "command_api", "{m} of the domain registry");
        assert_eq!(target(m, "/domains/go.example"), "command_api", "{m} of a domain");
        assert_eq!(target(m, "/domains/go.example/x"), "query_edge", "{m} under a domain is no route of its own");
    }
    // A protected link's password goes to the edge that answers the link; a POST under
    // any reserved name, in any case, is a write.
    for uri in ["/abc1234", "/abc1234/deep/path", "/a_b-c"] {
        assert_eq!(target("POST", uri), "query_edge", "POST {uri} is a link password");
    }
    for uri in ["/Users", "/URLS/5", "/shorten", "/links/create", "/auth/login", "/events/bulk", "/admin/replay"] {
        assert_eq!(target("POST", uri), "command_api", "POST {uri} is a write");
    }
    // Every name the HTTP API reserves, so a new one cannot be left out of the map.
    for name in kurz_schemas::values::RESERVED {
        assert_eq!(target("POST", &format!("/{name}")), "command_api", "POST /{name} is a write");
        assert_eq!(target("POST", &format!("/{}/x", name.to_uppercase())), "command_api", "POST /{name}/x is a write");
    }
    assert_eq!(target("PUT", "/abc1234"), "command_api");
    assert_eq!(target("OPTIONS", "/urls"), "query_edge");
    assert!(conf.contains("proxy_pass http://$kurz_upstream;"), "the server must proxy to $kurz_upstream");

    for (upstream, server) in [("command_api", "command-api:8080"), ("query_edge", "query-edge:8080")] {
        let body = block(&conf, &format!("upstream {upstream} ")).unwrap_or_else(|| panic!("no upstream {upstream}"));
        assert!(body.contains(&format!("server {server}")), "upstream {upstream} must point at {server}");
        assert!(body.contains("keepalive "), "upstream {upstream} must keep connections alive");
    }
    // Upstream keepalive needs HTTP/1.1 and a cleared Connection header.
    assert!(conf.contains("proxy_http_version 1.1;"));
    assert!(conf.contains("proxy_set_header Connection \"\";"));
}

#[test]
fn observability_configs_cover_the_roles() {
    let root = repo_root();
    let prom = std::fs::read_to_string(root.join("infra/prometheus/prometheus.yml")).expect("read prometheus.yml");
    for role in ROLES {
        assert!(prom.contains(&format!("job_name: {role}")), "prometheus.yml has no job for {role}");
        assert!(prom.contains(&format!("names: [{role}]")), "prometheus.yml does not discover {role}");
    }
    assert!(prom.contains("/etc/prometheus/rules/"), "prometheus.yml should load infra/prometheus/rules");
    assert!(root.join("infra/prometheus/rules").read_dir().map(|mut d| d.next().is_some()).unwrap_or(false));

    let dash = std::fs::read_to_string(root.join("infra/grafana/dashboards/kurz-overview.json")).expect("read dashboard");
    let dash: serde_json::Value = serde_json::from_str(&dash).expect("dashboard is JSON");
    let exprs: Vec<String> = dash["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_string))
        .collect();
    for metric in [
        "kurz_http_requests_total",
        "kurz_http_request_duration_seconds_bucket",
        "kurz_projector_lag_records",
        "kurz_projector_lag_seconds",
        "kurz_cache_lookups_total",
        "kurz_parked_records",
        "kurz_watchdog_stalled_partitions",
        "kurz_dead_letters_total",
    ] {
        assert!(exprs.iter().any(|e| e.contains(metric)), "the dashboard has no panel on {metric}");
    }
    for f in [
        "infra/grafana/provisioning/datasources/prometheus.yml",
        "infra/grafana/provisioning/dashboards/kurz.yml",
        "infra/otel/collector.yaml",
    ] {
        assert!(root.join(f).is_file(), "{f} is missing");
    }
}
