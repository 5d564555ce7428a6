//! The learner side of Ape-X DQN, shared by flat (`f32` vector) and pixel (`u8` frame stack) observations: the
//! online and target networks on the learner's device, the optimiser, a uniform or prioritised replay buffer over
//! any [`Storage`], and the update (`crate::dqn::learn::td_update`, the single-process trainers' own).
//!
//! The actor-specific parts (how a received transition is turned into a replay row, which weights are published)
//! live in the payload's [`Learner`](super::Learner) impl, which wraps a [`LearnerCore`].
use std::path::Path;

use bellman_replay::{Batch, Element, PrioritizedReplayBuffer, ReplayBuffer, Storage, Transition};
use candle_core::{DType, Device, Tensor, WithDType};
use rand::SeedableRng;
use rand_pcg::Pcg64;

use crate::dqn::DqnConfig;
use crate::dqn::learn::{UpdateOut, UpdateScratch, td_update};
use crate::dqn::network::{NetSpec, QNetwork, terr};
use crate::dqn::optim::Optim;
use crate::error::{AgentError, Result};
use crate::trainer::{Checkpoint, TrainMetrics, pcg_from_json, pcg_to_json};

// Stream constants that split one seed into independent generators (arbitrary odd numbers; the init stream is
// DQN's, so that the initial weights match the single-process run's).
pub(crate) const INIT_STREAM: u64 = 0x9E37_79B9_7F4A_7C15;
pub(crate) const ACTOR_STREAM: u64 = 0xA076_1D64_78BD_642F;
pub(crate) const REPLAY_STREAM: u64 = 0x8CB9_2BA7_2F3D_8DD7;

/// What an Ape-X resume resets in an actor that has not started yet: its env seed, its exploration generator and
/// its own step count (the `schedule` epsilon continues from it).
pub(crate) trait ReseedActor {
    fn reseed(&mut self, env_seed: u64, rng: Pcg64, steps: u64);
}

/// The actor side of an Ape-X resume, shared by both Ape-X trainers. The checkpoint's step and episode counters go
/// to a running pool (whose actors keep their envs and generators: reported), or actors not started yet get env
/// seeds derived from the run's seed and step (`derived_env_seed + i`), reseeded generators and their share of the
/// steps (reported). Returns `(steps, episodes, Some(new env seed))`, the seed `None` when nothing was reseeded.
pub(crate) fn resume_actors<W: Send + Sync + 'static, P: super::Payload, A: ReseedActor>(
    meta: &serde_json::Value,
    run_seed: u64,
    pool: Option<&mut super::pool::ActorPool<W, P>>,
    actors: Option<&mut Vec<A>>,
    report: &mut crate::trainer::ResumeReport,
) -> (u64, u64, Option<u64>) {
    let get = |k: &str| meta.get(k).and_then(|v| v.as_u64());
    let (steps, episodes) = (get("steps").unwrap_or(0), get("episodes").unwrap_or(0));
    if let Some(p) = pool {
        p.resume_from(steps, episodes);
        report.not_exact("the actors were already running: they keep their envs and generators");
        return (steps, episodes, None);
    }
    let Some(actors) = actors.filter(|_| steps > 0) else { return (steps, episodes, None) };
    let base = crate::dqn::derived_env_seed(get("seed").unwrap_or(run_seed), steps);
    let n = actors.len() as u64;
    for (i, a) in actors.iter_mut().enumerate() {
        a.reseed(base + i as u64, Pcg64::seed_from_u64((base ^ ACTOR_STREAM).wrapping_add(i as u64)), steps / n);
    }
    report.notes.push(format!("actor envs seeded with {base} + actor index (derived from the seed and step)"));
    (steps, episodes, Some(base))
}

pub(crate) fn replay_err(e: bellman_replay::ReplayError) -> AgentError {
    AgentError::Replay(e.to_string())
}

/// `learner.state_version` in the meta of Ape-X checkpoints that hold the learner's whole state (optimiser,
/// replay generator, metric sums); checkpoints without it restore weights, target and counters only.
pub(crate) const LEARNER_STATE_VERSION: u64 = 1;
/// Prefix of the optimiser's tensors in the train state (`optimizer.<param>.exp_avg`, PyTorch's buffer names).
const OPT_PREFIX: &str = "optimizer.";

/// A uniform or prioritised buffer over storage `S`.
pub(crate) enum Replay<S> {
    Uniform(ReplayBuffer<S>),
    Prioritized(PrioritizedReplayBuffer<S>),
}

