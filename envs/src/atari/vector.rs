//! [`AtariVecEnv`]: N Atari games stepped as one by T threads (the calling thread and T - 1 workers; one ALE per
//! env, each env owned by one thread), writing observations into one `u8` batch buffer.
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use super::env::{AtariConfig, AtariEnv};
use crate::env::{Info, StepOutcome};
use crate::error::{EnvError, Result};
use crate::space::Space;

/// Raw views of the batch buffers, handed to the workers for one command. Each worker touches only the rows
/// of its own envs, and the caller blocks until every worker has answered, so the borrows never overlap.
#[derive(Clone, Copy)]
struct Batch {
    obs: *mut u8,
    obs_len: usize,
    actions: *const usize,
    rewards: *mut f64,
    terminated: *mut bool,
    truncated: *mut bool,
    infos: *mut Info,
    autoreset: *mut bool,
}

// SAFETY: see `Batch`: disjoint rows per worker, and the owner waits for all workers before touching them.
unsafe impl Send for Batch {}

enum Cmd {
    Reset(Batch, Option<u64>),
    Step(Batch),
}

struct Worker {
    tx: Option<SyncSender<Cmd>>,
    rx: Receiver<Result<()>>,
    handle: Option<JoinHandle<()>>,
}

/// Runs one command on `envs` (rows `start..start + envs.len()` of the batch).
fn exec(envs: &mut [AtariEnv], start: usize, cmd: &Cmd) -> Result<()> {
    match *cmd {
        Cmd::Reset(b, seed) => envs.iter_mut().enumerate().try_for_each(|(k, env)| {
            let i = start + k;
            // SAFETY: row i belongs to this caller (see Batch).
            unsafe {
                let row = std::slice::from_raw_parts_mut(b.obs.add(i * b.obs_len), b.obs_len);
                let info = env.reset_into(seed.map(|s| s.wrapping_add(i as u64)), row)?;
                *b.infos.add(i) = info;
                *b.rewards.add(i) = 0.0;
                *b.terminated.add(i) = false;
                *b.truncated.add(i) = false;
                *b.autoreset.add(i) = false;
            }
            Ok(())
        }),
        Cmd::Step(b) => envs.iter_mut().enumerate().try_for_each(|(k, env)| {
            let i = start + k;
            // SAFETY: row i belongs to this caller (see Batch).
            unsafe {
                let row = std::slice::from_raw_parts_mut(b.obs.add(i * b.obs_len), b.obs_len);
                let out = if *b.autoreset.add(i) {
                    let info = env.reset_into(None, row)?;
                    StepOutcome { reward: 0.0, terminated: false, truncated: false, info }
                } else {
                    env.step_into(*b.actions.add(i), row)?
                };
                *b.rewards.add(i) = out.reward;
                *b.terminated.add(i) = out.terminated;
                *b.truncated.add(i) = out.truncated;
                *b.infos.add(i) = out.info;
                *b.autoreset.add(i) = out.terminated || out.truncated;
            }
            Ok(())
        }),
    }
}

fn run_worker(mut envs: Vec<AtariEnv>, start: usize, rx: Receiver<Cmd>, tx: SyncSender<Result<()>>) {
    for cmd in rx {
        if tx.send(exec(&mut envs, start, &cmd)).is_err() {
            return;
        }
    }
}

/// The arrays of one vector step (borrowed from the [`AtariVecEnv`]).
#[derive(Debug, Clone, Copy)]
pub struct AtariVecStep<'a> {
    /// Observations, `num_envs` rows of `obs_len` bytes.
    pub obs: &'a [u8],
    /// Rewards.
    pub rewards: &'a [f64],
    /// `terminated` flags.
    pub terminated: &'a [bool],
    /// `truncated` flags.
    pub truncated: &'a [bool],
    /// Infos (lives, episode frame number, and `episode`: the whole game's raw score, length and time on the
    /// step that ends a game, see [`AtariEnv`]).
    pub infos: &'a [Info],
}

