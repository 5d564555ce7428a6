//! [`ActorPool`]: actor threads, bounded channels, the learner loop, shutdown and faults.
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, TrySendError, bounded, select, unbounded};
use serde::{Deserialize, Serialize};

use super::admission::Admission;
use super::counters::{CounterSnapshot, Counters, thread_cpu_ns};
use super::limiter::{RateLimit, RateLimiter};
use super::weights::WeightsCell;
use super::{Actor, ActorBatch, Learner, Payload, actor_error};
use crate::error::{AgentError, Result};
use crate::trainer::{EpisodeRecord, Reporter};

/// Configuration of an [`ActorPool`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolConfig {
    /// Transitions per message (default 50: Ape-X's local buffer size B, Horgan et al. 2018, appendix F).
    pub send_batch: usize,
    /// Capacity of the actors-to-learner channel in messages (default 16); full means actors block.
    pub channel_capacity: usize,
    /// Learner updates between two weight publications (default 10).
    pub publish_every: u64,
    /// The rate limiter.
    pub rate: RateLimit,
    /// Env steps between two metrics reports (default 1000).
    pub metrics_every: u64,
    /// Milliseconds allowed for all actors to stop at shutdown before it is an error (default 5000).
    pub shutdown_timeout_ms: u64,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            send_batch: 50,
            channel_capacity: 16,
            publish_every: 10,
            rate: RateLimit::default(),
            metrics_every: 1000,
            shutdown_timeout_ms: 5000,
        }
    }
}

impl PoolConfig {
    /// Checks every value for a learner sampling `sample_batch` transitions per update.
    pub fn validate(&self, sample_batch: usize) -> Result<()> {
        let bad = |m: String| Err(AgentError::Config(m));
        if !(1..=1_000_000).contains(&self.send_batch) {
            return bad(format!("send_batch = {}: must be in 1..=1000000", self.send_batch));
        }
        if !(1..=65_536).contains(&self.channel_capacity) {
            return bad(format!("channel_capacity = {}: must be in 1..=65536", self.channel_capacity));
        }
        if self.publish_every == 0 {
            return bad("publish_every = 0: must be >= 1".into());
        }
        if self.metrics_every == 0 {
            return bad("metrics_every = 0: must be >= 1".into());
        }
        if self.shutdown_timeout_ms == 0 {
            return bad("shutdown_timeout_ms = 0: must be >= 1".into());
        }
        self.rate.validate(sample_batch)
    }
}

/// Status messages from actor threads (on their own unbounded channel, so a failure is never stuck behind a full
/// data channel).
#[derive(Debug)]
enum Ctrl {
    Failed { id: usize, cause: String },
    Exited { id: usize },
}

struct ActorShared<W, P> {
    id: usize,
    send_batch: usize,
    cell: Arc<WeightsCell<W>>,
    data: Sender<ActorBatch<P>>,
    recycle: Receiver<ActorBatch<P>>,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    admission: Arc<Admission>,
}

/// The longest the learner blocks on the channels before it looks at the step budget and stop requests again.
const POLL: Duration = Duration::from_millis(20);
/// How long a learner waiting for data polls before it blocks (see `ActorPool::wait_for_data`).
const POLL_BEFORE_BLOCKING: Duration = Duration::from_millis(2);
/// One sleep of a polling learner (Linux adds up to its 50 us timer slack).
const NAP: Duration = Duration::from_micros(50);

fn nanos(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128) as u64
}

