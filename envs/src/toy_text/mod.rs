//! Gymnasium 1.4's toy-text environments: [`FrozenLake`], [`CliffWalking`] and [`Taxi`].
//!
//! Each implements both [`Env`](crate::Env) (observation and action are `usize`) and [`Mdp`](crate::Mdp): the
//! model is stored in a [`TransitionTable`] built in Gymnasium's `P[s][a]` order, and `step` samples it exactly as
//! Gymnasium's `categorical_sample` does. `tests/toy_text_parity.rs` checks every table entry for entry against
//! fixtures recorded from Gymnasium 1.4.0 itself.
//!
//! Random numbers: Gymnasium draws from numpy's PCG64 stream, which a Rust port cannot reproduce; the same seed
//! always gives the same episode within Bellman, but not the episode Gymnasium gives for that seed.
//!
//! ```
//! use bellman_envs::{Env, Mdp, toy_text::{FrozenLake, FrozenLakeConfig}};
//! let mut env = FrozenLake::new(FrozenLakeConfig { is_slippery: false, ..Default::default() }).unwrap();
//! let (s, _) = env.reset(Some(0)).unwrap();
//! assert_eq!(s, 0);
//! let step = env.step(2).unwrap(); // right
//! assert_eq!((step.obs, step.info.prob), (1, Some(1.0)));
//! assert_eq!(env.grid_shape(), Some((4, 4)));
//! ```
mod cliff_walking;
mod frozen_lake;
mod taxi;

pub use cliff_walking::{CliffWalking, CliffWalkingConfig};
pub use frozen_lake::{FrozenLake, FrozenLakeConfig, FrozenLakeMap, generate_random_map, has_path_to_goal, named_map};
pub use taxi::{Taxi, TaxiConfig};

use crate::env::check_discrete;
use crate::error::{EnvError, Result};
use crate::mdp::{Outcome, TransitionTable, check_initial_distribution, sample_categorical};
use crate::registry::{EnvSpec, OptionDoc, boxed, boxed_tabular};
use crate::rng::{EnvRng, from_entropy, seeded};
use crate::space::Space;

/// Where an episode stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    NeverReset,
    Running,
    Done,
}

/// The state shared by every tabular env: its model, initial distribution, generator and current state.
///
/// `reset` samples the initial state with Gymnasium's `categorical_sample(initial_state_distrib)`, `step` samples
/// `P[s][a]` the same way; both allocate nothing.
#[derive(Debug, Clone)]
pub(crate) struct TabularCore {
    pub(crate) table: TransitionTable,
    pub(crate) isd: Vec<f64>,
    obs_space: Space,
    act_space: Space,
    rng: Option<EnvRng>,
    pub(crate) state: usize,
    status: Status,
}

impl TabularCore {
    /// A core for `table`, starting from `isd` (which must have `table.num_states()` entries summing to 1).
    pub(crate) fn new(table: TransitionTable, isd: Vec<f64>) -> Result<Self> {
        let n = table.num_states();
        check_initial_distribution(&isd, n)?;
        Ok(TabularCore {
            obs_space: Space::Discrete(n),
            act_space: Space::Discrete(table.num_actions()),
            table,
            isd,
            rng: None,
            state: 0,
            status: Status::NeverReset,
        })
    }

    pub(crate) fn observation_space(&self) -> &Space {
        &self.obs_space
    }

    pub(crate) fn action_space(&self) -> &Space {
        &self.act_space
    }

    /// The generator, seeded from OS entropy on first use (Gymnasium's behaviour for an unseeded env).
    pub(crate) fn rng(&mut self) -> &mut EnvRng {
        self.rng.get_or_insert_with(from_entropy)
    }

    /// Reseeds when `seed` is given, then samples the initial state.
    pub(crate) fn reset(&mut self, seed: Option<u64>) -> usize {
        if let Some(s) = seed {
            self.rng = Some(seeded(s));
        }
        let rng = self.rng.get_or_insert_with(from_entropy);
        self.state = sample_categorical(&self.isd, rng);
        self.status = Status::Running;
        self.state
    }

    /// Samples one transition from the current state and moves to its next state.
    pub(crate) fn step(&mut self, action: usize) -> Result<Outcome> {
        match self.status {
            Status::NeverReset => return Err(EnvError::NeedsReset("before the first reset")),
            Status::Done => return Err(EnvError::NeedsReset("after the episode terminated")),
            Status::Running => {}
        }
        check_discrete(action, &self.act_space)?;
        let rng = self.rng.get_or_insert_with(from_entropy);
        let s = self.state;
        let o = *self
            .table
            .sample(s, action, rng)
            .ok_or_else(|| EnvError::Unsupported(format!("the model has no outcome for state {s}, action {action}")))?;
        self.state = o.next_state;
        if o.terminal {
            self.status = Status::Done;
        }
        Ok(o)
    }

