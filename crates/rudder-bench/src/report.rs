//! Latency recording and the `BENCH` line format.

use std::time::Duration;

/// Latencies of one measured operation.
#[derive(Clone, Default)]
pub struct Latencies {
    samples_us: Vec<u64>,
}

impl Latencies {
    pub fn record(&mut self, d: Duration) {
        self.samples_us.push(d.as_micros() as u64);
    }

    pub fn extend(&mut self, other: Latencies) {
        self.samples_us.extend(other.samples_us);
    }

    pub fn len(&self) -> usize {
        self.samples_us.len()
    }

    /// The `q` quantile (0..=1) in milliseconds.
    pub fn quantile_ms(&mut self, q: f64) -> f64 {
        if self.samples_us.is_empty() {
            return f64::NAN;
        }
        self.samples_us.sort_unstable();
        let index = ((self.samples_us.len() - 1) as f64 * q).round() as usize;
        self.samples_us[index] as f64 / 1000.0
    }
}

/// Prints one figure.
pub fn bench(name: &str, value: f64, unit: &str) {
    let value = if value >= 100.0 { format!("{value:.0}") } else { format!("{value:.2}") };
    println!("BENCH {name} {value} {unit}");
}

/// Context lines that are not figures (machine, settings).
pub fn note(text: &str) {
    println!("# {text}");
}
