//! The report: one typed value, written as `bench/results/redirects.json` (its fields are
//! the JSON's keys) and rendered as `redirects.md`, also from a JSON read back by
//! `kurz-bench render redirects`.

use super::findings;
use super::profile::{List, ProfileResult};
use super::run::{Measured, CEILING_LOCATION};
use super::server_view::ServerSide;
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;

pub(super) const TARGET_THROUGHPUT_RATIO: f64 = 0.90;
pub(super) const TARGET_P99_RATIO: f64 = 1.25;
pub(super) const TARGET_SERVER_P99_MS: f64 = 1.0;
/// Click capture may cost at most this share of redirect throughput (issue #5).
pub(super) const TARGET_CAPTURE_COST: f64 = 0.10;
/// Links with options (a window, two rules, query forwarding) keep at least this share
/// of plain links' throughput (issue #20).
pub(super) const TARGET_OPTIONS_RATIO: f64 = 0.95;

/// Everything one run of the redirect benchmark measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// `"redirects"`.
    pub(super) benchmark: String,
    pub(super) generator: Generator,
    pub(super) machine: Machine,
    pub(super) hot_links: usize,
    pub(super) large_links: usize,
    pub(super) rounds: usize,
    pub(super) load: Load,
    pub(super) correctness: Correctness,
    /// The bare hyper 302 server.
    pub(super) ceiling: Side,
    /// axum with one route.
    pub(super) axum_ceiling: Side,
    /// `kurz serve`, GET over the hot set.
    pub(super) kurz_hot: Side,
    /// `kurz serve`, HEAD over the hot set.
    pub(super) kurz_hot_head: Side,
    /// The query edge with click capture off, GET over the hot set.
    pub(super) kurz_hot_no_capture: Side,
    /// The query edge with click capture on (no projector), GET over the hot set.
    pub(super) kurz_edge_capture: Side,
    /// `kurz serve`, GET over the large set.
    pub(super) kurz_1m: Side,
    /// `kurz serve`, GET over the plain hot set asked as [`Report::kurz_hot_options`] is
    /// (a query, a browser's headers): that round's baseline. Absent from results of
    /// before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) kurz_hot_browser: Option<Side>,
    /// `kurz serve`, GET over a hot set whose links each have a validity window, two
    /// redirect rules and query forwarding, asked with a query string, a browser's
    /// `User-Agent` and `Accept-Language` (issue #20). Absent from results of before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) kurz_hot_options: Option<Side>,
    /// The query-edge role (capture on, no projector), GET over the plain hot set asked
    /// as [`Report::kurz_edge_options`] is: the options target's baseline. Two runs a
    /// round. Absent from results of before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) kurz_edge_browser: Option<Side>,
    /// The query-edge role, GET over the links with options, asked as
    /// [`Report::kurz_hot_options`] is. Two runs a round. Absent from results of before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) kurz_edge_options: Option<Side>,
    pub(super) ratios: Ratios,
    pub(super) cpu_us_per_request_split: CpuSplit,
    pub(super) targets: Targets,
    /// The targets of `kurz serve` (hot throughput, hot client p99, server p99, capture cost).
    pub(super) all_targets_met: bool,
    /// One entry per profiled run; null when no profile was taken.
    pub(super) profile: Option<Vec<ProfileResult>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Generator {
    pub tool: String,
    /// The wrk command line of a timed run.
    pub command: String,
    pub connections: usize,
    /// The Lua script wrk runs.
    pub script: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Machine {
    pub cpus: usize,
}

/// Loading the links over `POST /urls/bulk`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Load {
    pub links: u64,
    pub seconds: f64,
    pub links_per_s: f64,
    pub rows_per_request: usize,
}

/// The correctness pass before any timing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Correctness {
    pub kurz_responses_checked: usize,
    pub ceiling_responses_checked: usize,
    pub wrong: usize,
}