    /// Puts the env in state `s` mid-episode (Gymnasium's `env.unwrapped.s = s`).
    pub(crate) fn set_state(&mut self, s: usize) -> Result<()> {
        let n = self.table.num_states();
        if s >= n {
            return Err(EnvError::Unsupported(format!("state {s} is out of range: states are 0..{n}")));
        }
        self.state = s;
        self.status = Status::Running;
        Ok(())
    }

    /// `P[s][a]`, or an empty slice when `s` or `a` is out of range.
    pub(crate) fn outcomes(&self, s: usize, a: usize) -> &[Outcome] {
        self.table.get(s, a)
    }
}

/// Implements `Mdp`, and the inherent `state` / `set_state`, for a struct with a `core: TabularCore` field (and
/// private `grid_shape_impl` / `state_label_impl` methods).
macro_rules! tabular_mdp {
    ($ty:ty) => {
        impl $ty {
            /// The current state.
            pub fn state(&self) -> usize {
                self.core.state
            }

            /// Puts the env in state `s` mid-episode (Gymnasium's `env.unwrapped.s = s`); errors when `s` is not
            /// a state.
            pub fn set_state(&mut self, s: usize) -> $crate::error::Result<()> {
                self.core.set_state(s)
            }
        }

        impl $crate::mdp::Mdp for $ty {
            fn num_states(&self) -> usize {
                self.core.table.num_states()
            }
            fn num_actions(&self) -> usize {
                self.core.table.num_actions()
            }
            fn outcomes(&self, s: usize, a: usize) -> &[$crate::mdp::Outcome] {
                self.core.outcomes(s, a)
            }
            fn initial_distribution(&self) -> &[f64] {
                &self.core.isd
            }
            fn grid_shape(&self) -> Option<(usize, usize)> {
                self.grid_shape_impl()
            }
            fn state_label(&self, s: usize) -> Option<char> {
                self.state_label_impl(s)
            }
        }
    };
}
pub(crate) use tabular_mdp;

/// Implements `Env` for a struct with a `core: TabularCore` field whose steps carry only `info.prob` (Gymnasium's
/// `{"prob": p}`; the reset info is `{"prob": 1}`).
macro_rules! tabular_env {
    ($ty:ty) => {
        impl $crate::env::Env for $ty {
            type Obs = usize;
            type Action = usize;
            fn observation_space(&self) -> &$crate::space::Space {
                self.core.observation_space()
            }
            fn action_space(&self) -> &$crate::space::Space {
                self.core.action_space()
            }
            fn reset(&mut self, seed: Option<u64>) -> $crate::error::Result<(usize, $crate::env::Info)> {
                let s = self.core.reset(seed);
                Ok((s, $crate::env::Info { prob: Some(1.0), ..$crate::env::Info::default() }))
            }
            fn step(&mut self, action: usize) -> $crate::error::Result<$crate::env::Step<usize>> {
                let o = self.core.step(action)?;
                Ok($crate::env::Step {
                    obs: o.next_state,
                    reward: o.reward,
                    terminated: o.terminal,
                    truncated: false,
                    info: $crate::env::Info { prob: Some(o.prob), ..$crate::env::Info::default() },
                })
            }
        }
    };
}
pub(crate) use tabular_env;

const FROZEN_LAKE_OPTIONS: &[OptionDoc] = &[
    OptionDoc {
        key: "desc",
        default: "(none)",
        help: "custom map rows, e.g. SFFF,FHFH,FFFH,HFFG (S start, F frozen, H hole, G goal); overrides map_name",
    },
    OptionDoc {
        key: "map_name",
        default: "4x4 (8x8 for FrozenLake8x8-v1)",
        help: "4x4, 8x8, or random (generate_random_map, Gymnasium's map_name=None)",
    },
    OptionDoc { key: "map_size", default: "8", help: "side of a random map (implies map_name=random)" },
    OptionDoc {
        key: "map_p",
        default: "0.8",
        help: "probability that a random map's tile is frozen (implies map_name=random)",
    },
    OptionDoc {
        key: "map_seed",
        default: "(entropy)",
        help: "seed of the random map (implies map_name=random; Bellman's RNG, not numpy's)",
    },
    OptionDoc {
        key: "is_slippery",
        default: "true",
        help: "move in the intended direction with success_rate, else slip perpendicular",
    },
    OptionDoc {
        key: "success_rate",
        default: "0.3333333333333333",
        help: "probability of the intended move when slippery, in [0, 1]",
    },
    OptionDoc { key: "reward_schedule", default: "1,0,0", help: "rewards for reaching goal, hole, frozen tile" },
];