fn actor_loop<A: Actor>(actor: &mut A, s: &ActorShared<A::Weights, A::Payload>) -> Result<()> {
    let mut version = None;
    // Per-thread CPU time, read twice per message (never per transition): `cpu_mark` is the end of the previous
    // message's channel work, so every nanosecond of the loop is counted once, as acting, as channel work or as
    // waiting (two more reads, only when the actor has to wait).
    let mut cpu_mark = thread_cpu_ns();
    let mut next = s.recycle.try_recv().ok();
    let claim = s.send_batch as u64;
    while !s.stop.load(Ordering::Acquire) {
        // Room in the rate limiter's band for a whole message before acting (see `super::admission`): a learner
        // that cannot keep up holds the actors here, with the newest weights still to come, instead of letting
        // them collect data that would wait in the channel.
        let mut admit_cpu = 0;
        if !s.admission.try_claim(claim) {
            let t = Instant::now();
            let c0 = thread_cpu_ns();
            let ok = s.admission.claim(claim, &s.stop);
            Counters::add(&s.counters.wait_ns, nanos(t.elapsed()));
            if let (Some(a), Some(d)) = (c0, thread_cpu_ns()) {
                admit_cpu = d.saturating_sub(a);
            }
            if !ok {
                break;
            }
        }
        let t0 = Instant::now();
        if version != Some(s.cell.version()) {
            let (v, w) = s.cell.latest();
            actor.load_weights(&w, v)?;
            version = Some(v);
            Counters::add(&s.counters.weights_ns, nanos(t0.elapsed()));
        }
        let mut b = next.take().unwrap_or_else(|| ActorBatch::new(actor.new_payload()));
        b.reset(s.id, version.unwrap_or(0));
        let t1 = Instant::now();
        while b.len() < s.send_batch && !s.stop.load(Ordering::Relaxed) {
            actor.step(&mut b)?;
            if b.priorities.len() != b.len() {
                return Err(actor_error(
                    s.id,
                    format!("batch holds {} transitions but {} priorities", b.len(), b.priorities.len()),
                ));
            }
        }
        let t2 = Instant::now();
        let cpu_sent = thread_cpu_ns();
        let mut wait_cpu = 0;
        Counters::add(&s.counters.act_ns, nanos(t2 - t1));
        s.admission.settle(claim, b.len() as u64);
        if b.is_empty() && b.env_steps == 0 {
            break;
        }
        let (n, steps) = (b.len() as u64, b.env_steps);
        // Counted before the send so that `sent >= received` holds at every instant.
        Counters::add(&s.counters.sent, n);
        Counters::add(&s.counters.env_steps_sent, steps);
        // A non-blocking send first: its time is the channel's overhead; a full channel is backpressure and the
        // blocking send's time is counted as waiting.
        let disconnected = match s.data.try_send(b) {
            Ok(()) => {
                Counters::add(&s.counters.send_ns, nanos(t2.elapsed()));
                false
            }
            Err(TrySendError::Full(b)) => {
                let t3 = Instant::now();
                Counters::add(&s.counters.send_ns, nanos(t3 - t2));
                let cpu_blocked = thread_cpu_ns();
                let gone = s.data.send(b).is_err();
                Counters::add(&s.counters.wait_ns, nanos(t3.elapsed()));
                // CPU burnt while blocked (crossbeam spins and yields before it parks) is backpressure, not the
                // channel's overhead: counted apart, two more clock reads only on this path.
                if let (Some(a), Some(d)) = (cpu_blocked, thread_cpu_ns()) {
                    wait_cpu = d.saturating_sub(a);
                }
                gone
            }
            // The pool is gone (dropped without shutdown): nobody counts any more.
            Err(TrySendError::Disconnected(_)) => true,
        };
        // The batch for the next message (the learner hands emptied ones back): channel work too.
        next = s.recycle.try_recv().ok();
        let cpu_done = thread_cpu_ns();
        if let (Some(m), Some(a), Some(d)) = (cpu_mark, cpu_sent, cpu_done) {
            Counters::add(&s.counters.send_cpu_ns, d.saturating_sub(a).saturating_sub(wait_cpu));
            // CPU burnt waiting for room in the band (before acting) or on a full channel: backpressure.
            Counters::add(&s.counters.wait_cpu_ns, wait_cpu + admit_cpu);
            Counters::add(&s.counters.loop_cpu_ns, d.saturating_sub(m));
        }
        cpu_mark = cpu_done;
        if disconnected {
            break;
        }
    }
    Ok(())
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = p.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked".into()
    }
}

