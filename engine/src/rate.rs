//! Recent request rates per key in bounded memory: a count-min sketch whose counts halve every
//! window, so old traffic fades.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::time::Duration;

use tokio::time::Instant;
use xxhash_rust::xxh3::xxh3_64;

const DEPTH: usize = 4;
const WIDTH: usize = 4096;

/// Estimates how often each key was asked for lately.
#[derive(Debug)]
pub(crate) struct RateSketch {
    counts: Box<[AtomicU32]>,
    window: Duration,
    last_decay: Mutex<Instant>,
}

impl RateSketch {
    pub(crate) fn new(window: Duration) -> Self {
        RateSketch {
            counts: (0..DEPTH * WIDTH).map(|_| AtomicU32::new(0)).collect(),
            window,
            last_decay: Mutex::new(Instant::now()),
        }
    }

    fn slots(key: &str) -> [usize; DEPTH] {
        let hash = xxh3_64(key.as_bytes());
        let (low, high) = (hash as u32 as usize, (hash >> 32) as usize);
        std::array::from_fn(|row| row * WIDTH + (low.wrapping_add(row.wrapping_mul(high)) % WIDTH))
    }

    /// Counts one request for `key` and returns its estimated rate in requests per second.
    pub(crate) fn record(&self, key: &str) -> f64 {
        self.decay_if_due();
        let min = Self::slots(key)
            .iter()
            .map(|&slot| self.counts[slot].fetch_add(1, Relaxed).saturating_add(1))
            .min()
            .unwrap_or(0);
        // With halving every window, a steady rate r settles at a count of about 2·r·window.
        f64::from(min) / (2.0 * self.window.as_secs_f64())
    }

    fn decay_if_due(&self) {
        let Ok(mut last) = self.last_decay.try_lock() else { return };
        let now = Instant::now();
        if now.duration_since(*last) < self.window {
            return;
        }
        *last = now;
        for count in self.counts.iter() {
            // Racing increments may be halved or not; an estimate tolerates that.
            let _ = count.fetch_update(Relaxed, Relaxed, |c| Some(c / 2));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn hot_keys_read_hotter_than_cold_ones_and_rates_fade() {
        let sketch = RateSketch::new(Duration::from_secs(1));
        for _ in 0..1000 {
            sketch.record("hot");
        }
        let hot = sketch.record("hot");
        let cold = sketch.record("cold");
        assert!(hot > 400.0 && cold < 5.0, "hot {hot}, cold {cold}");
        for _ in 0..10 {
            tokio::time::advance(Duration::from_secs(1)).await;
            sketch.record("other");
        }
        assert!(sketch.record("hot") < 2.0);
    }
}
