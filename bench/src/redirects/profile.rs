//! Where the time goes: `perf record` of this process during one extra wrk run, its
//! `perf report` rows summarised by component, thread and redirect-path function.

use super::cpu::{cpu_seconds, settle, settle_tail_cpu};
use super::wrk::Gen;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// One profiled run, as the report holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ProfileResult {
    pub label: String,
    /// The `perf record` command line.
    pub tool: String,
    /// What was sampled, how long, and that run's throughput and CPU per request.
    pub samples_note: String,
    /// This process's CPU per request during the run, drain included.
    pub cpu_us_per_request: f64,
    /// Self time by component, percent of this process's samples.
    pub categories: Vec<(String, f64)>,
    /// Samples by thread name.
    pub threads: Vec<(String, f64)>,
    /// Top symbols by self time (percent).
    pub top_self: Vec<(String, f64)>,
    /// Inclusive time of the functions on the redirect path (percent).
    pub inclusive: Vec<(String, f64)>,
}

/// One of a profile's lists of `(name, percent of samples)` rows.
#[derive(Debug, Clone, Copy)]
pub(super) enum List {
    Categories,
    Threads,
    Inclusive,
}

impl ProfileResult {
    pub fn list(&self, list: List) -> &[(String, f64)] {
        match list {
            List::Categories => &self.categories,
            List::Threads => &self.threads,
            List::Inclusive => &self.inclusive,
        }
    }

    /// Percent of the samples in the row `name` of `list` (0 if the row is absent: no samples).
    pub fn share(&self, list: List, name: &str) -> f64 {
        self.list(list).iter().find(|(n, _)| n == name).map_or(0.0, |(_, pct)| *pct)
    }
}

/// Component of a symbol by the first crate its name mentions (ordered: the more specific first).
fn category(sym: &str, kernel: bool) -> &'static str {
    if kernel {
        return "kernel (loopback TCP, epoll, syscalls)";
    }
    const RULES: &[(&[&str], &str)] = &[
        (&["prometheus::"], "prometheus (metrics labels, observe)"),
        (&["tracing_subscriber", "tracing_core", "tracing::"], "tracing (spans, subscriber)"),
        (&["quick_cache::", "moka::", "crossbeam_epoch", "foldhash"], "hot cache (quick_cache)"),
        (&["redb::"], "redb (click append/projection)"),
        (&["serde_json", "serde::"], "JSON (serde)"),
        (&["url::", "idna::"], "url parsing"),
        (&["kurz_projector", "kurz_command_api"], "kurz projector/decider"),
        (&["kurz_"], "kurz edge/web/storage code"),
        (&["axum::", "matchit::", "tower::", "tower_http", "tower_layer"], "axum router, tower layers"),
        (&["hyper_util", "hyper::", "httparse", "http::", "http_body"], "hyper / http"),
        (&["tokio::", "mio::"], "tokio runtime"),
        (&["async_trait"], "async_trait"),
        (
            &["malloc", "free", "realloc", "_int_", "tcache", "_mi_", "mi_", "alloc::alloc", "__rust_alloc", "__rust_dealloc"],
            "allocator (mimalloc)",
        ),
        (&["memcpy", "memmove", "memset", "memcmp", "__memc", "__mems", "strlen"], "libc mem*/str*"),
        (&["pthread", "futex", "__lll_", "syscall", "epoll", "__libc_", "__GI_", "send", "recv", "write", "read"], "libc syscalls/locks"),
        (&["core::", "alloc::", "std::"], "Rust std/core"),
    ];
    for (needles, name) in RULES {
        if needles.iter().any(|n| sym.contains(n)) {
            return name;
        }
    }
    "other"
}

/// `perf report --stdio` rows: `  12.34%   1.23%  command  dso  [.] symbol` (children
/// mode has two percentages). Returns (first %, second % if any, is kernel, symbol).
fn perf_rows(text: &str) -> Vec<(f64, Option<f64>, bool, String)> {
    let mut rows = Vec::new();
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with('#') || !t.contains('%') {
            continue;
        }
        let mut parts = t.split_whitespace();
        let Some(a) = parts.next().and_then(|p| p.strip_suffix('%')).and_then(|p| p.parse::<f64>().ok()) else { continue };
        let rest: Vec<&str> = parts.collect();
        let (b, rest) = match rest.first().and_then(|p| p.strip_suffix('%')).and_then(|p| p.parse::<f64>().ok()) {
            Some(b) => (Some(b), &rest[1..]),
            None => (None, &rest[..]),
        };
        let Some(pos) = rest.iter().position(|w| *w == "[.]" || *w == "[k]") else { continue };
        let kernel = rest[pos] == "[k]";
        rows.push((a, b, kernel, rest[pos + 1..].join(" ")));
    }
    rows
}