/// Actor threads plus the learner's end of the protocol.
///
/// Build it with [`ActorPool::spawn`], drive the learner with [`ActorPool::run`] (any number of times, e.g. in the
/// chunks a [`crate::trainer::Trainer`] is trained in) and stop it with [`ActorPool::shutdown`] (dropping the
/// pool does it too). See the [module documentation](super) for an example.
pub struct ActorPool<W, P> {
    cfg: PoolConfig,
    sample_batch: u64,
    n_actors: usize,
    cell: Arc<WeightsCell<W>>,
    data_rx: Receiver<ActorBatch<P>>,
    ctrl_rx: Receiver<Ctrl>,
    /// Per actor: where its emptied batches go back (bounded, so returning one never allocates).
    recycle_tx: Vec<Sender<ActorBatch<P>>>,
    stop: Arc<AtomicBool>,
    handles: Vec<Option<JoinHandle<()>>>,
    counters: Vec<Arc<Counters>>,
    limiter: RateLimiter,
    admission: Arc<Admission>,
    pending: Option<(ActorBatch<P>, usize)>,
    received: u64,
    inserted: u64,
    evicted: u64,
    discarded: u64,
    env_steps_received: u64,
    actor_steps: Vec<u64>,
    updates: u64,
    episodes: u64,
    version: u64,
    /// The weights the last publication replaced, refilled by the next one when no actor holds them.
    spare: Option<Arc<W>>,
    lag_sum: u64,
    lag_n: u64,
    lag_max: u64,
    next_metrics: u64,
    since: (u64, Instant),
    start: Instant,
    failure: Option<(usize, String)>,
    closed: bool,
}

