//! The load generator: Debian's `wrk`, driven with a Lua script that picks a random code
//! per request, and its text output parsed into a [`WrkRun`].

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Picks a uniformly random path from the file named after `--` for every request. Each
/// wrk thread has its own Lua state; `setup` gives each a distinct seed.
pub(super) const WRK_SCRIPT: &str = r#"
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end

local paths = {}
local n = 0
function init(args)
  local f = assert(io.open(args[1], "r"))
  for line in f:lines() do
    n = n + 1
    paths[n] = "/" .. line
  end
  f:close()
  method = args[2] or "GET"
  if args[3] == "browser" then
    wrk.headers["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"
    wrk.headers["Accept-Language"] = "en-US,en;q=0.9"
  end
  math.randomseed(os.time() * 1000 + id)
end

function request()
  return wrk.format(method, paths[math.random(n)])
end
"#;

/// One wrk run, as wrk reports it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct WrkRun {
    pub requests_per_s: f64,
    pub requests: u64,
    pub p50_ms: f64,
    pub p75_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// "Non-2xx or 3xx responses" (a 404 would show here).
    pub non_2xx_3xx: u64,
    pub socket_errors: u64,
}

/// A wrk duration (`512.00us`, `1.23ms`, `2.00s`, `1.00m`) in milliseconds.
fn wrk_duration_ms(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, mult) = if let Some(v) = s.strip_suffix("us") {
        (v, 0.001)
    } else if let Some(v) = s.strip_suffix("ms") {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix('m') {
        (v, 60_000.0)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1000.0)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|v| v * mult)
}

/// wrk's output (run with `--latency`); None unless it holds a request rate and a p99.
fn parse_wrk(out: &str) -> Option<WrkRun> {
    let mut r = WrkRun::default();
    let mut in_dist = false;
    for line in out.lines() {
        let t = line.trim();
        let words: Vec<&str> = t.split_whitespace().collect();
        if t.starts_with("Latency Distribution") {
            in_dist = true;
            continue;
        }
        if in_dist && words.len() == 2 && words[0].ends_with('%') {
            let v = wrk_duration_ms(words[1])?;
            match words[0] {
                "50%" => r.p50_ms = v,
                "75%" => r.p75_ms = v,
                "90%" => r.p90_ms = v,
                "99%" => r.p99_ms = v,
                _ => {}
            }
            continue;
        }
        in_dist = false;
        if words.first() == Some(&"Latency") && words.len() >= 4 {
            r.max_ms = wrk_duration_ms(words[3])?;
        } else if t.starts_with("Requests/sec:") {
            r.requests_per_s = words.get(1)?.parse().ok()?;
        } else if words.len() > 2 && words[1] == "requests" && words[2] == "in" {
            r.requests = words[0].parse().ok()?;
        } else if t.starts_with("Non-2xx or 3xx responses:") {
            r.non_2xx_3xx = words.last()?.parse().ok()?;
        } else if t.starts_with("Socket errors:") {
            // Socket errors: connect 0, read 0, write 0, timeout 0
            r.socket_errors = t.split(',').filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok()).sum();
        }
    }
    (r.requests_per_s > 0.0 && r.p99_ms > 0.0).then_some(r)
}

/// Exits with code 2 and an install hint when `wrk` is not installed.
pub(super) fn require_wrk() {
    let ok = Command::new("wrk").arg("--version").output().is_ok();
    if !ok {
        eprintln!(
            "kurz-bench redirects: `wrk` is not installed. It is the load generator of this benchmark \
             (Debian package `wrk`): install it with `sudo apt-get install -y wrk` and run again."
        );
        std::process::exit(2);
    }
}

/// Who the requests say they come from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Client {
    /// wrk's bare requests (no `User-Agent`).
    Bare,
    /// A desktop Firefox's `User-Agent` and `Accept-Language`: what redirect rules read.
    Browser,
}

/// wrk with this run's script, connections and threads.
pub(super) struct Gen {
    pub script: PathBuf,
    pub connections: usize,
    pub threads: usize,
}

impl Gen {
    /// One wrk run of `secs` seconds against `url`, each request `method /<a random line
    /// of paths>` as `client`: the parsed figures and wrk's output. Panics if wrk fails.
    pub async fn run(&self, url: &str, paths: &Path, secs: u64, method: &str, client: Client) -> (WrkRun, String) {
        let mut cmd = Command::new("wrk");
        cmd.args(["-c", &self.connections.to_string(), "-t", &self.threads.to_string(), "-d", &format!("{secs}s"), "--latency"])
            .arg("-s")
            .arg(&self.script)
            .arg(url)
            .arg("--")
            .arg(paths)
            .arg(method);
        if client == Client::Browser {
            cmd.arg("browser");
        }
        let out = tokio::task::spawn_blocking(move || cmd.output()).await.unwrap().expect("run wrk");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "wrk failed: {}\n{}", text, String::from_utf8_lossy(&out.stderr));
        let parsed = parse_wrk(&text).unwrap_or_else(|| panic!("cannot parse wrk's output:\n{text}"));
        (parsed, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_latency_output() {
        let out = "Running 10s test @ http://127.0.0.1:40000
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.02ms    2.11ms  47.33ms   93.10%
    Req/Sec    43.60k     3.01k   50.12k    71.00%
  Latency Distribution
     50%  475.00us
     75%  812.00us
     90%    1.57ms
     99%    4.41ms
  866430 requests in 10.00s, 61.14MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 7
Requests/sec:  86643.12
Transfer/sec:      6.11MB
";
        let r = parse_wrk(out).unwrap();
        assert_eq!(r.requests_per_s, 86643.12);
        assert_eq!(r.requests, 866_430);
        assert_eq!((r.p90_ms, r.p99_ms, r.max_ms), (1.57, 4.41, 47.33));
        assert!((r.p50_ms - 0.475).abs() < 1e-12 && (r.p75_ms - 0.812).abs() < 1e-12, "{r:?}");
        assert_eq!((r.non_2xx_3xx, r.socket_errors), (7, 5));
        assert_eq!(wrk_duration_ms("1.50m"), Some(90_000.0));
        assert_eq!(wrk_duration_ms("2.00s"), Some(2000.0));
        assert!(parse_wrk("Requests/sec: 0\n").is_none());
    }
}