/// Whether `perf` is installed and may sample (`perf stat` of `true` succeeds).
pub(super) fn perf_available() -> bool {
    Command::new("perf").args(["stat", "-e", "cpu-clock", "true"]).output().is_ok_and(|o| o.status.success())
}

/// Samples this process with `perf record` (software `cpu-clock`: this VM exposes no
/// hardware counters, `perf stat -e instructions` reads `<not supported>`) while wrk
/// drives one hot-set run of `method` against `url`. The recording is kept in
/// `<keep>/redirects-<label>.perf.data`. None if perf fails.
/// What one profiled run asks for: the server's URL, the paths file, the method and
/// who asks.
pub(super) type Load<'a> = (&'a str, &'a Path, &'a str, super::wrk::Client);

pub(super) async fn profile(
    gen: &Gen,
    label: &str,
    (url, paths, method, client): Load<'_>,
    keep: &Path,
    secs: u64,
) -> Option<ProfileResult> {
    std::fs::create_dir_all(keep).ok()?;
    let data = keep.join(format!("redirects-{}.perf.data", label.replace(' ', "-")));
    let pid = std::process::id().to_string();
    let record_secs = secs.saturating_sub(4).max(2);
    let mut rec = Command::new("perf");
    rec.args(["record", "-q", "-e", "cpu-clock", "-F", "999", "--call-graph", "dwarf,32768", "-p", &pid, "-o"]).arg(&data).args([
        "--",
        "sleep",
        &record_secs.to_string(),
    ]);
    let c0 = cpu_seconds();
    let wrk = gen.run(url, paths, secs, method, client);
    let perf = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        tokio::task::spawn_blocking(move || rec.output()).await.unwrap()
    };
    let ((w, _), rec_out) = tokio::join!(wrk, perf);
    settle().await;
    let cpu_us_per_request = (cpu_seconds() - c0 - settle_tail_cpu()) * 1e6 / w.requests.max(1) as f64;
    let rec_out = rec_out.ok()?;
    if !rec_out.status.success() {
        eprintln!("perf record failed: {}", String::from_utf8_lossy(&rec_out.stderr));
        return None;
    }
    let report = |children: bool, sort: &str| {
        let mut c = Command::new("perf");
        c.arg("report").arg("-i").arg(&data).args(["--stdio", "--no-inline", "-g", "none", "--sort", sort, "--percent-limit", "0.05"]);
        c.arg(if children { "--children" } else { "--no-children" });
        c
    };
    let out = |mut c: Command| async move {
        let o = tokio::task::spawn_blocking(move || c.output()).await.unwrap().ok()?;
        Some(String::from_utf8_lossy(&o.stdout).to_string())
    };
    let self_text = out(report(false, "sym")).await?;
    let child_text = out(report(true, "sym")).await?;
    let thread_text = out(report(false, "comm")).await?;
    let self_rows = perf_rows(&self_text);
    let mut cats: BTreeMap<&str, f64> = BTreeMap::new();
    for (pct, _, kernel, sym) in &self_rows {
        *cats.entry(category(sym, *kernel)).or_default() += pct;
    }
    let mut categories: Vec<(String, f64)> = cats.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    categories.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap());
    let top_self =
        self_rows.iter().take(30).map(|(p, _, k, s)| (format!("{}{}", if *k { "[k] " } else { "" }, short_sym(s)), *p)).collect();
    // `--sort comm` rows: `  61.23%  tokio-runtime-w`
    let threads = thread_text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let pct = w.next()?.strip_suffix('%')?.parse::<f64>().ok()?;
            Some((w.collect::<Vec<_>>().join(" "), pct))
        })
        .collect();
    // Inclusive time of the redirect path's pieces: the largest row whose symbol matches
    // (a lower bound where a piece was inlined into its caller).
    const KEYS: &[(&str, &[&str])] = &[
        ("hyper HTTP/1 dispatcher (parse, service, write)", &["hyper::proto::h1::dispatch::Dispatcher"]),
        (
            "axum Router::call_with_state (routing and all below; 0 where the fast path answers)",
            &["axum::routing::Router<S>::call_with_state"],
        ),
        ("red_metrics middleware (FromFn) and all below (0 where the fast path answers)", &["axum::middleware::from_fn::FromFn"]),
        ("redirect fast path: observe::observed (span, metrics, catch-panic) and all below", &["kurz_web::observe::observed"]),
        (
            "redirect (lookup, Location, click record)",
            &[
                "kurz_query_edge::routes::redirect::redirect::",
                "kurz_query_edge::routes::redirect::answer",
                "kurz_query_edge::routes::redirect::fast_path::{{closure}}",
            ],
        ),
        ("cache lookup (get_local at once, or resolve)", &["LinkCache>::get_local", "kurz_query_edge::routes::redirect::resolve"]),
        ("Instrumented cache get (quick_cache + lookup metric)", &["cache::Instrumented as kurz_storage::cache::LinkCache>::get"]),
        ("quick_cache Cache::get", &["quick_cache::sync::Cache"]),
        ("prometheus (all calls)", &["prometheus::"]),
        (
            "tracing (spans, subscriber, JSON layer)",
            &["tracing::span::Span::new", "tracing_core::", "tracing_subscriber", "kurz_telemetry"],
        ),
        (
            "click record on the request path (copy headers, queue push)",
            &["kurz_query_edge::routes::redirect::raw_click", "ClickSink::record", "ClickQueue::push"],
        ),
        ("ClickFlusher (click encode + append)", &["kurz_query_edge::capture::flush::ClickFlusher::run_until_stopped"]),
        (
            "projector partition task (read, map, commit; the store write runs on the blocking pool)",
            &["kurz_projector::runtime::Projector::run_partition", "kurz_projector::runtime::Projector::supervise"],
        ),
        (
            "blocking pool tasks (the store's redb write transactions of projected clicks, log reads)",
            &["<tokio::runtime::blocking::task::BlockingTask<T> as core::future::future::Future>::poll"],
        ),
        (
            "click history rows (`write_click_rows`: JSON row and index entries per click)",
            &["kurz_storage::store::embedded::write_click_rows"],
        ),
        ("HistoryEvent serialize (JSON per click row)", &["HistoryEvent>::serialize"]),
        ("malloc/free", &["malloc", "_int_free", "cfree", "mi_free", "_mi_page_malloc"]),
    ];
    let child_rows = perf_rows(&child_text);
    let inclusive = KEYS
        .iter()
        .map(|(label, needles)| {
            let best =
                child_rows.iter().filter(|(_, _, _, s)| needles.iter().any(|n| s.contains(n))).map(|(c, _, _, _)| *c).fold(0.0, f64::max);
            (label.to_string(), best)
        })
        .collect();
    Some(ProfileResult {
        label: label.to_string(),
        tool: "perf record -e cpu-clock -F 999 --call-graph dwarf,32768 -p <this process> (wrk excluded)".into(),
        samples_note: format!(
            "{label}: {record_secs} s sampled in the middle of a {secs} s hot-set {method} run ({:.0} req/s, {:.1} µs CPU/req incl. drain)",
            w.requests_per_s, cpu_us_per_request,
        ),
        cpu_us_per_request,
        categories,
        threads,
        top_self,
        inclusive,
    })
}