/// One server (or set, or method) over the rounds: medians of its runs, and the runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Side {
    pub requests_per_s: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub server_cpu_us_per_request: f64,
    pub server_cpu_us_per_request_incl_drain: f64,
    pub drain_s: f64,
    pub wrk_cpu_us_per_request: f64,
    /// From kurz's histogram (kurz's runs only).
    pub server_p50_ms: Option<f64>,
    pub server_p90_ms: Option<f64>,
    pub server_p99_ms: Option<f64>,
    pub cache_hit_ratio: Option<f64>,
    /// Summed over the runs.
    pub non_2xx_3xx: u64,
    pub socket_errors: u64,
    pub runs: Vec<Measured>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if v.is_empty() {
        return f64::NAN;
    }
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

impl Side {
    /// The medians of `runs` (of kurz's view: over the runs that have one).
    pub fn of(runs: &[Measured]) -> Side {
        let m = |f: fn(&Measured) -> f64| median(runs.iter().map(f).collect());
        let ms = |f: fn(&ServerSide) -> Option<f64>| {
            let v: Vec<f64> = runs.iter().filter_map(|r| r.server.as_ref().and_then(f)).collect();
            (!v.is_empty()).then(|| median(v))
        };
        Side {
            requests_per_s: m(|r| r.wrk.requests_per_s),
            p50_ms: m(|r| r.wrk.p50_ms),
            p90_ms: m(|r| r.wrk.p90_ms),
            p99_ms: m(|r| r.wrk.p99_ms),
            max_ms: m(|r| r.wrk.max_ms),
            server_cpu_us_per_request: m(|r| r.server_cpu_us_per_request),
            server_cpu_us_per_request_incl_drain: m(|r| r.server_cpu_us_per_request_incl_drain),
            drain_s: m(|r| r.drain_s),
            wrk_cpu_us_per_request: m(|r| r.wrk_cpu_us_per_request),
            server_p50_ms: ms(|s| s.p50_ms),
            server_p90_ms: ms(|s| s.p90_ms),
            server_p99_ms: ms(|s| s.p99_ms),
            cache_hit_ratio: ms(|s| s.cache_hit_ratio),
            non_2xx_3xx: runs.iter().map(|r| r.wrk.non_2xx_3xx).sum(),
            socket_errors: runs.iter().map(|r| r.wrk.socket_errors).sum(),
            runs: runs.to_vec(),
        }
    }

    /// A figure of kurz's view summed over the runs (NaN if a run has none).
    pub fn server_sum(&self, f: fn(&ServerSide) -> f64) -> f64 {
        self.runs.iter().map(|r| r.server.as_ref().map_or(f64::NAN, f)).sum()
    }
}

/// A ratio is null in the JSON when it was not a number (serde_json writes NaN and
/// infinities as null): read back as NaN.
fn nan_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Option::<f64>::deserialize(d).map(|v| v.unwrap_or(f64::NAN))
}

/// Ratios of medians: kurz to the ceiling, capture on to off.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Ratios {
    #[serde(deserialize_with = "nan_if_null")]
    pub hot_throughput_kurz_to_ceiling: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub hot_p99_kurz_to_ceiling: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub hot_server_cpu_per_request_kurz_to_ceiling: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub large_throughput_kurz_to_ceiling: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub large_p99_kurz_to_ceiling: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub axum_throughput_to_ceiling: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub hot_head_throughput_kurz_to_ceiling: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub hot_edge_capture_on_to_off: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub hot_single_process_capture_on_to_off: f64,
    /// 1 − (kurz serve / the edge with capture off) throughput.
    #[serde(deserialize_with = "nan_if_null")]
    pub single_process_capture_and_projection_cost: f64,
    /// Hot links with options / plain hot links asked the same way, `kurz serve`
    /// throughput.
    #[serde(default = "nan", deserialize_with = "nan_if_null", skip_serializing_if = "is_nan")]
    pub hot_options_throughput_to_plain: f64,
    /// The same on the query-edge role (capture on, no projector): the options target.
    #[serde(default = "nan", deserialize_with = "nan_if_null", skip_serializing_if = "is_nan")]
    pub edge_options_throughput_to_plain: f64,
    pub per_round: Vec<PerRound>,
}