impl<S: Storage> Replay<S> {
    pub(crate) fn new(storage: S, cfg: &DqnConfig) -> Result<Self> {
        Ok(if cfg.prioritized {
            Replay::Prioritized(PrioritizedReplayBuffer::new(storage, cfg.per_alpha, cfg.per_eps).map_err(replay_err)?)
        } else {
            Replay::Uniform(ReplayBuffer::from_storage(storage))
        })
    }
    pub(crate) fn len(&self) -> usize {
        match self {
            Replay::Uniform(r) => r.len(),
            Replay::Prioritized(r) => r.len(),
        }
    }
    fn storage(&self) -> &S {
        match self {
            Replay::Uniform(r) => r.storage(),
            Replay::Prioritized(r) => r.storage(),
        }
    }
}

/// Networks, optimiser, replay and running metrics of the learner.
pub(crate) struct LearnerCore<S: Storage> {
    pub(crate) cfg: DqnConfig,
    pub(crate) device: Device,
    pub(crate) online: QNetwork,
    pub(crate) target: QNetwork,
    optim: Optim,
    pub(crate) replay: Replay<S>,
    rng: Pcg64,
    pub(crate) batch: Batch<S::Obs, i64>,
    scratch: UpdateScratch,
    td: Vec<f32>,
    pub(crate) updates: u64,
    target_every: u64,
    loss_sum: f64,
    q_sum: f64,
    since: u64,
}

