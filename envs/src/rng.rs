//! Seeding: every environment owns one [`EnvRng`], reseeded by `reset(Some(seed))`.
//!
//! Gymnasium uses numpy's PCG64; a Rust port cannot reproduce that stream, so parity tests set the internal state
//! explicitly (see `tests/data/gymnasium/README.md`). Within Bellman the same seed always gives the same episode.
use rand::SeedableRng;

/// The random generator every environment uses (PCG-64, the same family numpy uses).
pub type EnvRng = rand_pcg::Pcg64;

/// A generator seeded from a `u64` (deterministic).
///
/// ```
/// use rand::Rng;
/// let mut a = bellman_envs::rng::seeded(7);
/// let mut b = bellman_envs::rng::seeded(7);
/// assert_eq!(a.random::<u64>(), b.random::<u64>());
/// ```
pub fn seeded(seed: u64) -> EnvRng {
    EnvRng::seed_from_u64(seed)
}

/// A generator seeded from the operating system's entropy, as Gymnasium does on `reset(seed=None)` when the env
/// was never seeded.
pub fn from_entropy() -> EnvRng {
    EnvRng::from_rng(&mut rand::rng())
}