/// The same ratios within one round.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct PerRound {
    pub round: usize,
    #[serde(deserialize_with = "nan_if_null")]
    pub hot_throughput_ratio: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub hot_p99_ratio: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub large_throughput_ratio: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub capture_cost: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub capture_and_projection_cost: f64,
    #[serde(default = "nan", deserialize_with = "nan_if_null", skip_serializing_if = "is_nan")]
    pub options_throughput_ratio: f64,
    /// The edge pair's two runs a side, summed.
    #[serde(default = "nan", deserialize_with = "nan_if_null", skip_serializing_if = "is_nan")]
    pub edge_options_throughput_ratio: f64,
}

fn nan() -> f64 {
    f64::NAN
}

fn is_nan(v: &f64) -> bool {
    v.is_nan()
}

/// Server CPU per hot-set GET (drain included) by layer: the differences between sides.
/// In the JSON an object keyed by [`CpuSplit::LABELS`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "BTreeMap<String, f64>", try_from = "BTreeMap<String, f64>")]
pub(super) struct CpuSplit {
    pub http_stack: f64,
    pub router: f64,
    pub request_path: f64,
    pub capture: f64,
    pub projection: f64,
}

impl CpuSplit {
    /// The JSON keys, in the order of [`CpuSplit::rows`].
    const LABELS: [&str; 5] = [
        "1. HTTP stack: bare hyper",
        "2. axum::serve + Router (axum 1-route minus bare hyper)",
        "3. kurz request path (kurz edge with capture off minus axum 1-route)",
        "4a. click capture and durable append (edge with capture on minus off)",
        "4b. click projection (kurz GET minus the edge with capture on)",
    ];

    /// `(label, µs/req)` from the bottom of the stack up.
    pub fn rows(&self) -> [(&'static str, f64); 5] {
        let values = [self.http_stack, self.router, self.request_path, self.capture, self.projection];
        std::array::from_fn(|i| (Self::LABELS[i], values[i]))
    }
}

impl From<CpuSplit> for BTreeMap<String, f64> {
    fn from(s: CpuSplit) -> Self {
        s.rows().into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }
}

impl TryFrom<BTreeMap<String, f64>> for CpuSplit {
    type Error = String;
    fn try_from(mut m: BTreeMap<String, f64>) -> Result<Self, String> {
        let mut take = |i: usize| m.remove(CpuSplit::LABELS[i]).ok_or_else(|| format!("missing key `{}`", CpuSplit::LABELS[i]));
        Ok(CpuSplit { http_stack: take(0)?, router: take(1)?, request_path: take(2)?, capture: take(3)?, projection: take(4)? })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Targets {
    /// The query-edge role (capture on, no projector) / the ceiling. Absent from results
    /// of before the edge targets: read back as not met.
    #[serde(default)]
    pub edge_throughput_ratio: Target,
    #[serde(default)]
    pub edge_client_p99_ratio: Target,
    pub hot_throughput_ratio: Target,
    pub hot_client_p99_ratio: Target,
    pub hot_server_p99_ms: Target,
    pub capture_cost: Target,
    /// Links with options / plain links on the query-edge role (on `kurz serve` in
    /// results of before the edge pair), and their server p99 on either (issue #20).
    /// Absent from results of before it: read back as not met.
    #[serde(default, skip_serializing_if = "Target::is_absent")]
    pub options_throughput_ratio: Target,
    #[serde(default, skip_serializing_if = "Target::is_absent")]
    pub options_server_p99_ms: Target,
}

/// A target, the measured value and whether it was met.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Target {
    /// The bound, e.g. `">= 0.9"`.
    pub target: String,
    #[serde(deserialize_with = "nan_if_null")]
    pub value: f64,
    pub met: bool,
}

impl Default for Target {
    fn default() -> Self {
        Target { target: String::new(), value: f64::NAN, met: false }
    }
}

impl Target {
    /// A target a result of before it was set does not have.
    fn is_absent(&self) -> bool {
        self.target.is_empty() && self.value.is_nan()
    }