impl<S> LearnerCore<S>
where
    S: Storage<Act = i64>,
    S::Obs: WithDType + Element,
{
    /// Builds the networks of `spec` on `device` (initial weights from `seed`, as the single-process trainer
    /// draws them) and the replay over `storage`.
    pub(crate) fn new(cfg: &DqnConfig, spec: &NetSpec, storage: S, seed: u64, device: Device) -> Result<Self> {
        let mut init_rng = Pcg64::seed_from_u64(seed ^ INIT_STREAM);
        let online = QNetwork::new(spec, &mut init_rng, &device)?;
        let target = QNetwork::new(spec, &mut init_rng, &device)?;
        target.copy_from(&online)?;
        let optim = cfg.optimizer(online.vars())?;
        // SB3 updates the target every `target_update_interval` env steps while training in phases of
        // `gradient_steps` updates every `train_freq` (vector) steps of `n_envs` env steps: in updates, this many.
        let vector_steps = (cfg.target_update_interval / cfg.n_envs.max(1) as u64).max(1);
        let target_every = vector_steps.div_ceil(cfg.train_freq).max(1) * cfg.gradient_steps as u64;
        Ok(LearnerCore {
            cfg: cfg.clone(),
            device,
            online,
            target,
            optim,
            replay: Replay::new(storage, cfg)?,
            rng: Pcg64::seed_from_u64(seed ^ REPLAY_STREAM),
            batch: Batch::new(),
            scratch: UpdateScratch::default(),
            td: Vec::new(),
            updates: 0,
            target_every,
            loss_sum: 0.0,
            q_sum: 0.0,
            since: 0,
        })
    }

    /// Inserts `t` from stream `stream` (the actor: frame storage matches frames per stream) with the actor's
    /// initial priority `|delta|` (used by a prioritised buffer only); true when older transitions were evicted.
    pub(crate) fn insert(&mut self, stream: usize, t: &Transition<'_, S::Obs, i64>, priority: f32) -> Result<bool> {
        let before = self.replay.len();
        match &mut self.replay {
            Replay::Uniform(r) => r.push_from(stream, t).map_err(replay_err)?,
            Replay::Prioritized(r) => {
                // Raw priority |delta| + eps, as the buffer's push_with_priority expects (Schaul et al. 2016).
                r.push_with_priority(stream, t, priority as f64 + self.cfg.per_eps).map_err(replay_err)?
            }
        };
        Ok(self.replay.len() <= before)
    }

    /// One update on a sampled minibatch (prioritised with `beta` annealed over `env_steps`), new priorities from
    /// its TD errors, and the target update on schedule.
    pub(crate) fn update(&mut self, env_steps: u64) -> Result<()> {
        let bs = self.cfg.batch_size;
        match &self.replay {
            Replay::Uniform(r) => r.sample(bs, &mut self.rng, &mut self.batch).map_err(replay_err)?,
            Replay::Prioritized(r) => {
                let beta = self.cfg.per_beta_at(env_steps);
                r.sample(bs, beta, &mut self.rng, &mut self.batch).map_err(replay_err)?
            }
        }
        let per = matches!(self.replay, Replay::Prioritized(_));
        let vars = self.online.vars();
        // The same TD update as the single-process trainers (crate::dqn::learn).
        let UpdateOut { loss, q_taken, targets } = td_update(
            &self.cfg,
            &self.online,
            &self.target,
            &mut self.optim,
            &vars,
            &self.batch,
            per,
            &mut self.scratch,
            &self.device,
            (env_steps, self.updates),
        )?;
        self.updates += 1;
        let l = loss.to_dtype(DType::F64).and_then(|t| t.to_scalar::<f64>()).map_err(terr)?;
        if !l.is_finite() {
            return Err(AgentError::Diverged(format!("loss is {l} at step {env_steps}")));
        }
        self.loss_sum += l;
        let q_taken = q_taken.detach();
        self.q_sum +=
            q_taken.mean_all().and_then(|t| t.to_dtype(DType::F64)).and_then(|t| t.to_scalar::<f64>()).map_err(terr)?;
        self.since += 1;
        if let Replay::Prioritized(r) = &mut self.replay {
            // Schaul et al. 2016, Algorithm 1 line 12: new priorities from the TD errors of this batch.
            let td = (q_taken - &targets).and_then(|t| t.to_vec1::<f32>()).map_err(terr)?;
            self.td.clear();
            self.td.extend_from_slice(&td);
            r.update_priorities(&self.batch.indices, &self.td).map_err(replay_err)?;
        }
        if self.updates.is_multiple_of(self.target_every) {
            if self.cfg.tau >= 1.0 {
                self.target.copy_from(&self.online)?;
            } else {
                self.target.polyak_from(&self.online, self.cfg.tau)?;
            }
        }
        Ok(())
    }

    /// An Ape-X checkpoint: the online weights, the learner's train state, and `meta` (the run's fields, see
    /// `run::ApexRun::meta`, plus any of the trainer's own) completed with the learner's fields.
    pub(crate) fn checkpoint(&self, mut meta: serde_json::Map<String, serde_json::Value>) -> Result<Checkpoint> {
        let cfg = serde_json::to_value(&self.cfg).map_err(|e| AgentError::Checkpoint(e.to_string()))?;
        let (train_state, learner) = self.export_state()?;
        let spec = self.online.spec();
        for (k, v) in [
            ("algorithm", serde_json::json!("dqn")),
            ("updates", serde_json::json!(self.updates)),
            ("n_actions", serde_json::json!(spec.n_actions)),
            ("obs_shape", serde_json::json!(spec.obs_shape)),
            ("config", cfg),
            ("learner", learner),
            (
                "train_state",
                serde_json::json!(
                    "target network weights (same tensor names) and the learner's optimizer state \
                     (optimizer.<param>.<buffer>, PyTorch's names); the replay buffer is saved separately; the \
                     actors' envs are not saved"
                ),
            ),
        ] {
            meta.insert(k.to_string(), v);
        }
        Ok(Checkpoint {
            weights: self.online.to_safetensors()?,
            train_state: Some(train_state),
            meta: serde_json::Value::Object(meta),
        })
    }

    /// The learner's train state: the target network (its own tensor names) and the optimiser's tensors
    /// (`optimizer.<param>.<buffer>`) as safetensors, and as JSON the optimiser's kind and step, the replay
    /// generator, the metric sums in progress (`f64` bits, exact) and the replay buffer's counts.
    pub(crate) fn export_state(&self) -> Result<(Vec<u8>, serde_json::Value)> {
        let ck = |e: candle_core::Error| AgentError::Checkpoint(e.to_string());
        let mut tensors: Vec<(String, Tensor)> = Vec::new();
        for (n, v) in self.target.named_params() {
            tensors.push((n.clone(), v.as_tensor().to_device(&Device::Cpu).map_err(ck)?));
        }
        let opt = self.optim.export_state(&self.online.param_names(), OPT_PREFIX)?;
        tensors.extend(opt.tensors);
        let bytes = safetensors::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), None)
            .map_err(|e| AgentError::Checkpoint(e.to_string()))?;
        let meta = serde_json::json!({
            "state_version": LEARNER_STATE_VERSION,
            "optimizer": { "kind": opt.kind, "step": opt.step },
            "rng": pcg_to_json(&self.rng)?,
            "loss_sum_bits": self.loss_sum.to_bits(),
            "q_sum_bits": self.q_sum.to_bits(),
            "since": self.since,
            "replay_len": self.replay.len(),
            "replay_pushed": self.replay_pushed(),
        });
        Ok((bytes, meta))
    }

    /// Restores a state written by [`LearnerCore::export_state`] (`train_state` its safetensors, `meta` its JSON).
    /// Bad data is an error naming it; the optimiser is left unchanged when its part is bad.
    pub(crate) fn import_state(&mut self, train_state: &[u8], meta: &serde_json::Value) -> Result<()> {
        let bad = |m: String| AgentError::Checkpoint(m);
        let version = meta.get("state_version").and_then(|v| v.as_u64());
        if version != Some(LEARNER_STATE_VERSION) {
            return Err(bad(format!("learner state version {version:?}: this build reads {LEARNER_STATE_VERSION}")));
        }
        let req = |k: &str| {
            meta.get(k).and_then(|v| v.as_u64()).ok_or_else(|| bad(format!("learner state lacks the integer '{k}'")))
        };
        let (loss_bits, q_bits, since) = (req("loss_sum_bits")?, req("q_sum_bits")?, req("since")?);
        let rng = pcg_from_json(meta.get("rng").unwrap_or(&serde_json::Value::Null))?;
        let opt = meta.get("optimizer").ok_or_else(|| bad("learner state lacks 'optimizer'".into()))?;
        let kind = opt.get("kind").and_then(|k| k.as_str()).unwrap_or_default();
        let step = opt.get("step").and_then(|k| k.as_u64()).ok_or_else(|| bad(format!("optimizer state {opt}")))?;
        let map = candle_core::safetensors::load_buffer(train_state, &Device::Cpu)
            .map_err(|e| bad(format!("cannot read the learner's train state: {e}")))?;
        self.target.load_safetensors(train_state)?;
        let names = self.online.param_names();
        self.optim.import_state(kind, step, &map, &names, OPT_PREFIX)?;
        self.rng = rng;
        (self.loss_sum, self.q_sum, self.since) = (f64::from_bits(loss_bits), f64::from_bits(q_bits), since);
        Ok(())
    }

    /// Transitions ever pushed into the replay buffer: identifies the buffer of one checkpoint.
    pub(crate) fn replay_pushed(&self) -> u64 {
        self.replay.storage().live().end
    }

    /// Bytes the replay buffer occupies in memory.
    pub(crate) fn replay_bytes(&self) -> u64 {
        (match &self.replay {
            Replay::Uniform(r) => r.memory_bytes(),
            Replay::Prioritized(r) => r.memory_bytes(),
        }) as u64
    }

    /// Writes the replay buffer to `path` (atomically, `bellman_replay`'s versioned format).
    pub(crate) fn save_replay(&self, path: &Path) -> Result<()> {
        match &self.replay {
            Replay::Uniform(r) => r.save(path),
            Replay::Prioritized(r) => r.save(path),
        }
        .map_err(replay_err)
    }

    /// Loads a buffer written by [`LearnerCore::save_replay`], checking that it fits this config (capacity,
    /// observation shape, action size) and, when `pushed` is given, that it is the one of that checkpoint.
    pub(crate) fn load_replay(&mut self, path: &Path, pushed: Option<u64>) -> Result<()> {
        let want = self.replay.storage();
        let (cap, shape, ad) = (want.capacity(), want.obs_shape().to_vec(), want.action_dim());
        let check = |s: &S| -> Result<()> {
            if (s.capacity(), s.obs_shape(), s.action_dim()) != (cap, shape.as_slice(), ad) {
                return Err(AgentError::Checkpoint(format!(
                    "replay buffer {} holds capacity {}, observations of shape {:?} and actions of {} values; this \
                     run needs buffer_size {cap}, {shape:?} and {ad}",
                    path.display(),
                    s.capacity(),
                    s.obs_shape(),
                    s.action_dim()
                )));
            }
            if let Some(n) = pushed
                && n != s.live().end
            {
                return Err(AgentError::Checkpoint(format!(
                    "replay buffer {} holds the first {} transitions of the run, the checkpoint was taken after \
                     {n}: it belongs to another checkpoint",
                    path.display(),
                    s.live().end
                )));
            }
            Ok(())
        };
        let loaded = match &self.replay {
            Replay::Uniform(_) => {
                let b = ReplayBuffer::<S>::load(path).map_err(replay_err)?;
                check(b.storage())?;
                Replay::Uniform(b)
            }
            Replay::Prioritized(_) => {
                let b = PrioritizedReplayBuffer::<S>::load(path).map_err(replay_err)?;
                check(b.storage())?;
                Replay::Prioritized(b)
            }
        };
        self.replay = loaded;
        Ok(())
    }

    /// Restores the learner from an Ape-X checkpoint for `--resume`: online weights, then (when the checkpoint
    /// holds a learner state, `meta.learner`) target network, optimiser, replay generator and metric sums, else
    /// the target network alone; the update count; the replay buffer from `replay` when given. Says in `report`
    /// what does not continue as it was.
    pub(crate) fn resume(
        &mut self,
        ckpt: &crate::trainer::Checkpoint,
        replay: Option<&Path>,
        report: &mut crate::trainer::ResumeReport,
    ) -> Result<()> {
        self.online.load_safetensors(&ckpt.weights)?;
        let learner = ckpt.meta.get("learner").filter(|l| !l.is_null());
        match (&ckpt.train_state, learner) {
            (Some(ts), Some(l)) => self.import_state(ts, l)?,
            (ts, _) => {
                match ts {
                    Some(t) => self.target.load_safetensors(t)?,
                    None => self.target.copy_from(&self.online)?,
                }
                report.not_exact(
                    "the checkpoint holds no optimiser or generator state (an older format): the learner's \
                     optimiser restarts from zero moments",
                );
            }
        }
        if let Some(u) = ckpt.meta.get("updates").and_then(|v| v.as_u64()) {
            self.updates = u;
        }
        let saved = learner.and_then(|l| l.get("replay_len")).and_then(|v| v.as_u64());
        match replay {
            Some(p) => {
                let pushed = learner.and_then(|l| l.get("replay_pushed")).and_then(|v| v.as_u64());
                self.load_replay(p, pushed)?;
            }
            None if saved == Some(0) => {}
            None => report.not_exact(
                "the replay buffer was not saved (checkpoint.save_replay): the learner refills it, sampling again \
                 after max(learning_starts, batch_size) new transitions",
            ),
        }
        Ok(())
    }

    /// Mean loss and Q since the last call, and the replay size.
    pub(crate) fn metrics(&mut self, env_steps: u64) -> TrainMetrics {
        let n = self.since;
        let (loss, mean_q) =
            if n > 0 { (Some(self.loss_sum / n as f64), Some(self.q_sum / n as f64)) } else { (None, None) };
        self.loss_sum = 0.0;
        self.q_sum = 0.0;
        self.since = 0;
        TrainMetrics {
            step: env_steps,
            loss,
            mean_q,
            epsilon: None,
            steps_per_sec: None,
            extra: vec![("replay_size".into(), self.replay.len() as f64)],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dqn::network::Arch;
    use bellman_replay::FlatStorage;

    fn core(cfg: &DqnConfig) -> LearnerCore<FlatStorage<f32, i64>> {
        let spec = NetSpec {
            arch: Arch::Mlp,
            obs_shape: vec![3],
            hidden: vec![4],
            activation: cfg.activation,
            dueling: false,
            n_actions: 2,
            init: cfg.init,
        };
        let storage = FlatStorage::new(cfg.buffer_size, &[3], 1).unwrap();
        LearnerCore::new(cfg, &spec, storage, 0, Device::Cpu).unwrap()
    }

    /// The target network is synced as often, in updates, as the single-process trainers sync it in env steps.
    #[test]
    fn target_period_in_updates_matches_the_single_process_schedule() {
        // cartpole-dqn: every 10 env steps, 128 updates per 256 steps -> after every phase of 128 updates.
        let cfg =
            DqnConfig { target_update_interval: 10, train_freq: 256, gradient_steps: 128, ..DqnConfig::default() };
        assert_eq!(core(&cfg).target_every, 128);
        // pong-dqn-fast: every 2000 env steps = 250 vector steps of 8 envs, 2 updates per vector step -> 500.
        let cfg = DqnConfig {
            target_update_interval: 2000,
            n_envs: 8,
            train_freq: 1,
            gradient_steps: 2,
            ..DqnConfig::default()
        };
        assert_eq!(core(&cfg).target_every, 500);
        // SB3's defaults: every 10,000 steps, 1 update per 4 steps -> 2500 updates.
        let cfg =
            DqnConfig { target_update_interval: 10_000, train_freq: 4, gradient_steps: 1, ..DqnConfig::default() };
        assert_eq!(core(&cfg).target_every, 2500);
    }
}
