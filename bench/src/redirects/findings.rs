//! The redirect benchmark's findings: what this run's numbers and profile say, what the
//! redirect path already does about them, and what is left. The figures come from the
//! run; the reasoning was written from reading the redirect path
//! (`web/src/serve.rs`, `web/src/observe.rs`, `query-edge/src/routes/redirect.rs`,
//! `storage/src/cache/`, `query-edge/src/capture/`, `projector/src/projections/clicks/`,
//! `storage/src/store/embedded.rs`).

use super::profile::List::{self, Categories, Inclusive, Threads};
use super::report::{Report, TARGET_THROUGHPUT_RATIO};

pub(super) fn findings(v: &Report) -> String {
    let prof = |label: &str| v.profile.as_ref().and_then(|a| a.iter().find(|p| p.label == label));
    // µs/req of a profile row (a row a profile lacks had no samples; NaN without that profile).
    let us = |label: &str, list: List, name: &str| -> f64 {
        prof(label).map_or(f64::NAN, |p| p.share(list, name) * p.cpu_us_per_request / 100.0)
    };
    let split = &v.cpu_us_per_request_split;
    let appended = v.kurz_hot.server_sum(|s| s.clicks_appended);
    let dropped = v.kurz_hot.server_sum(|s| s.clicks_dropped);
    let captured = appended / (appended + dropped).max(1.0);
    let capture_us = split.capture;
    let projection_us = split.projection;
    let click_us = capture_us + projection_us;
    let cache_get = us("kurz HEAD", Inclusive, "quick_cache Cache::get");
    // `observed_now` is inlined into the fast path's closure, so its own row can read 0:
    // it holds at least the redirect below it.
    let observed = us("kurz HEAD", Inclusive, "redirect fast path: observe::observed (span, metrics, catch-panic) and all below").max(us(
        "kurz HEAD",
        Inclusive,
        "redirect (lookup, Location, click record)",
    ));
    let handler = us("kurz HEAD", Inclusive, "redirect (lookup, Location, click record)");
    let resolve = us("kurz HEAD", Inclusive, "cache lookup (get_local at once, or resolve)");
    let malloc_head = us("kurz HEAD", Categories, "allocator (mimalloc)");
    let malloc_ceiling = us("ceiling", Categories, "allocator (mimalloc)");
    let apply = us("kurz GET", Inclusive, "blocking pool tasks (the store's redb write transactions of projected clicks, log reads)");
    let history = us("kurz GET", Inclusive, "click history rows (`write_click_rows`: JSON row and index entries per click)");
    let flusher = us("kurz edge capture on", Inclusive, "ClickFlusher (click encode + append)");
    let record = us("kurz edge capture on", Inclusive, "click record on the request path (copy headers, queue push)");
    let writer = us("kurz edge capture on", Threads, "kurz-log-writer");
    let syncer = us("kurz edge capture on", Threads, "kurz-log-syncer");
    let prom = us("kurz HEAD", Categories, "prometheus (metrics labels, observe)");
    let kernel_head = us("kurz HEAD", Categories, "kernel (loopback TCP, epoll, syscalls)");
    let kernel_ceiling = us("ceiling", Categories, "kernel (loopback TCP, epoll, syscalls)");
    let ms = |x: Option<f64>| x.map_or("–".into(), |x| format!("{x:.3}"));

    let mut md = String::from("\n## Findings\n\n");
    md += &format!(
        "1. **Clicks are the largest cost{}, and most of it is their projection.** A GET of `kurz serve` costs {click_us:.1} µs/req \
         more CPU than the same redirect from an edge with capture off, drain included{}: {capture_us:.1} µs at the edge \
         (capture, enrich, JSON-encode, append to the log: the edge with capture on minus off) and {projection_us:.1} µs \
         for the projector's aggregation in the same process (read, decode, the click's aggregate mutations summed per row \
         and batch, and one `/events` history row per click, in one redb transaction per batch of up to 8,192). In a \
         scaled-out deployment the second part runs in projector processes, not on the edge: the query-edge role's own \
         figures are the edge rows above. Of the projection, the store's redb write transactions (on the blocking pool) take {apply:.2} µs/req, and within them the click history rows {history:.2}.\n",
        if dropped > 0.0 { ", and it does not keep up" } else { "" },
        if dropped > 0.0 {
            format!(
                ", although only {:.0} % of the hot runs' clicks were captured: the other {:.0} % were dropped because the \
                 click queue was full, so each captured click costs about {:.0} µs",
                captured * 100.0,
                (1.0 - captured) * 100.0,
                click_us / captured.max(0.01)
            )
        } else {
            " (every click was captured)".to_string()
        },
    );
    md += &format!(
        "2. **Capture at the edge** ({capture_us:.1} µs/req, capture on minus off): recording on the request path \
         (`ClickSink::record`: copy a few headers, push to this thread's queue shard) {record:.2} µs; the flusher (enrich: \
         user-agent class, visitor hash, UTM; JSON-encode; build the records; hand them to the log) {flusher:.2}; the log's \
         writer thread (batch encoding, CRC32, the `write` into the page cache) {writer:.2}; its syncer (`fdatasync` every \
         200 ms, `CLICKS_FLUSH_MS`) {syncer:.2}. The rest is the extra kernel and cache work of a busier process.\n"
    );
    md += &format!(
        "3. **kurz's own request path is now small**: {:+.1} µs/req against axum with one route (the edge with capture off minus \
         axum one-route; the redirect is answered ahead of the router, `web/src/serve.rs` `FastPath`, and from the \
         in-process cache at once, with no future). `observe::observed_now` (span, metrics, catch-panic) and all below it: {observed:.2} µs/req, of which the redirect {handler:.2}, the cache \
         lookup {resolve:.2} (quick_cache `get`: {cache_get:.2}); Prometheus {prom:.2} µs/req of self time (metric \
         children are resolved once per thread and route); tracing ≈ 0 at `--log warn`.\n",
        split.request_path
    );
    md += &format!(
        "4. **Framework**: axum's Router costs {:.1} µs/req over bare hyper (axum one-route vs ceiling): route matching, \
         the extensions map, a boxed future per layer. kurz's redirects skip it (the fast path); every other route goes \
         through it. The allocator: {malloc_head:.2} µs/req in kurz HEAD vs {malloc_ceiling:.2} in the ceiling (the \
         `Location` value, the response's header map, hyper's buffers; on GET also the click: `RawClick` strings, the \
         encoded record and its key and header, freed on the log's writer thread).\n",
        split.router
    );
    md += &format!(
        "5. **Kernel time per request grows as user time grows**: {kernel_head:.2} µs/req in kurz HEAD vs {kernel_ceiling:.2} in \
         the ceiling, for the same syscalls: slower responses mean fewer ready sockets per `epoll_wait` and more context \
         switches (`finish_task_switch`, `_raw_spin_unlock_irqrestore`: wake-ups). This part shrinks with the user-space \
         work; it cannot be fixed directly.\n"
    );
    md += &format!(
        "6. **The large set** costs {:.1} µs/req (drain included) against {:.1} for the hot set, at a cache hit ratio of {}: \
         the redirect itself barely changes (server p99 {} vs {} ms, {:.1} vs {:.1} µs/req during the run); the \
         difference is the click projection afterwards, touching up to 1,024 distinct links' B-tree pages per batch \
         instead of the same 1,000 hot ones. wrk, picking from a larger Lua table, also needs {:.1} µs/req instead of \
         {:.1}, which lowers this run's throughput on the shared cores.\n",
        v.kurz_1m.server_cpu_us_per_request_incl_drain,
        v.kurz_hot.server_cpu_us_per_request_incl_drain,
        v.kurz_1m.cache_hit_ratio.map_or("–".into(), |x| format!("{x:.4}")),
        ms(v.kurz_1m.server_p99_ms),
        ms(v.kurz_hot.server_p99_ms),
        v.kurz_1m.server_cpu_us_per_request,
        v.kurz_hot.server_cpu_us_per_request,
        v.kurz_1m.wrk_cpu_us_per_request,
        v.kurz_hot.wrk_cpu_us_per_request,
    );

    md += "\n## Done on the redirect path, and what is left\n\nIn this version (each was a proposed fix of an earlier run of this benchmark):\n\n\
           - `web/src/serve.rs`: HTTP/1.1 on hyper's connection builder instead of `axum::serve` (no HTTP/1-or-2 \
           detection, `TCP_NODELAY`, each connection waits on its own shutdown token instead of one shared signal).\n\
           - `storage/src/cache/memory.rs`: quick_cache (S3-FIFO) instead of moka.\n\
           - `web/src/observe.rs`, `query-edge/src/metrics.rs`, `storage/src/cache/mod.rs`: metric children resolved once, \
           no label strings allocated per request.\n\
           - `query-edge/src/routes/redirect.rs`: `GET /{code}` answered ahead of the axum router (`fast_path`: a path \
           that can only be a code; the same span, metrics and panic handling), the code read from the path in place and \
           the headers by reference (no `HeaderMap` clone, no `Path<String>`); a code the in-process cache holds is \
           answered at once (`LinkCache::get_local`, `observe::observed_now`, `serve::Fast::Ready`): no boxed future, no \
           `async_trait` boxes.\n\
           - mimalloc as the global allocator; the click queue keeps its capacity between flushes; click aggregates summed \
           per row and batch in the projector (`projector/src/batch.rs`).\n\n\
           Not done, with the expected gain:\n\n| # | change | µs of server CPU per redirect |\n|---|---|---|\n";
    md += &format!(
        "| 1 | Click history: one compact binary row per click keyed `(url_id, id)` instead of a JSON row and its index \
         entries, or serve the click rows of `/events` from the clicks topic itself | most of {projection_us:.1} (`kurz serve` only) |\n"
    );
    md += "| 2 | The `Location` header value prebuilt in the cache entry (no validation and copy per redirect) | ≈ 0.05 |\n";
    let budget = (v.ceiling.server_cpu_us_per_request_incl_drain + v.ceiling.wrk_cpu_us_per_request) / TARGET_THROUGHPUT_RATIO
        - v.ceiling.wrk_cpu_us_per_request;
    md += &format!(
        "\nFor {TARGET_THROUGHPUT_RATIO:.2}× the ceiling a redirect may cost at most about {budget:.1} µs of server CPU. The query-edge \
         role with capture on costs {:.1}, with capture off {:.1}; `kurz serve`, which also projects every click on the same \
         two cores, {:.1}. The client-p99 ratio follows throughput (a closed loop of {} connections: latency ≈ \
         connections ÷ throughput) plus the preemption by click batches.\n",
        v.kurz_edge_capture.server_cpu_us_per_request_incl_drain,
        v.kurz_hot_no_capture.server_cpu_us_per_request_incl_drain,
        v.kurz_hot.server_cpu_us_per_request_incl_drain,
        v.generator.connections,
    );
    if v.profile.as_ref().is_none_or(|a| a.is_empty()) {
        // A run without `perf` has no per-piece figures: say so instead of printing NaN.
        md = md.replace("NaN", "–");
        md += "\nFigures shown as – come from the perf profile, which this run did not take (`--profile never`, or no \
               target missed with `--profile auto`).\n";
    }
    md
}