    pub fn at_least(value: f64, bound: f64) -> Self {
        Target { target: format!(">= {bound}"), value, met: value >= bound }
    }
    pub fn at_most(value: f64, bound: f64) -> Self {
        Target { target: format!("<= {bound}"), value, met: value <= bound }
    }
    pub fn below(value: f64, bound: f64) -> Self {
        Target { target: format!("< {bound}"), value, met: value < bound }
    }
}

// ---------------------------------------------------------------- markdown

/// `redirects.md`.
pub fn markdown(v: &Report) -> String {
    let opt = |x: Option<f64>, d: usize| x.map_or("–".to_string(), |v| format!("{v:.d$}"));
    let ceil_rps = v.ceiling.requests_per_s;
    let ceil_p99 = v.ceiling.p99_ms;
    let row = |name: &str, s: &Side| {
        format!(
            "| {name} | {:.0} | {:.2} | {:.3} | {:.3} | {:.3} | {:.2} | {:.2} | {:.1} | {:.1} | {:.1} | {} |\n",
            s.requests_per_s,
            s.requests_per_s / ceil_rps,
            s.p50_ms,
            s.p90_ms,
            s.p99_ms,
            s.p99_ms / ceil_p99,
            s.max_ms,
            s.server_cpu_us_per_request,
            s.server_cpu_us_per_request_incl_drain,
            s.wrk_cpu_us_per_request,
            opt(s.server_p99_ms, 3),
        )
    };
    let r = &v.ratios;
    let mut md = String::from("# Redirects: kurz vs a bare hyper 302 server\n\n");
    md += &format!(
        "One process on a {}-core machine, all on loopback and in one tokio runtime: the **ceiling**, a bare hyper HTTP/1 server \
         answering every request with `302 Location: {CEILING_LOCATION}` (the HTTP stack kurz uses, with no application); \
         the same answer from **axum with one route** (`/{{code}}`) under `axum::serve` (a diagnostic: the framework kurz \
         routes its other endpoints with; its redirects are answered ahead of the router); and \
         **`kurz serve`** (embedded log and store, in-process quick_cache hot cache, `--auth open`, `--log warn`, telemetry initialised \
         as the binary does). kurz holds {} hot links (`h000000`…) and {} more (`m000000`…), each redirecting to \
         `https://example.com/<code>`, loaded through `POST /urls/bulk` (`text/csv`, `short_code,original_url`, {} rows a \
         request): {:.0} links in {:.1} s ({:.0} links/s).\n\n",
        v.machine.cpus, v.hot_links, v.large_links, v.load.rows_per_request, v.load.links as f64, v.load.seconds, v.load.links_per_s,
    );
    md += &format!(
        "**Load generator**: Debian's `wrk` 4.1 (`apt-get install -y wrk`): `{}`. The Lua script (in the JSON) reads the codes \
         file in each thread's `init`, and its `request()` returns `GET /<code>` (or `HEAD`) for a uniformly random code \
         (`math.random`, seeded per thread), so every request's path differs; both ceilings get the hot codes file too, so \
         request generation costs the same everywhere. wrk shares the 2 cores with the servers. Its latency is send-to-response \
         per request on a busy keep-alive connection (closed loop, no coordinated-omission correction: alike for every server). \
         `Requests/sec`, the `Latency Distribution` (50/75/90/99 %) and the `Latency` max are parsed from its output.\n\n",
        v.generator.command
    );
    md += &format!(
        "**Order**: after a warm-up run of each, {} rounds of ceiling → kurz hot → kurz edge with capture off → kurz edge with capture on → axum 1-route → kurz hot HEAD → kurz 1M → kurz hot as a browser → kurz hot with options (these two swap places in even rounds, so neither always runs second){}; \
         between runs the harness waits until this process is idle (the click projection of the previous run drained). \
         Figures are medians over the rounds; *× ceiling* compares medians. *CPU µs/req* is this process's user+system CPU per \
         request during the run (the server side; wrk is another process); *incl. drain* adds the CPU spent after wrk stopped \
         until the process was idle (kurz projecting the clicks the run queued); *wrk CPU* is the load generator's own CPU per \
         request (from the children's times in `/proc/self/stat`).\n\n",
        v.rounds,
        if v.kurz_edge_options.is_some() {
            " → kurz edge as a browser, kurz edge with options, twice and mirrored (A B B A; B A A B in even rounds, so \
             drift within the block cancels out of the round's ratio)"
        } else {
            ""
        },
    );
    md += "| server | req/s | × ceiling | p50 ms | p90 ms | p99 ms | p99 × ceiling | max ms | CPU µs/req | CPU µs/req incl. drain | wrk CPU µs/req | server p99 ms |\n\
           |---|---|---|---|---|---|---|---|---|---|---|---|\n";
    md += &row("**ceiling**: bare hyper 302", &v.ceiling);
    md += &row("**kurz, hot set** (1k codes, GET)", &v.kurz_hot);
    md += &row(&format!("**kurz, uniform over {} codes** (GET)", v.large_links), &v.kurz_1m);
    md += &row("axum, one route (diagnostic)", &v.axum_ceiling);
    md += &row("**kurz edge, hot set, click capture off** (GET)", &v.kurz_hot_no_capture);
    md += &row("**kurz edge, hot set, click capture on**, clicks appended to a log no projector reads (GET)", &v.kurz_edge_capture);
    md += &row("kurz, hot set, HEAD: click captured and flagged, not counted (diagnostic)", &v.kurz_hot_head);
    if let Some(b) = &v.kurz_hot_browser {
        md += &row("kurz, hot set, asked as a browser with a query (GET): the baseline of the next row", b);
    }
    if let Some(o) = &v.kurz_hot_options {
        md += &row("kurz, hot set with options: window, 2 rules, query forwarded; asked the same way (GET)", o);
    }
    if let Some(b) = &v.kurz_edge_browser {
        md += &row("kurz edge (capture on, no projector), hot set asked as a browser with a query (GET): the baseline of the next row", b);
    }
    if let Some(o) = &v.kurz_edge_options {
        md += &row("**kurz edge, hot set with options**: window, 2 rules, query forwarded; asked the same way (GET)", o);
    }

    md += "\n## Targets (hot set)\n\n| target | value | met |\n|---|---|---|\n";
    let t = &v.targets;
    let mark = |x: &Target| if x.met { "yes" } else { "**no**" };
    let connections = v.generator.connections;
    md += &format!(
        "| throughput of the query-edge role (capture on, no projector in the process) / ceiling {} | {:.2} | {} |\n",
        t.edge_throughput_ratio.target,
        t.edge_throughput_ratio.value,
        mark(&t.edge_throughput_ratio)
    );
    md += &format!(
        "| client p99 of the query-edge role / ceiling at {connections} connections {} | {:.2} | {} |\n",
        t.edge_client_p99_ratio.target,
        t.edge_client_p99_ratio.value,
        mark(&t.edge_client_p99_ratio)
    );
    md += &format!(
        "| throughput of `kurz serve` (every role, clicks projected in the same process) / ceiling {} | {:.2} | {} |\n",
        t.hot_throughput_ratio.target,
        t.hot_throughput_ratio.value,
        mark(&t.hot_throughput_ratio)
    );
    md += &format!(
        "| client p99 of `kurz serve` / ceiling at {connections} connections {} | {:.2} | {} |\n",
        t.hot_client_p99_ratio.target,
        t.hot_client_p99_ratio.value,
        mark(&t.hot_client_p99_ratio)
    );
    let p99_le = v.kurz_hot.runs.iter().filter_map(|r| r.server.as_ref()?.p99_bucket_le_ms).reduce(f64::max).unwrap_or(f64::NAN);
    md += &format!(
        "| server-side p99 ms {} | {:.3} (bucket ≤ {} ms) | {} |\n",
        t.hot_server_p99_ms.target,
        t.hot_server_p99_ms.value,
        p99_le,
        mark(&t.hot_server_p99_ms)
    );
    md += &format!(
        "| click capture cost at the edge: 1 − (capture on / capture off) {} | {:.3} | {} |\n",
        t.capture_cost.target,
        t.capture_cost.value,
        mark(&t.capture_cost)
    );
    if v.kurz_hot_options.is_some() {
        let on_edge = v.kurz_edge_options.is_some();
        md += &format!(
            "| throughput of links with options (a window, two rules, query forwarding) / plain links asked the same way, {} {} | {:.3} | {} |\n",
            if on_edge { "both on the query-edge role (capture on, no projector)" } else { "both `kurz serve`" },
            t.options_throughput_ratio.target,
            t.options_throughput_ratio.value,
            mark(&t.options_throughput_ratio)
        );
        md += &format!(
            "| server-side p99 ms of links with options {} | {:.3} | {} |\n",
            t.options_server_p99_ms.target,
            t.options_server_p99_ms.value,
            mark(&t.options_server_p99_ms)
        );
        let per_round = |f: fn(&PerRound) -> f64| r.per_round.iter().map(|x| format!("{:.3}", f(x))).collect::<Vec<_>>().join(", ");
        md += &if on_edge {
            format!(
                "\nLinks with options / plain links, per round, on the query-edge role: {} (each round's two runs a side summed); \
                 on `kurz serve`, a diagnostic (the click projection in the same process varies a run's CPU per request by more \
                 than options cost): {}, {:.3} over the medians.",
                per_round(|x| x.edge_options_throughput_ratio),
                per_round(|x| x.options_throughput_ratio),
                r.hot_options_throughput_to_plain,
            )
        } else {
            format!("\nLinks with options, per round / plain links: {}.", per_round(|x| x.options_throughput_ratio))
        };
        md += &format!(
            " Both sides ask `/<code>?utm_source=bench&gclid=…` as a desktop Firefox (`User-Agent`, `Accept-Language: en-US`), \
             so both forward the query and capture the same clicks. Each of the {} links with options answers inside its \
             validity window; its rules (`device` = ios, then `language` = de) are both evaluated and miss, so the query is \
             merged into `original_url`'s own (`?ref=kurz`).\n",
            v.hot_links,
        );
    }
    md += &format!(
        "\nPer round, kurz hot / ceiling throughput and p99, and kurz 1M / ceiling throughput: {}.\n",
        r.per_round
            .iter()
            .map(|x| format!("{:.2}, {:.2}, {:.2}", x.hot_throughput_ratio, x.hot_p99_ratio, x.large_throughput_ratio))
            .collect::<Vec<_>>()
            .join(" | ")
    );

    md += "\n## Where the CPU per redirect goes (hot set, medians)\n\n| part | CPU µs/req |\n|---|---|\n";
    for (k, x) in v.cpu_us_per_request_split.rows() {
        md += &format!("| {k} | {x:.1} |\n");
    }
    md += &format!(
        "| **kurz GET, total** ({:.2}× the ceiling) | {:.1} |\n",
        r.hot_server_cpu_per_request_kurz_to_ceiling, v.kurz_hot.server_cpu_us_per_request_incl_drain
    );
    {
        let (ceiling, kurz) = (&v.ceiling, &v.kurz_hot);
        let ceiling_total = ceiling.server_cpu_us_per_request_incl_drain + ceiling.wrk_cpu_us_per_request;
        let kurz_total = kurz.server_cpu_us_per_request_incl_drain + kurz.wrk_cpu_us_per_request;
        let budget = ceiling_total / TARGET_THROUGHPUT_RATIO - kurz.wrk_cpu_us_per_request;
        let budget_hi = ceiling_total / TARGET_THROUGHPUT_RATIO - ceiling.wrk_cpu_us_per_request;
        md += &format!(
            "\nServer and wrk share the 2 cores, so throughput ≈ cores ÷ (server CPU + wrk CPU per request). The ceiling needs \
             {ceiling_total:.1} µs of CPU per request in all, kurz {kurz_total:.1} µs, which predicts a ratio of {:.2} (measured \
             {:.2}). For {TARGET_THROUGHPUT_RATIO:.2}× the ceiling, kurz may spend about **{budget:.1}–{budget_hi:.1} µs** of \
             server CPU per redirect (the range: wrk's own CPU per request as measured against kurz, or as against the \
             ceiling; wrk needs more per request against a slower server, fewer responses per wake-up); it spends {:.1} µs, \
             the bare hyper ceiling {:.1} µs. Without clicks (the edge with capture off) kurz reaches {:.2}× the ceiling.\n",
            ceiling_total / kurz_total,
            r.hot_throughput_kurz_to_ceiling,
            kurz.server_cpu_us_per_request_incl_drain,
            ceiling.server_cpu_us_per_request_incl_drain,
            v.kurz_hot_no_capture.requests_per_s / ceiling.requests_per_s,
        );
    }

    md += "\n## Server-side latency\n\nFrom kurz's own histogram `kurz_http_request_duration_seconds{route=\"/{code}\",method=\"GET\"}` \
           (`HEAD` for the HEAD run), scraped from `/metrics` before and after each run: each quantile is taken from the bucket \
           deltas with **linear interpolation inside the bucket** the rank falls in (as Prometheus' `histogram_quantile`; \
           buckets 50 µs, 100 µs, 250 µs, 500 µs, 1 ms, …), so it is exact only to its bucket. The histogram times \
           `kurz_web::observe::observed` around the redirect fast path (`red_metrics` for routed requests), from the \
           parsed request to the response: it excludes HTTP parsing and writing and the time \
           a request waits for a worker, which is where wrk's p99 comes from.\n\n";
    let side = |name: &str, s: &Side| {
        format!(
            "| {name} | {} | {} | {} | {} | {:.0} | {:.0} | {:.0} |\n",
            opt(s.server_p50_ms, 3),
            opt(s.server_p90_ms, 3),
            opt(s.server_p99_ms, 3),
            opt(s.cache_hit_ratio, 4),
            s.server_sum(|x| x.redirects_from_store),
            s.server_sum(|x| x.clicks_appended),
            s.server_sum(|x| x.clicks_dropped),
        )
    };
    md += "| kurz run | server p50 ms | p90 ms | p99 ms | cache hit ratio | served from store | clicks appended | clicks dropped |\n\
           |---|---|---|---|---|---|---|---|\n";
    md += &side("hot set", &v.kurz_hot);
    md += &side("1M uniform", &v.kurz_1m);
    md += &side("hot set, HEAD", &v.kurz_hot_head);
    md += &side("edge, hot set, capture off", &v.kurz_hot_no_capture);
    md += &side("edge, hot set, capture on", &v.kurz_edge_capture);
    if let Some(b) = &v.kurz_hot_browser {
        md += &side("hot set, as a browser", b);
    }
    if let Some(o) = &v.kurz_hot_options {
        md += &side("hot set with options", o);
    }
    if let Some(b) = &v.kurz_edge_browser {
        md += &side("edge, hot set, as a browser", b);
    }
    if let Some(o) = &v.kurz_edge_options {
        md += &side("edge, hot set with options", o);
    }
    let mut timed =
        vec![&v.ceiling, &v.axum_ceiling, &v.kurz_hot, &v.kurz_hot_no_capture, &v.kurz_edge_capture, &v.kurz_hot_head, &v.kurz_1m];
    timed.extend(v.kurz_hot_browser.as_ref());
    timed.extend(v.kurz_hot_options.as_ref());
    timed.extend(v.kurz_edge_browser.as_ref());
    timed.extend(v.kurz_edge_options.as_ref());
    md += &format!(
        "\n(Store reads and clicks are summed over the timed runs.) wrk counted {} non-2xx/3xx responses and {} socket errors \
         over all timed runs.\n",
        timed.iter().map(|s| s.non_2xx_3xx).sum::<u64>(),
        timed.iter().map(|s| s.socket_errors).sum::<u64>(),
    );
    md += &format!(
        "\n**Correctness pass** (before any timing): {} kurz responses (GET of every hot code and of 2,000 random codes of the \
         large set: 302 with exactly the loaded `Location`; HEAD of 100 hot codes: the same; 20 unknown codes: 404; every link with options, with its \
         query, from `kurz serve` and from the edge: 302 to `original_url` with the query merged) and {} \
         responses of the two ceilings: {} wrong. During the timed runs a wrong status would show in wrk's non-2xx/3xx count.\n",
        v.correctness.kurz_responses_checked, v.correctness.ceiling_responses_checked, v.correctness.wrong
    );

    if let Some(ps) = &v.profile {
        md += &profile_section(ps);
    }
    md += &findings::findings(v);
    md += "\nReproduce: `apt-get install -y wrk linux-perf`, then `cargo run --release -p kurz-bench -- redirects` \
           (every run's numbers in `bench/results/redirects.json`).\n";
    md
}

/// "Profile: where the time goes": the profiled runs side by side.
fn profile_section(ps: &[ProfileResult]) -> String {
    let mut md = format!(
        "\n## Profile: where the time goes (hot set)\n\n`{}`, during one extra run each of the ceiling, kurz HEAD (click flagged, not counted), \
         the kurz edge with capture off and on (no projector) and kurz GET; {}. µs/req = share of samples × that run's CPU per request (drain included), so columns compare \
         per request.\n\n",
        ps[0].tool,
        ps.iter().map(|p| p.samples_note.as_str()).collect::<Vec<_>>().join("; "),
    );
    let header = |first: &str| {
        let mut h = format!("| {first} |");
        let mut rule = String::from("|---|");
        for p in ps {
            h += &format!(" {} % | µs/req |", p.label);
            rule += "---|---|";
        }
        format!("{h}\n{rule}\n")
    };
    let table = |list: List, min: f64, names: Vec<String>| {
        let mut t = String::new();
        for name in names {
            let cells: Vec<(f64, f64)> =
                ps.iter().map(|p| (p.share(list, &name), p.share(list, &name) * p.cpu_us_per_request / 100.0)).collect();
            if cells.iter().any(|c| c.0 >= min) {
                t += &format!("| {name} |");
                for (pct, us) in cells {
                    t += &format!(" {pct:.1} | {us:.2} |");
                }
                t += "\n";
            }
        }
        t
    };
    // Row names in the order they first appear, the last profile first.
    let names = |list: List| {
        let mut n: Vec<String> = Vec::new();
        for p in ps.iter().rev() {
            for (s, _) in p.list(list) {
                if !n.contains(s) {
                    n.push(s.clone());
                }
            }
        }
        n
    };
    md += "Self time by component:\n\n";
    md += &header("component");
    md += &table(List::Categories, 0.5, names(List::Categories));
    md += "\nBy thread:\n\n";
    md += &header("thread");
    md += &table(List::Threads, 0.5, names(List::Threads));
    md += "\nInclusive time (a function and all it calls; a lower bound where it was inlined into its caller):\n\n";
    md += &header("piece");
    md += &table(List::Inclusive, 0.0, names(List::Inclusive));
    for p in ps.iter().rev() {
        md += &format!("\nTop symbols by self time, {}:\n\n| % | symbol |\n|---|---|\n", p.label);
        for (sym, pct) in p.top_self.iter().take(20) {
            md += &format!("| {pct:.2} | `{}` |\n", sym.replace('|', "\\|"));
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed results read back into a [`Report`] and written again give the same
    /// JSON: the typed report keeps the result files' shape.
    #[test]
    fn committed_results_read_back_unchanged() {
        let v: serde_json::Value = serde_json::from_str(include_str!("../../results/redirects.json")).unwrap();
        let report = Report::deserialize(&v).unwrap();
        assert_eq!(serde_json::to_value(&report).unwrap(), v);
        assert!(markdown(&report).starts_with("# Redirects: kurz vs a bare hyper 302 server\n"));
        // From before the edge targets and without a profile.
        let v: serde_json::Value = serde_json::from_str(include_str!("../../results/redirects-capture-9rounds.json")).unwrap();
        let report = Report::deserialize(&v).unwrap();
        assert!(!report.targets.edge_throughput_ratio.met && report.targets.edge_throughput_ratio.value.is_nan());
        assert!(markdown(&report).contains("Figures shown as – come from the perf profile"));
    }
}
