//! Recent request rates per key in bounded memory, and the hottest keys.
//!
//! A count-min sketch whose counts halve every window, so old traffic fades; beside it the K
//! hottest keys seen, kept in a small list that is only locked when a key's count beats the
//! coldest of them. No map grows with the key space and nothing scans it.

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use xxhash_rust::xxh3::xxh3_64;

const DEPTH: usize = 4;
const WIDTH: usize = 4096;
/// How many hottest keys are kept.
pub(crate) const TOP: usize = 32;
/// One request in this many is sampled (with this weight) where counting must stay cheap.
const SAMPLE: u32 = 128;
/// A thread checks whether counts are due to halve once in this many records; reading the
/// rates ([`RateSketch::hottest`]) always checks.
const DECAY_CHECK_EVERY: u32 = 16;

/// Estimates how often each key was asked for lately, and which keys are hottest.
#[derive(Debug)]
pub(crate) struct RateSketch {
    counts: Box<[AtomicU32]>,
    window: Duration,
    /// When the sketch was made; decays are counted in windows since then.
    start: Instant,
    /// How many windows have been decayed (read on every record, written once a window).
    decayed: AtomicU64,
    top: Mutex<Vec<(String, u32)>>,
    /// The coldest count in a full top list (0 until it fills): the bar a key must clear.
    floor: AtomicU32,
}

impl RateSketch {
    pub(crate) fn new(window: Duration) -> Self {
        RateSketch {
            counts: (0..DEPTH * WIDTH).map(|_| AtomicU32::new(0)).collect(),
            window,
            start: Instant::now(),
            decayed: AtomicU64::new(0),
            top: Mutex::new(Vec::with_capacity(TOP + 1)),
            floor: AtomicU32::new(0),
        }
    }

    fn slots(key: &str) -> [usize; DEPTH] {
        let hash = xxh3_64(key.as_bytes());
        let (low, high) = (hash as u32 as usize, (hash >> 32) as usize);
        std::array::from_fn(|row| row * WIDTH + (low.wrapping_add(row.wrapping_mul(high)) % WIDTH))
    }

    /// Counts one request for `key` and returns its estimated rate in requests per second.
    pub(crate) fn record(&self, key: &str) -> f64 {
        self.record_weighted(key, 1)
    }

    /// The estimated rate of `key` in requests per second, without counting a request.
    pub(crate) fn estimate(&self, key: &str) -> f64 {
        let count =
            Self::slots(key).iter().map(|&slot| self.counts[slot].load(Relaxed)).min().unwrap_or(0);
        self.rate(count)
    }

    /// Counts a request cheaply: one in [`SAMPLE`] is recorded, with that weight.
    pub(crate) fn record_sampled(&self, key: &str) {
        // A per-thread xorshift, so the sample does not alias with a periodic access pattern.
        thread_local! {
            static STATE: Cell<u32> = const { Cell::new(0x9E37_79B9) };
        }
        let sampled = STATE.with(|state| {
            let mut x = state.get();
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            state.set(x);
            x.is_multiple_of(SAMPLE)
        });
        if sampled {
            self.record_weighted(key, SAMPLE);
        }
    }

    fn record_weighted(&self, key: &str, weight: u32) -> f64 {
        // Reading the clock costs more than the rest of a record (about 80 ns on a VM):
        // each thread looks at it once every [`DECAY_CHECK_EVERY`] records.
        thread_local! {
            static RECORDS: Cell<u32> = const { Cell::new(0) };
        }
        let check = RECORDS.with(|records| {
            let n = records.get().wrapping_add(1);
            records.set(n);
            n % DECAY_CHECK_EVERY == 1
        });
        if check {
            self.decay_if_due();
        }
        let count = Self::slots(key)
            .iter()
            .map(|&slot| self.counts[slot].fetch_add(weight, Relaxed).saturating_add(weight))
            .min()
            .unwrap_or(0);
        if count > self.floor.load(Relaxed) {
            self.promote(key, count);
        }
        self.rate(count)
    }

    /// With halving every window, a steady rate r settles at a count of about 2·r·window.
    fn rate(&self, count: u32) -> f64 {
        f64::from(count) / (2.0 * self.window.as_secs_f64())
    }

    fn promote(&self, key: &str, count: u32) {
        // Under contention a sample may skip the list: it is an estimate, and the hit path must
        // never wait here.
        let mut top = match self.top.try_lock() {
            Ok(top) => top,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return,
        };
        match top.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = entry.1.max(count),
            None => top.push((key.to_owned(), count)),
        }
        if top.len() > TOP
            && let Some(coldest) =
                top.iter().enumerate().min_by_key(|(_, (_, c))| *c).map(|(i, _)| i)
        {
            top.swap_remove(coldest);
        }
        let floor =
            if top.len() >= TOP { top.iter().map(|(_, c)| *c).min().unwrap_or(0) } else { 0 };
        self.floor.store(floor, Relaxed);
    }

    /// The hottest keys with their estimated rates (requests per second), hottest first.
    pub(crate) fn hottest(&self) -> Vec<(String, f64)> {
        self.decay_if_due();
        let top = self.top.lock().unwrap_or_else(PoisonError::into_inner);
        let mut hottest: Vec<(String, f64)> =
            top.iter().map(|(k, c)| (k.clone(), self.rate(*c))).collect();
        hottest.sort_by(|a, b| b.1.total_cmp(&a.1));
        hottest
    }

    fn decay_if_due(&self) {
        let due = (self.start.elapsed().as_nanos() / self.window.as_nanos().max(1)) as u64;
        let done = self.decayed.load(Relaxed);
        // One caller wins the window's decay; everyone else only read an atomic.
        if due <= done || self.decayed.compare_exchange(done, due, Relaxed, Relaxed).is_err() {
            return;
        }
        // Halved once per window that passed (a quiet spell may span several).
        let halvings = u32::try_from(due - done).unwrap_or(u32::MAX).min(31);
        for count in self.counts.iter() {
            // Racing increments may be halved or not; an estimate tolerates that.
            let _ = count.fetch_update(Relaxed, Relaxed, |c| Some(c >> halvings));
        }
        let mut top = self.top.lock().unwrap_or_else(PoisonError::into_inner);
        top.retain_mut(|(_, count)| {
            *count >>= halvings;
            *count > 0
        });
        self.floor.store(self.floor.load(Relaxed) >> halvings, Relaxed);
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
        tokio::time::advance(Duration::from_secs(10)).await;
        // Reading the hottest keys applies the decay due (records check now and then).
        assert!(sketch.hottest().iter().all(|(_, rate)| *rate < 2.0));
        assert!(sketch.estimate("hot") < 2.0);
    }

    #[tokio::test(start_paused = true)]
    async fn keeps_the_top_keys_in_bounded_space() {
        let sketch = RateSketch::new(Duration::from_secs(10));
        for i in 0..2000u32 {
            // key-0 is asked 200 times, key-1 100 times, everything else once.
            let key = match i % 20 {
                0..=9 => "key-0".to_owned(),
                10..=14 => "key-1".to_owned(),
                _ => format!("cold-{i}"),
            };
            sketch.record(&key);
        }
        let hottest = sketch.hottest();
        assert!(hottest.len() <= TOP);
        assert_eq!(hottest[0].0, "key-0");
        assert_eq!(hottest[1].0, "key-1");
        assert!(hottest[0].1 > hottest[1].1);
    }
}
