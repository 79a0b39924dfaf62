//! Percentiles and result files.

use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub n: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

pub fn summarize(samples: &mut [Duration]) -> Summary {
    samples.sort();
    let at = |q: f64| -> f64 {
        if samples.is_empty() {
            return 0.0;
        }
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[i].as_secs_f64() * 1000.0
    };
    Summary { n: samples.len(), p50_ms: at(0.50), p90_ms: at(0.90), p99_ms: at(0.99), max_ms: at(1.0) }
}

/// Writes `<dir>/<name>.json` and `<dir>/<name>.md`.
pub fn write(dir: &std::path::Path, name: &str, json: &serde_json::Value, markdown: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(format!("{name}.json")), serde_json::to_string_pretty(json).unwrap())?;
    std::fs::write(dir.join(format!("{name}.md")), markdown)?;
    Ok(())
}