/// N Atari envs stepped in parallel on worker threads, observations in one batch buffer (`[num_envs, ...obs]`).
///
/// Autoreset is Gymnasium's `NextStep` mode (see [`crate::vector`]): the step that ends an episode returns its
/// final observation with the flag set; on the next `step` that env ignores its action and resets (reward 0,
/// flags false; [`AtariVecEnv::autoreset_mask`] before the step says which rows that will be). That reset is the
/// env's own unseeded reset, so with `episodic_life` an episode ended by a lost life continues the same game
/// (SB3's `EpisodicLifeEnv` under a vector env); its info carries `episode` only if the game ended inside the
/// reset. After construction `step` allocates nothing. `reset(Some(seed))` seeds env `i` with `seed + i` and
/// restarts every game.
///
/// ```no_run
/// use bellman_envs::atari::{AtariConfig, AtariVecEnv, Preprocessing};
/// let cfg = AtariConfig::preprocessed("Pong", Preprocessing::nature());
/// let mut v = AtariVecEnv::new(&cfg, 8, 2).unwrap();
/// v.reset(Some(0)).unwrap();
/// let s = v.step(&[0; 8]).unwrap();
/// assert_eq!(s.obs.len(), 8 * 4 * 84 * 84);
/// ```
pub struct AtariVecEnv {
    num_envs: usize,
    obs_len: usize,
    obs_shape: Vec<usize>,
    obs_space: Space,
    act_space: Space,
    obs: Vec<u8>,
    actions: Vec<usize>,
    rewards: Vec<f64>,
    terminated: Vec<bool>,
    truncated: Vec<bool>,
    infos: Vec<Info>,
    autoreset: Vec<bool>,
    /// The envs stepped on the calling thread (rows `0..local.len()`).
    local: Vec<AtariEnv>,
    workers: Vec<Worker>,
}

impl std::fmt::Debug for AtariVecEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtariVecEnv")
            .field("num_envs", &self.num_envs)
            .field("threads", &(self.workers.len() + 1))
            .field("obs_shape", &self.obs_shape)
            .finish()
    }
}

impl AtariVecEnv {
    /// `num_envs` copies of `cfg` stepped by `num_threads` threads: the calling thread steps the first share
    /// itself and `num_threads - 1` worker threads the others (envs split as evenly as possible; 1 thread: no
    /// worker at all).
    pub fn new(cfg: &AtariConfig, num_envs: usize, num_threads: usize) -> Result<Self> {
        if num_envs == 0 {
            return Err(EnvError::Unsupported("an Atari vector env needs num_envs >= 1 (got 0)".into()));
        }
        if num_threads == 0 || num_threads > num_envs {
            return Err(EnvError::Unsupported(format!(
                "num_threads must be in 1..={num_envs} (num_envs), got {num_threads}"
            )));
        }
        let rom = super::rom_path(&cfg.game).map_err(|e| EnvError::Backend(e.0))?;
        let mut envs =
            (0..num_envs).map(|_| AtariEnv::with_rom(cfg.clone(), rom.clone())).collect::<Result<Vec<_>>>()?;
        let obs_len = envs[0].obs_len();
        let obs_shape = envs[0].obs_shape().to_vec();
        let obs_space = crate::env::Env::observation_space(&envs[0]).clone();
        let act_space = crate::env::Env::action_space(&envs[0]).clone();
        // The calling thread steps the first share itself (one hand-off less per step), workers the others.
        let share = |w: usize| num_envs / num_threads + usize::from(w < num_envs % num_threads);
        let local: Vec<AtariEnv> = envs.drain(..share(0)).collect();
        let mut workers = Vec::with_capacity(num_threads - 1);
        let mut start = local.len();
        for w in 1..num_threads {
            let n = share(w);
            let chunk: Vec<AtariEnv> = envs.drain(..n).collect();
            let (ctx, crx) = sync_channel::<Cmd>(1);
            let (rtx, rrx) = sync_channel::<Result<()>>(1);
            let s = start;
            let handle = std::thread::Builder::new()
                .name(format!("bellman-atari-{w}"))
                .spawn(move || run_worker(chunk, s, crx, rtx))
                .map_err(|e| EnvError::Backend(format!("cannot spawn an Atari worker thread: {e}")))?;
            workers.push(Worker { tx: Some(ctx), rx: rrx, handle: Some(handle) });
            start += n;
        }
        Ok(AtariVecEnv {
            num_envs,
            obs_len,
            obs_shape,
            obs_space,
            act_space,
            obs: vec![0; num_envs * obs_len],
            actions: vec![0; num_envs],
            rewards: vec![0.0; num_envs],
            terminated: vec![false; num_envs],
            truncated: vec![false; num_envs],
            infos: vec![Info::default(); num_envs],
            autoreset: vec![false; num_envs],
            local,
            workers,
        })
    }

