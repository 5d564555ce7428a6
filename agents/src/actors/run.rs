//! What both Ape-X trainers ([`super::ApexDqnTrainer`] and the pixel one) do the same way: hold their actors until
//! the first `train` starts the pool, run it, count what a resume restores, and write the checkpoint fields they
//! share. Each trainer keeps only what differs: its learner, its weights type and its evaluation.
use serde_json::{Map, Value, json};

use super::learner::{ReseedActor, resume_actors};
use super::pool::{ActorPool, PoolConfig};
use super::{Actor, CounterSnapshot, Learner};
use crate::error::{AgentError, Result};
use crate::trainer::{Reporter, ResumeReport};

/// The actors (before the pool starts), the pool (after), and the counters and seeds of a run.
pub(crate) struct ApexRun<A: Actor> {
    actors: Option<Vec<A>>,
    pool: Option<ActorPool<A::Weights, A::Payload>>,
    restored_steps: u64,
    restored_episodes: u64,
    seed: u64,
    /// Actor `i`'s env is seeded `env_seed + i`: the run's seed, or after a resume a seed derived from it.
    env_seed: u64,
}

impl<A: Actor + ReseedActor> ApexRun<A> {
    /// A run of `actors` (not started) for the run seed `seed`.
    pub(crate) fn new(actors: Vec<A>, seed: u64) -> Self {
        ApexRun { actors: Some(actors), pool: None, restored_steps: 0, restored_episodes: 0, seed, env_seed: seed }
    }

    /// The run's seed.
    pub(crate) fn seed(&self) -> u64 {
        self.seed
    }

    /// The pool, once training started.
    pub(crate) fn pool(&self) -> Option<&ActorPool<A::Weights, A::Payload>> {
        self.pool.as_ref()
    }

    /// The actors, while training has not started (afterwards they live in the pool's threads).
    pub(crate) fn actors_mut(&mut self) -> Option<&mut Vec<A>> {
        self.actors.as_mut()
    }

    /// Takes the actors out (tests drive one by hand).
    #[cfg(test)]
    pub(crate) fn take_actors(&mut self) -> Option<Vec<A>> {
        self.actors.take()
    }

    /// The actors, while training has not started.
    #[cfg(test)]
    pub(crate) fn actors(&self) -> Option<&Vec<A>> {
        self.actors.as_ref()
    }

    /// Number of actor threads.
    pub(crate) fn num_actors(&self) -> usize {
        match (&self.pool, &self.actors) {
            (Some(p), _) => p.num_actors(),
            (None, Some(a)) => a.len(),
            (None, None) => 0,
        }
    }

    /// The protocol counters (zero before training starts).
    pub(crate) fn counters(&self) -> CounterSnapshot {
        self.pool.as_ref().map(|p| p.snapshot()).unwrap_or_default()
    }

    /// Stops the actors and returns the final counters.
    pub(crate) fn shutdown(&mut self) -> Result<CounterSnapshot> {
        match self.pool.as_mut() {
            Some(p) => p.shutdown(),
            None => Ok(CounterSnapshot::default()),
        }
    }

    /// Env steps received so far (or restored).
    pub(crate) fn steps_done(&self) -> u64 {
        self.pool.as_ref().map_or(self.restored_steps, |p| p.env_steps())
    }

    /// Episodes reported so far (or restored).
    pub(crate) fn episodes(&self) -> u64 {
        self.pool.as_ref().map_or(self.restored_episodes, |p| p.episodes())
    }

    /// Runs `learner` until `until` env steps, starting the pool (from the learner's current weights) on the
    /// first call.
    pub(crate) fn train<L>(
        &mut self,
        learner: &mut L,
        pool_cfg: &PoolConfig,
        until: u64,
        reporter: &mut dyn Reporter,
    ) -> Result<()>
    where
        L: Learner<Weights = A::Weights, Payload = A::Payload>,
    {
        if self.pool.is_none() {
            let actors = self.actors.take().ok_or_else(|| {
                AgentError::Config("the actors of this trainer were lost after a failed start".into())
            })?;
            let initial = learner.weights()?;
            let mut pool = ActorPool::spawn(actors, initial, pool_cfg, learner.sample_batch())?;
            pool.resume_from(self.restored_steps, self.restored_episodes);
            self.pool = Some(pool);
        }
        let pool = self.pool.as_mut().expect("just set");
        pool.run(learner, until, reporter)
    }

    /// The checkpoint fields both trainers write: actors, seeds, steps, episodes and the protocol counters.
    pub(crate) fn meta(&self) -> Map<String, Value> {
        let c = self.counters();
        let mut m = Map::new();
        m.insert("actors".into(), json!(self.num_actors()));
        m.insert("seed".into(), json!(self.seed));
        m.insert("env_seed".into(), json!(self.env_seed));
        m.insert("steps".into(), json!(self.steps_done()));
        m.insert("episodes".into(), json!(self.episodes()));
        m.insert(
            "counters".into(),
            json!({"sent": c.sent, "received": c.received, "inserted": c.inserted, "evicted": c.evicted}),
        );
        m
    }

    /// The actor side of a resume, after the learner was restored with weights `w`: a running pool gets `w` and
    /// the checkpoint's counters; actors not started yet are reseeded (see `learner::resume_actors`).
    pub(crate) fn resume(&mut self, meta: &Value, w: A::Weights, report: &mut ResumeReport) {
        if let Some(p) = self.pool.as_mut() {
            p.publish(w);
        }
        let (steps, episodes, seed) = resume_actors(meta, self.seed, self.pool.as_mut(), self.actors.as_mut(), report);
        (self.restored_steps, self.restored_episodes) = (steps, episodes);
        if let Some(seed) = seed {
            self.env_seed = seed;
        }
    }
}

impl<A: Actor> Drop for ApexRun<A> {
    fn drop(&mut self) {
        if let Some(p) = self.pool.as_mut() {
            let _ = p.shutdown();
        }
    }
}