impl<W, P> std::fmt::Debug for ActorPool<W, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActorPool")
            .field("actors", &self.n_actors)
            .field("received", &self.received)
            .field("inserted", &self.inserted)
            .field("updates", &self.updates)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl<W: Send + Sync + 'static, P: Payload> ActorPool<W, P> {
    /// Spawns one thread per actor (named `actor-<i>`), all starting from `initial` weights (version 0), for a
    /// learner sampling `sample_batch` transitions per update.
    pub fn spawn<A>(actors: Vec<A>, initial: W, cfg: &PoolConfig, sample_batch: usize) -> Result<Self>
    where
        A: Actor<Weights = W, Payload = P>,
    {
        cfg.validate(sample_batch)?;
        if actors.is_empty() || actors.len() > 1024 {
            return Err(AgentError::Config(format!("actors = {}: must be in 1..=1024", actors.len())));
        }
        let limiter = RateLimiter::new(cfg.rate, sample_batch)?;
        let admission = Arc::new(Admission::new(&cfg.rate, cfg.send_batch, sample_batch));
        let n_actors = actors.len();
        let cell = Arc::new(WeightsCell::new(initial));
        let (data_tx, data_rx) = bounded(cfg.channel_capacity);
        let (ctrl_tx, ctrl_rx) = unbounded();
        // Each actor gets its own emptied batches back on a bounded channel: a batch is in the data channel, held
        // by the learner, being filled or waiting here, so capacity + 2 never turns one away.
        let (recycle_tx, recycle_rx): (Vec<_>, Vec<_>) =
            (0..n_actors).map(|_| bounded(cfg.channel_capacity + 2)).unzip();
        let mut recycle_rx = recycle_rx.into_iter();
        let stop = Arc::new(AtomicBool::new(false));
        let counters: Vec<Arc<Counters>> = (0..n_actors).map(|_| Arc::new(Counters::default())).collect();
        let mut handles = Vec::with_capacity(n_actors);
        let mut pool_err = None;
        for (id, mut actor) in actors.into_iter().enumerate() {
            let shared = ActorShared {
                id,
                send_batch: cfg.send_batch,
                cell: Arc::clone(&cell),
                data: data_tx.clone(),
                recycle: recycle_rx.next().expect("one recycle channel per actor"),
                stop: Arc::clone(&stop),
                counters: Arc::clone(&counters[id]),
                admission: Arc::clone(&admission),
            };
            let ctrl = ctrl_tx.clone();
            let h = std::thread::Builder::new().name(format!("actor-{id}")).spawn(move || {
                let res = catch_unwind(AssertUnwindSafe(|| actor_loop(&mut actor, &shared)));
                let msg = match res {
                    Ok(Ok(())) => Ctrl::Exited { id },
                    Ok(Err(AgentError::Actor { cause, .. })) => Ctrl::Failed { id, cause },
                    Ok(Err(e)) => Ctrl::Failed { id, cause: e.to_string() },
                    Err(p) => Ctrl::Failed { id, cause: panic_message(p.as_ref()) },
                };
                // Drop the data sender before reporting, so that "all exited" implies "channel disconnected".
                drop(shared);
                let _ = ctrl.send(msg);
            });
            match h {
                Ok(h) => handles.push(Some(h)),
                Err(e) => {
                    pool_err = Some(actor_error(id, format!("could not start its thread: {e}")));
                    break;
                }
            }
        }
        let now = Instant::now();
        let mut pool = ActorPool {
            cfg: cfg.clone(),
            sample_batch: sample_batch as u64,
            n_actors,
            cell,
            data_rx,
            ctrl_rx,
            recycle_tx,
            stop,
            handles,
            counters,
            limiter,
            admission,
            pending: None,
            received: 0,
            inserted: 0,
            evicted: 0,
            discarded: 0,
            env_steps_received: 0,
            actor_steps: vec![0; n_actors],
            updates: 0,
            episodes: 0,
            version: 0,
            spare: None,
            lag_sum: 0,
            lag_n: 0,
            lag_max: 0,
            next_metrics: cfg.metrics_every,
            since: (0, now),
            start: now,
            failure: None,
            closed: false,
        };
        if let Some(e) = pool_err {
            let _ = pool.shutdown();
            return Err(e);
        }
        Ok(pool)
    }

    /// Number of actors.
    pub fn num_actors(&self) -> usize {
        self.n_actors
    }

    /// Env steps of the batches received so far.
    pub fn env_steps(&self) -> u64 {
        self.env_steps_received
    }

    /// Sets the counters a restored run continues from (env steps and episodes).
    pub fn resume_from(&mut self, env_steps: u64, episodes: u64) {
        self.env_steps_received = env_steps;
        self.episodes = episodes;
        self.next_metrics = env_steps + self.cfg.metrics_every;
        self.since = (env_steps, Instant::now());
    }

    /// Episodes reported so far.
    pub fn episodes(&self) -> u64 {
        self.episodes
    }

    /// The rate limiter's state.
    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }

    /// The last published weights version.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Publishes weights now (e.g. after restoring a checkpoint); returns the new version.
    pub fn publish(&mut self, w: W) -> u64 {
        let (v, old) = self.cell.publish_arc(Arc::new(w));
        self.spare = Some(old);
        self.version = v;
        v
    }

    /// Publishes the learner's weights, refilling the weights replaced last time when no actor still holds them
    /// (the common case: actors copy what they load), so that publishing every update allocates nothing.
    fn publish_from<L: Learner<Weights = W, Payload = P>>(&mut self, learner: &mut L) -> Result<()> {
        let w = match self.spare.take() {
            Some(mut a) => match Arc::get_mut(&mut a) {
                Some(w) => {
                    learner.refresh_weights(w)?;
                    a
                }
                None => Arc::new(learner.weights()?),
            },
            None => Arc::new(learner.weights()?),
        };
        let (v, old) = self.cell.publish_arc(w);
        self.spare = Some(old);
        self.version = v;
        Ok(())
    }

    /// The counters now.
    pub fn snapshot(&self) -> CounterSnapshot {
        let c = &self.counters;
        let sum =
            |f: fn(&Counters) -> &std::sync::atomic::AtomicU64| c.iter().map(|c| Counters::get(f(c))).sum::<u64>();
        let secs = |f: fn(&Counters) -> &std::sync::atomic::AtomicU64| sum(f) as f64 * 1e-9;
        CounterSnapshot {
            sent: sum(|c| &c.sent),
            received: self.received,
            inserted: self.inserted,
            evicted: self.evicted,
            discarded: self.discarded,
            pending: self.pending.as_ref().map_or(0, |(b, i)| (b.len() - i) as u64),
            env_steps_sent: sum(|c| &c.env_steps_sent),
            env_steps_received: self.env_steps_received,
            updates: self.updates,
            sampled: self.limiter.samples(),
            version: self.version,
            act_secs: secs(|c| &c.act_ns),
            send_secs: secs(|c| &c.send_ns),
            wait_secs: secs(|c| &c.wait_ns),
            weights_secs: secs(|c| &c.weights_ns),
            send_cpu_secs: secs(|c| &c.send_cpu_ns),
            wait_cpu_secs: secs(|c| &c.wait_cpu_ns),
            actor_cpu_secs: secs(|c| &c.loop_cpu_ns),
        }
    }

    fn fail(&mut self, id: usize, cause: String) -> AgentError {
        if self.failure.is_none() {
            self.failure = Some((id, cause));
        }
        let _ = self.shutdown();
        let (id, cause) = self.failure.clone().unwrap_or((id, String::new()));
        actor_error(id, cause)
    }

    fn on_ctrl(&mut self, c: Ctrl) -> Result<()> {
        match c {
            Ctrl::Failed { id, cause } => Err(self.fail(id, cause)),
            Ctrl::Exited { id } => Err(self.fail(id, "stopped before the pool was shut down".into())),
        }
    }

    fn check_ctrl(&mut self) -> Result<()> {
        if let Some((id, cause)) = &self.failure {
            return Err(actor_error(*id, cause.clone()));
        }
        if self.closed {
            return Err(AgentError::Config("the actor pool was shut down; build a new one".into()));
        }
        match self.ctrl_rx.try_recv() {
            Ok(c) => self.on_ctrl(c),
            Err(_) => Ok(()),
        }
    }

    fn accept(&mut self, b: ActorBatch<P>, reporter: &mut dyn Reporter) {
        self.received += b.len() as u64;
        self.env_steps_received += b.env_steps;
        if let Some(s) = self.actor_steps.get_mut(b.actor) {
            *s += b.env_steps;
        }
        let lag = self.version.saturating_sub(b.version);
        self.lag_sum += lag;
        self.lag_n += 1;
        self.lag_max = self.lag_max.max(lag);
        let wall = self.start.elapsed().as_secs_f64();
        for e in &b.episodes {
            reporter.episode(&EpisodeRecord {
                step: self.env_steps_received,
                episode: self.episodes,
                ret: e.ret,
                len: e.len,
                wall_time: wall,
                actor: b.actor,
            });
            self.episodes += 1;
        }
        reporter.progress(self.env_steps_received);
        self.pending = Some((b, 0));
    }

    /// Inserts pending transitions while the limiter allows; true when it inserted any.
    fn insert_pending<L: Learner<Weights = W, Payload = P>>(&mut self, learner: &mut L) -> Result<bool> {
        let Some((b, mut i)) = self.pending.take() else { return Ok(false) };
        let start = i;
        // One limiter check for the whole batch, then the inserts.
        let end = i + self.limiter.insert_allowance((b.len() - i) as u64) as usize;
        while i < end {
            match learner.insert(&b, i) {
                Ok(evicted) => {
                    self.evicted += evicted as u64;
                    i += 1;
                }
                Err(e) => {
                    self.account_inserts(i - start);
                    self.pending = Some((b, i));
                    return Err(e);
                }
            }
        }
        self.account_inserts(i - start);
        if i < b.len() {
            self.pending = Some((b, i));
        } else {
            // Hand the emptied batch back to the actors (ignored when they are all gone).
            if let Some(tx) = self.recycle_tx.get(b.actor) {
                let _ = tx.try_send(b);
            }
        }
        Ok(i > start)
    }

    fn account_inserts(&mut self, n: usize) {
        self.inserted += n as u64;
        self.limiter.inserted(n as u64);
    }

    fn report<L: Learner<Weights = W, Payload = P>>(
        &mut self,
        learner: &mut L,
        reporter: &mut dyn Reporter,
    ) -> Result<()> {
        let step = self.env_steps_received;
        let mut m = learner.metrics(step)?;
        m.step = step;
        let now = Instant::now();
        let dt = now.duration_since(self.since.1).as_secs_f64();
        if dt > 0.0 {
            m.steps_per_sec = Some((step - self.since.0) as f64 / dt);
        }
        self.since = (step, now);
        let c = self.snapshot();
        let lag_mean = if self.lag_n > 0 { self.lag_sum as f64 / self.lag_n as f64 } else { 0.0 };
        let ratio = if c.inserted > 0 { c.sampled as f64 / c.inserted as f64 } else { 0.0 };
        let mut extra = vec![
            ("actors".to_string(), self.n_actors as f64),
            ("sent".into(), c.sent as f64),
            ("received".into(), c.received as f64),
            ("inserted".into(), c.inserted as f64),
            ("evicted".into(), c.evicted as f64),
            ("discarded".into(), c.discarded as f64),
            ("pending".into(), c.pending as f64),
            ("updates".into(), c.updates as f64),
            ("weights_version".into(), c.version as f64),
            ("policy_lag_mean".into(), lag_mean),
            ("policy_lag_max".into(), self.lag_max as f64),
            ("samples_per_insert".into(), ratio),
            ("actor_send_fraction".into(), c.send_fraction()),
            ("actor_wait_fraction".into(), c.wait_fraction()),
            ("actor_send_cpu_fraction".into(), c.send_cpu_fraction()),
        ];
        extra.extend(self.actor_steps.iter().enumerate().map(|(i, s)| (format!("actor{i}_steps"), *s as f64)));
        // Keep the learner's own extras after the pool's, skipping names the pool already reports.
        let own = std::mem::take(&mut m.extra);
        for (k, v) in own {
            if !extra.iter().any(|(e, _)| *e == k) {
                extra.push((k, v));
            }
        }
        m.extra = extra;
        self.lag_sum = 0;
        self.lag_n = 0;
        self.lag_max = 0;
        reporter.metrics(&m);
        Ok(())
    }

    /// Runs the learner until the received batches hold `until` env steps, the reporter asks to stop, or an actor
    /// fails (then every actor is stopped and the error names the failing one).
    ///
    /// Each turn inserts received transitions as the rate limiter allows (the rest waits, and the full channel
    /// blocks the actors), runs one update when the limiter allows a sample, publishes weights every
    /// `publish_every` updates, and reports episodes (with the actor's id) and metrics (with the counters and
    /// policy lag in `extra`). When neither side can move it waits on the channels (an actor failure wakes it).
    pub fn run<L>(&mut self, learner: &mut L, until: u64, reporter: &mut dyn Reporter) -> Result<()>
    where
        L: Learner<Weights = W, Payload = P>,
    {
        if learner.sample_batch() as u64 != self.sample_batch {
            return Err(AgentError::Config(format!(
                "the learner samples {} transitions per update but the pool was built for {}",
                learner.sample_batch(),
                self.sample_batch
            )));
        }
        loop {
            self.check_ctrl()?;
            if self.env_steps_received >= until || reporter.stop_requested() {
                return Ok(());
            }
            let mut progressed = self.insert_pending(learner)?;
            let want_data = self.pending.is_none() && self.limiter.can_insert(1);
            if want_data {
                match self.data_rx.try_recv() {
                    Ok(b) => {
                        self.accept(b, reporter);
                        progressed = true;
                    }
                    Err(TryRecvError::Empty) => {}
                    Err(TryRecvError::Disconnected) => return Err(self.disconnected()),
                }
            }
            if self.limiter.can_sample(self.sample_batch) {
                learner.update(self.env_steps_received)?;
                self.limiter.sampled(self.sample_batch);
                self.admission.set_sampled(self.limiter.samples());
                self.updates += 1;
                if self.updates.is_multiple_of(self.cfg.publish_every) {
                    self.publish_from(learner)?;
                }
                progressed = true;
            }
            if self.env_steps_received >= self.next_metrics {
                self.next_metrics = self.env_steps_received + self.cfg.metrics_every;
                self.report(learner, reporter)?;
            }
            if !progressed {
                if want_data {
                    self.wait_for_data(reporter)?;
                } else {
                    // Unreachable with a validated limiter (one side can always move); wait on failures only.
                    if let Ok(c) = self.ctrl_rx.recv_timeout(POLL) {
                        self.on_ctrl(c)?;
                    }
                }
            }
        }
    }

    /// Waits for the next message (or a failure, or [`POLL`]). It polls first, spinning briefly, then yielding,
    /// then sleeping [`NAP`] at a time, for up to [`POLL_BEFORE_BLOCKING`], and only then blocks on the channels:
    /// a send to a blocked receiver must wake it (a futex system call that cost the sending actor about 6 us of
    /// CPU per message on the dev box, against 0.3 us to a receiver that polls), so a learner that waits often
    /// (an idle or data-bound one) must not block between messages.
    fn wait_for_data(&mut self, reporter: &mut dyn Reporter) -> Result<()> {
        let start = Instant::now();
        let mut round = 0u32;
        loop {
            match self.data_rx.try_recv() {
                Ok(b) => {
                    self.accept(b, reporter);
                    return Ok(());
                }
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => return Err(self.disconnected()),
            }
            if let Ok(c) = self.ctrl_rx.try_recv() {
                return self.on_ctrl(c);
            }
            round += 1;
            if round <= 64 {
                std::hint::spin_loop();
            } else if round <= 80 {
                std::thread::yield_now();
            } else if start.elapsed() < POLL_BEFORE_BLOCKING {
                std::thread::sleep(NAP);
            } else {
                break;
            }
        }
        select! {
            recv(self.data_rx) -> b => match b {
                Ok(b) => self.accept(b, reporter),
                Err(_) => return Err(self.disconnected()),
            },
            recv(self.ctrl_rx) -> c => if let Ok(c) = c { self.on_ctrl(c)? },
            default(POLL) => {}
        }
        Ok(())
    }

    fn disconnected(&mut self) -> AgentError {
        // Every actor is gone; its status message says why.
        match self.ctrl_rx.recv_timeout(Duration::from_millis(self.cfg.shutdown_timeout_ms)) {
            Ok(Ctrl::Failed { id, cause }) => self.fail(id, cause),
            Ok(Ctrl::Exited { id }) => self.fail(id, "stopped before the pool was shut down".into()),
            Err(_) => self.fail(0, "every actor disconnected without a status".into()),
        }
    }

    /// Stops every actor, drains the channel (counting what was in flight as received and discarded) and joins
    /// the threads. Returns the final counters, or an error naming the actors that did not stop within
    /// `shutdown_timeout_ms` (their threads are left detached). Calling it again returns the same counters.
    pub fn shutdown(&mut self) -> Result<CounterSnapshot> {
        if self.closed {
            return Ok(self.snapshot());
        }
        self.closed = true;
        self.stop.store(true, Ordering::Release);
        self.admission.wake_all();
        if let Some((b, i)) = self.pending.take() {
            self.discarded += (b.len() - i) as u64;
        }
        let deadline = Instant::now() + Duration::from_millis(self.cfg.shutdown_timeout_ms);
        let mut timed_out = false;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.data_rx.recv_timeout(left.min(Duration::from_millis(10))) {
                Ok(b) => {
                    self.received += b.len() as u64;
                    self.discarded += b.len() as u64;
                    self.env_steps_received += b.env_steps;
                }
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    if left.is_zero() {
                        timed_out = true;
                        break;
                    }
                }
            }
        }
        let mut stuck = Vec::new();
        for (id, h) in self.handles.iter_mut().enumerate() {
            if let Some(handle) = h.take() {
                if handle.is_finished() || !timed_out {
                    let _ = handle.join();
                } else {
                    stuck.push(id);
                }
            }
        }
        // Keep the first failure reported during shutdown, if none was known yet.
        while let Ok(c) = self.ctrl_rx.try_recv() {
            if let (Ctrl::Failed { id, cause }, None) = (c, &self.failure) {
                self.failure = Some((id, cause));
            }
        }
        if let Some(&id) = stuck.first() {
            return Err(actor_error(
                id,
                format!(
                    "did not stop within {} ms of shutdown (stuck actors: {stuck:?}); its thread is left detached",
                    self.cfg.shutdown_timeout_ms
                ),
            ));
        }
        Ok(self.snapshot())
    }

    /// The first actor failure seen, as `(actor, cause)`.
    pub fn failure(&self) -> Option<(usize, &str)> {
        self.failure.as_ref().map(|(i, c)| (*i, c.as_str()))
    }
}

impl<W, P> Drop for ActorPool<W, P> {
    fn drop(&mut self) {
        // Stop the actors; do not wait for them (the receiver's drop unblocks their sends, the wake their waits
        // for room).
        self.stop.store(true, Ordering::Release);
        self.admission.wake_all();
    }
}
