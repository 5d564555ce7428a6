//! Versioned weight publication: the learner publishes, actors pick up the newest version without blocking it.
//!
//! The cell holds `(version, Arc<W>)` behind a `RwLock` and mirrors the version in an atomic. An actor checks the
//! atomic (one load, no lock) and only when it changed takes the read lock to clone the `Arc` (a reference-count
//! increment). Publishing takes the write lock just long enough to swap the `Arc`, so the learner never waits for
//! an actor to copy weights. Versions start at 0 (the initial weights) and grow by one per publication.
//!
//! ```
//! use bellman_agents::actors::WeightsCell;
//! let cell = WeightsCell::new(vec![0.0f32; 3]);
//! assert_eq!(cell.version(), 0);
//! assert_eq!(cell.publish(vec![1.0; 3]), 1);
//! let (v, w) = cell.latest();
//! assert_eq!((v, w[0]), (1, 1.0));
//! ```
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// A versioned slot of weights shared between one learner and many actors.
#[derive(Debug)]
pub struct WeightsCell<W> {
    version: AtomicU64,
    slot: RwLock<(u64, Arc<W>)>,
}

impl<W> WeightsCell<W> {
    /// A cell holding `initial` as version 0.
    pub fn new(initial: W) -> Self {
        WeightsCell { version: AtomicU64::new(0), slot: RwLock::new((0, Arc::new(initial))) }
    }

    /// The newest published version (a single atomic load).
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Publishes `w` as the next version and returns that version.
    pub fn publish(&self, w: W) -> u64 {
        self.publish_arc(Arc::new(w)).0
    }

    /// Publishes `w` as the next version; returns that version and the weights it replaced (which a publisher
    /// can refill in place and publish again once no actor holds them: `Arc::get_mut`).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use bellman_agents::actors::WeightsCell;
    /// let cell = WeightsCell::new(vec![0.0f32; 2]);
    /// let (v, mut old) = cell.publish_arc(Arc::new(vec![1.0; 2]));
    /// assert_eq!((v, old[0]), (1, 0.0));
    /// Arc::get_mut(&mut old).unwrap().fill(2.0); // nobody else holds version 0
    /// assert_eq!(cell.publish_arc(old).0, 2);
    /// assert_eq!(cell.latest().1[0], 2.0);
    /// ```
    pub fn publish_arc(&self, w: Arc<W>) -> (u64, Arc<W>) {
        // The lock only guards an Arc swap: a panic cannot leave it half-written, so a poisoned lock is still
        // consistent and is used as is.
        let mut g = self.slot.write().unwrap_or_else(|p| p.into_inner());
        let v = g.0 + 1;
        let old = std::mem::replace(&mut *g, (v, w)).1;
        self.version.store(v, Ordering::Release);
        drop(g);
        (v, old)
    }

    /// The newest version and its weights.
    pub fn latest(&self) -> (u64, Arc<W>) {
        let g = self.slot.read().unwrap_or_else(|p| p.into_inner());
        (g.0, Arc::clone(&g.1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_see_monotone_versions_under_concurrent_publication() {
        let cell = Arc::new(WeightsCell::new(0u64));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let c = Arc::clone(&cell);
                std::thread::spawn(move || {
                    let mut last = 0;
                    for _ in 0..20_000 {
                        let (v, w) = c.latest();
                        // The payload is the version it was published as: the pair is never torn.
                        assert_eq!(v, *w);
                        assert!(v >= last, "version went back from {last} to {v}");
                        last = v;
                    }
                })
            })
            .collect();
        for i in 1..=5_000u64 {
            assert_eq!(cell.publish(i), i);
        }
        for r in readers {
            r.join().unwrap();
        }
        assert_eq!(cell.version(), 5_000);
    }
}
