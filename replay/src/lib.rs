//! bellman-replay: experience replay for off-policy RL, in plain arrays (no envs, no tensors).
//!
//! * [`ReplayBuffer`]: uniform sampling (DQN) over a [`Storage`]: [`FlatStorage`] (any fixed observation shape,
//!   `f32` or `u8`) or [`FrameStackStorage`] (Atari frame stacks, each frame stored once; sampled into a
//!   [`Batch`] of full stacks or a [`WindowBatch`] that writes each frame a transition needs once).
//! * [`PrioritizedReplayBuffer`]: proportional prioritised replay (Schaul et al. 2016) on a [`SumTree`] and a
//!   [`MinTree`].
//! * [`NStep`]: n-step returns in front of any buffer, for several parallel envs.
//! * Save and load in a versioned binary format, written atomically.
//!
//! Observations are `f32` or `u8`, actions `i64` (discrete: one index) or `f32` (continuous), rewards `f32`.
//! Sampling writes into a caller-owned [`Batch`] and takes the caller's rng, so runs are reproducible.
//!
//! ```
//! use bellman_replay::{Batch, ReplayBuffer, Transition};
//! use rand::SeedableRng;
//! let mut buf = ReplayBuffer::flat::<f32, i64>(10_000, &[4], 1).unwrap();
//! for i in 0..100 {
//!     let (o, n) = ([i as f32; 4], [i as f32 + 1.0; 4]);
//!     buf.push(&Transition { obs: &o, action: &[i % 2], reward: 1.0, next_obs: &n,
//!                            terminated: i == 99, truncated: false, discount: 0.99 }).unwrap();
//! }
//! let mut rng = rand_pcg::Pcg64::seed_from_u64(1);
//! let mut batch = Batch::new();
//! buf.sample(32, &mut rng, &mut batch).unwrap();
//! for r in 0..32 {
//!     assert_eq!(batch.next_obs_row(r)[0], batch.obs_row(r)[0] + 1.0);
//! }
//! ```
pub mod element;
pub mod error;
pub mod frames;
pub mod io;
pub mod nstep;
pub mod prioritized;
pub mod storage;
pub mod transition;
pub mod tree;
pub mod uniform;
pub mod window;

pub use element::Element;
pub use error::{ReplayError, Result};
pub use frames::FrameStackStorage;
pub use nstep::{NStep, TransitionSink};
pub use prioritized::PrioritizedReplayBuffer;
pub use storage::{FlatStorage, Storage};
pub use transition::{Batch, Transition, TransitionBatch};
pub use tree::{MinTree, SumTree};
pub use uniform::{FlatReplay, FrameReplay, ReplayBuffer};
pub use window::WindowBatch;