    /// Number of envs.
    pub fn num_envs(&self) -> usize {
        self.num_envs
    }

    /// Number of threads stepping the envs (the calling thread and the workers).
    pub fn num_threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Bytes of one observation.
    pub fn obs_len(&self) -> usize {
        self.obs_len
    }

    /// Shape of one observation.
    pub fn obs_shape(&self) -> &[usize] {
        &self.obs_shape
    }

    /// The space of one env's observations.
    pub fn single_observation_space(&self) -> &Space {
        &self.obs_space
    }

    /// The space of one env's actions.
    pub fn single_action_space(&self) -> &Space {
        &self.act_space
    }

    /// The observation batch.
    pub fn obs(&self) -> &[u8] {
        &self.obs
    }

    /// Which envs will reset (ignoring their action) at the next `step`.
    pub fn autoreset_mask(&self) -> &[bool] {
        &self.autoreset
    }

    fn batch(&mut self) -> Batch {
        Batch {
            obs: self.obs.as_mut_ptr(),
            obs_len: self.obs_len,
            actions: self.actions.as_ptr(),
            rewards: self.rewards.as_mut_ptr(),
            terminated: self.terminated.as_mut_ptr(),
            truncated: self.truncated.as_mut_ptr(),
            infos: self.infos.as_mut_ptr(),
            autoreset: self.autoreset.as_mut_ptr(),
        }
    }

    fn run(&mut self, make: impl Fn(Batch) -> Cmd) -> Result<()> {
        let b = self.batch();
        let mut sent = 0;
        let mut first_err = None;
        for w in &self.workers {
            let tx = w.tx.as_ref().expect("worker alive");
            if tx.send(make(b)).is_err() {
                first_err.get_or_insert(EnvError::Backend("an Atari worker thread has stopped".into()));
                break;
            }
            sent += 1;
        }
        if let Err(e) = exec(&mut self.local, 0, &make(b)) {
            first_err.get_or_insert(e);
        }
        // Wait for every worker that got the command before the buffers may be touched again.
        for w in &self.workers[..sent] {
            match w.rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Err(_) => {
                    first_err.get_or_insert(EnvError::Backend("an Atari worker thread panicked".into()));
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Resets every env (env `i` with `seed + i` when seeded) and returns the observation batch.
    pub fn reset(&mut self, seed: Option<u64>) -> Result<&[u8]> {
        self.run(|b| Cmd::Reset(b, seed))?;
        Ok(&self.obs)
    }

    /// Steps every env with its action index (envs flagged in [`AtariVecEnv::autoreset_mask`] reset instead).
    pub fn step(&mut self, actions: &[usize]) -> Result<AtariVecStep<'_>> {
        if actions.len() != self.num_envs {
            return Err(EnvError::InvalidAction {
                action: format!("{} actions", actions.len()),
                space: format!("{} envs x {}", self.num_envs, self.act_space),
                reason: format!("expected one action per env ({})", self.num_envs),
            });
        }
        let n = self.act_space.n().unwrap_or(0);
        if let Some((i, a)) = actions.iter().enumerate().find(|(_, a)| **a >= n) {
            return Err(EnvError::InvalidAction {
                action: a.to_string(),
                space: self.act_space.to_string(),
                reason: format!("action of env {i} must be in 0..{n}"),
            });
        }
        self.actions.copy_from_slice(actions);
        self.run(Cmd::Step)?;
        Ok(AtariVecStep {
            obs: &self.obs,
            rewards: &self.rewards,
            terminated: &self.terminated,
            truncated: &self.truncated,
            infos: &self.infos,
        })
    }
}

impl Drop for AtariVecEnv {
    fn drop(&mut self) {
        for w in &mut self.workers {
            w.tx.take(); // closing the channel ends the worker's loop
        }
        for w in &mut self.workers {
            if let Some(h) = w.handle.take() {
                let _ = h.join();
            }
        }
    }
}