const CLIFF_OPTIONS: &[OptionDoc] = &[OptionDoc {
    key: "is_slippery",
    default: "false (true for CliffWalkingSlippery-v1)",
    help: "1/3 intended move, 1/3 each perpendicular",
}];

const TAXI_OPTIONS: &[OptionDoc] = &[
    OptionDoc {
        key: "is_rainy",
        default: "false",
        help: "moves succeed with rainy_probability, else drift to either side",
    },
    OptionDoc {
        key: "rainy_probability",
        default: "0.8",
        help: "probability of the intended move when rainy, in [0, 1]",
    },
    OptionDoc {
        key: "fickle_passenger",
        default: "false",
        help: "the passenger may change destination once after pickup",
    },
    OptionDoc {
        key: "fickle_probability",
        default: "0.3",
        help: "probability that the passenger is fickle in an episode, in [0, 1]",
    },
];

fn frozen_lake(id: &'static str, base: fn() -> FrozenLakeConfig, o: &crate::Options) -> Result<FrozenLake> {
    FrozenLake::new(FrozenLakeConfig::from_options(id, o, base())?)
}

fn cliff(id: &'static str, slippery: bool, o: &crate::Options) -> Result<CliffWalking> {
    CliffWalking::new(CliffWalkingConfig::from_options(id, o, CliffWalkingConfig { is_slippery: slippery })?)
}

fn taxi(o: &crate::Options) -> Result<Taxi> {
    Taxi::new(TaxiConfig::from_options("Taxi-v4", o, TaxiConfig::default())?)
}

pub(crate) fn specs() -> Vec<EnvSpec> {
    // Ids, time limits and reward thresholds as registered in gymnasium/envs/__init__.py (1.4.0).
    vec![
        EnvSpec {
            id: "FrozenLake-v1",
            max_episode_steps: Some(100),
            reward_threshold: Some(0.70), // "optimum = 0.74"
            options: FROZEN_LAKE_OPTIONS,
            make: |o, l| Ok(boxed(frozen_lake("FrozenLake-v1", FrozenLakeConfig::default, o)?, l)),
            make_tabular: Some(|o, l| {
                Ok(boxed_tabular(frozen_lake("FrozenLake-v1", FrozenLakeConfig::default, o)?, l))
            }),
        },
        EnvSpec {
            id: "FrozenLake8x8-v1",
            max_episode_steps: Some(200),
            reward_threshold: Some(0.85), // "optimum = 0.91"
            options: FROZEN_LAKE_OPTIONS,
            make: |o, l| Ok(boxed(frozen_lake("FrozenLake8x8-v1", FrozenLakeConfig::eight_by_eight, o)?, l)),
            make_tabular: Some(|o, l| {
                Ok(boxed_tabular(frozen_lake("FrozenLake8x8-v1", FrozenLakeConfig::eight_by_eight, o)?, l))
            }),
        },
        EnvSpec {
            id: "CliffWalking-v1",
            max_episode_steps: None,
            reward_threshold: None,
            options: CLIFF_OPTIONS,
            make: |o, l| Ok(boxed(cliff("CliffWalking-v1", false, o)?, l)),
            make_tabular: Some(|o, l| Ok(boxed_tabular(cliff("CliffWalking-v1", false, o)?, l))),
        },
        EnvSpec {
            id: "CliffWalkingSlippery-v1",
            max_episode_steps: None,
            reward_threshold: None,
            options: CLIFF_OPTIONS,
            make: |o, l| Ok(boxed(cliff("CliffWalkingSlippery-v1", true, o)?, l)),
            make_tabular: Some(|o, l| Ok(boxed_tabular(cliff("CliffWalkingSlippery-v1", true, o)?, l))),
        },
        EnvSpec {
            id: "Taxi-v4",
            max_episode_steps: Some(200),
            reward_threshold: Some(8.0), // "optimum = 8.46"
            options: TAXI_OPTIONS,
            make: |o, l| Ok(boxed(taxi(o)?, l)),
            make_tabular: Some(|o, l| Ok(boxed_tabular(taxi(o)?, l))),
        },
    ]
}

/// Reads a probability option in `[0, 1]`.
pub(crate) fn get_probability(env: &str, o: &crate::Options, key: &str) -> Result<Option<f64>> {
    match o.get_f64(env, key)? {
        Some(p) if !(0.0..=1.0).contains(&p) => Err(EnvError::BadOption {
            env: env.into(),
            key: key.into(),
            value: p.to_string(),
            reason: "expected a probability in [0, 1]".into(),
        }),
        other => Ok(other),
    }
}

/// Checks a probability field of a typed config (`env` names the env in the error).
pub(crate) fn check_probability(env: &str, name: &str, p: f64) -> Result<()> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(EnvError::BadOption {
            env: env.into(),
            key: name.into(),
            value: p.to_string(),
            reason: "expected a probability in [0, 1]".into(),
        })
    }
}