/// Drops generic parameters and the hash suffix so symbols fit in a table.
fn short_sym(s: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    for c in s.chars() {
        match c {
            '<' if !out.is_empty() && !out.ends_with(' ') && !out.ends_with('(') => {
                depth += 1;
                if depth == 1 {
                    out.push_str("<…>");
                }
            }
            '<' => out.push(c),
            '>' if depth > 0 => depth -= 1,
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    // Legacy-mangled names may end in `::h<16 hex digits>`.
    let out = match out.rsplit_once("::h") {
        Some((head, hash)) if hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit()) => head.to_string(),
        _ => out,
    };
    out.chars().take(110).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_perf_report_rows() {
        let text = "# Overhead  Command  Symbol\n\
                    #\n\
                    \x20   12.50%   1.25%  tokio-runtime-w  kurz-bench  [.] hyper::proto::h1::dispatch::Dispatcher<D,Bs,I,T>::poll_loop\n\
                    \x20    3.00%  tokio-runtime-w  [kernel.kallsyms]  [k] tcp_sendmsg\n";
        let rows = perf_rows(text);
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].0, rows[0].1, rows[0].2), (12.5, Some(1.25), false));
        assert_eq!(rows[0].3, "hyper::proto::h1::dispatch::Dispatcher<D,Bs,I,T>::poll_loop");
        assert_eq!((rows[1].0, rows[1].1, rows[1].2, rows[1].3.as_str()), (3.0, None, true, "tcp_sendmsg"));
        assert_eq!(category(&rows[0].3, false), "hyper / http");
        assert_eq!(category(&rows[1].3, true), "kernel (loopback TCP, epoll, syscalls)");
        assert_eq!(short_sym(&rows[0].3), "hyper::proto::h1::dispatch::Dispatcher<…>::poll_loop");
        assert_eq!(short_sym("kurz_web::serve::run::h0123456789abcdef"), "kurz_web::serve::run");
    }
}
