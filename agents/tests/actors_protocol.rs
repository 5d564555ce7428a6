//! The actor/learner protocol with a fake env and a fake learner: accounting, weight versions, faults, rate
//! limiting, stopping.
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bellman_agents::actors::{Actor, ActorBatch, ActorEpisode, ActorPool, Learner, PoolConfig, RateLimit};
use bellman_agents::trainer::{EpisodeRecord, NullReporter, Reporter, TrainMetrics, VecReporter};
use bellman_agents::{AgentError, Result};
use bellman_envs::EnvError;

/// (actor, sequence number within the actor, weights version it acted with)
type Item = (usize, u64, u64);

#[derive(Clone, Copy)]
enum Fault {
    None,
    PanicAt(u64),
    EnvErrorAt(u64),
}

/// A fake actor: every step is one transition carrying its own sequence number; episodes last `ep_len` steps.
struct FakeActor {
    id: usize,
    seq: u64,
    ep_len: u64,
    version: u64,
    weights_seen: Arc<Mutex<Vec<(u64, u64)>>>,
    step_delay: Duration,
    fault: Fault,
}

impl FakeActor {
    fn new(id: usize) -> Self {
        FakeActor {
            id,
            seq: 0,
            ep_len: 10,
            version: 0,
            weights_seen: Arc::new(Mutex::new(Vec::new())),
            step_delay: Duration::ZERO,
            fault: Fault::None,
        }
    }
}

impl Actor for FakeActor {
    type Weights = u64;
    type Payload = Vec<Item>;
    fn new_payload(&self) -> Vec<Item> {
        Vec::with_capacity(64)
    }
    fn load_weights(&mut self, w: &u64, version: u64) -> Result<()> {
        self.weights_seen.lock().unwrap().push((version, *w));
        self.version = version;
        Ok(())
    }
    fn step(&mut self, b: &mut ActorBatch<Vec<Item>>) -> Result<()> {
        match self.fault {
            Fault::PanicAt(s) if self.seq == s => panic!("fake env exploded at step {s}"),
            Fault::EnvErrorAt(s) if self.seq == s => {
                return Err(EnvError::NeedsReset("by the fake env on purpose").into());
            }
            _ => {}
        }
        if !self.step_delay.is_zero() {
            std::thread::sleep(self.step_delay);
        }
        b.payload.push((self.id, self.seq, self.version));
        b.priorities.push(1.0 + (self.seq % 3) as f32);
        b.env_steps += 1;
        self.seq += 1;
        if self.seq.is_multiple_of(self.ep_len) {
            b.episodes.push(ActorEpisode { ret: self.id as f64, len: self.ep_len });
        }
        Ok(())
    }
}

/// A fake learner: a FIFO replay of `capacity` items; `update` optionally sleeps; weights = number of updates.
struct FakeLearner {
    capacity: usize,
    replay: VecDeque<Item>,
    log: Vec<Item>,
    updates: u64,
    update_delay: Duration,
    batch: usize,
    /// (inserts, samples) seen by the limiter at each update, to check the band from outside.
    priorities_ok: bool,
    /// Largest policy lag seen at insertion: updates done minus the version the transition was collected with
    /// (with `publish_every = 1`, version k is the weights after k updates).
    max_lag: u64,
    /// Publications that refilled earlier weights in place (`refresh_weights`) rather than building new ones.
    refreshed: u64,
}

impl FakeLearner {
    fn new(capacity: usize, batch: usize) -> Self {
        FakeLearner {
            capacity,
            replay: VecDeque::new(),
            log: Vec::new(),
            updates: 0,
            update_delay: Duration::ZERO,
            batch,
            priorities_ok: true,
            max_lag: 0,
            refreshed: 0,
        }
    }
}

impl Learner for FakeLearner {
    type Weights = u64;
    type Payload = Vec<Item>;
    fn sample_batch(&self) -> usize {
        self.batch
    }
    fn insert(&mut self, b: &ActorBatch<Vec<Item>>, i: usize) -> Result<bool> {
        let it = b.payload[i];
        self.priorities_ok &= b.priorities[i] == 1.0 + (it.1 % 3) as f32 && it.0 == b.actor && it.2 == b.version;
        self.max_lag = self.max_lag.max(self.updates.saturating_sub(it.2));
        self.log.push(it);
        self.replay.push_back(it);
        if self.replay.len() > self.capacity {
            self.replay.pop_front();
            return Ok(true);
        }
        Ok(false)
    }
    fn update(&mut self, _step: u64) -> Result<()> {
        assert!(self.replay.len() >= self.batch, "sampled from a replay of {} < {}", self.replay.len(), self.batch);
        if !self.update_delay.is_zero() {
            std::thread::sleep(self.update_delay);
        }
        self.updates += 1;
        Ok(())
    }
    fn weights(&mut self) -> Result<u64> {
        Ok(self.updates)
    }
    fn refresh_weights(&mut self, w: &mut u64) -> Result<()> {
        self.refreshed += 1;
        *w = self.updates;
        Ok(())
    }
    fn metrics(&mut self, step: u64) -> Result<TrainMetrics> {
        Ok(TrainMetrics { step, loss: Some(0.5), extra: vec![("fake".into(), 1.0)], ..TrainMetrics::default() })
    }
}

fn config(send_batch: usize, spi: f64, min_size: u64, eb: f64) -> PoolConfig {
    PoolConfig {
        send_batch,
        channel_capacity: 4,
        publish_every: 1,
        rate: RateLimit {
            samples_per_insert: spi,
            min_size_to_sample: min_size,
            error_buffer: eb,
            ..RateLimit::default()
        },
        metrics_every: 500,
        shutdown_timeout_ms: 5000,
    }
}

#[test]
fn every_transition_is_accounted_for() {
    let actors: Vec<_> = (0..3).map(FakeActor::new).collect();
    let cfg = config(7, 1.0, 16, 16.0);
    let mut pool = ActorPool::spawn(actors, 0, &cfg, 4).unwrap();
    let mut learner = FakeLearner::new(100, 4);
    let mut rep = VecReporter::default();
    // Two chunks, as the runner trains.
    pool.run(&mut learner, 1_000, &mut rep).unwrap();
    pool.run(&mut learner, 3_000, &mut rep).unwrap();
    let c = pool.shutdown().unwrap();
    assert!(c.env_steps_received >= 3_000);
    // Every transition sent was received, and every one received was inserted or counted as discarded.
    assert_eq!(c.sent, c.received, "{c:?}");
    assert_eq!(c.received, c.inserted + c.discarded, "{c:?}");
    assert_eq!(c.pending, 0);
    assert_eq!(c.env_steps_sent, c.env_steps_received);
    assert_eq!(c.inserted, learner.log.len() as u64);
    assert_eq!(c.evicted, c.inserted - 100, "FIFO replay of 100 evicts all but the last 100");
    assert!(learner.priorities_ok, "a priority or version travelled with the wrong transition");
    // Per-thread CPU time: the channel's share is part of the loop's, and the loop did use CPU.
    assert!(c.actor_cpu_secs > 0.0 && c.send_cpu_secs > 0.0, "{c:?}");
    assert!(c.send_cpu_secs + c.wait_cpu_secs <= c.actor_cpu_secs, "{c:?}");
    assert!((0.0..=1.0).contains(&c.send_cpu_fraction()));
    // Per actor, the inserted sequence numbers are exactly 0, 1, 2, ... with no gap and no duplicate, and the
    // discarded tail accounts for the rest.
    let mut inserted_per_actor = [0u64; 3];
    for (a, n) in inserted_per_actor.iter_mut().enumerate() {
        let seqs: Vec<u64> = learner.log.iter().filter(|t| t.0 == a).map(|t| t.1).collect();
        assert!(seqs.iter().enumerate().all(|(i, s)| *s == i as u64), "actor {a}: gap or reordering");
        *n = seqs.len() as u64;
    }
    assert_eq!(inserted_per_actor.iter().sum::<u64>(), c.inserted);
    // Episodes: one per 10 steps of each actor, tagged with the actor's id (its return is its id here).
    assert!(!rep.episodes.is_empty());
    for e in &rep.episodes {
        assert_eq!(e.ret, e.actor as f64);
        assert_eq!(e.len, 10);
    }
    for (i, e) in rep.episodes.iter().enumerate() {
        assert_eq!(e.episode, i as u64);
    }
    assert!(rep.episodes.windows(2).all(|w| w[0].step <= w[1].step));
    // Metrics carry the counters and the policy lag, in a stable order.
    let m = rep.metrics.last().unwrap();
    let names: Vec<&str> = m.extra.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        &names[..15],
        [
            "actors",
            "sent",
            "received",
            "inserted",
            "evicted",
            "discarded",
            "pending",
            "updates",
            "weights_version",
            "policy_lag_mean",
            "policy_lag_max",
            "samples_per_insert",
            "actor_send_fraction",
            "actor_wait_fraction",
            "actor_send_cpu_fraction"
        ]
    );
    assert_eq!(names[15..], ["actor0_steps", "actor1_steps", "actor2_steps", "fake"]);
    assert_eq!(m.loss, Some(0.5));
    // Shutting down twice is harmless and gives the same figures.
    assert_eq!(pool.shutdown().unwrap(), c);
}

#[test]
fn weight_versions_are_monotone_and_match_their_weights() {
    let actors: Vec<_> = (0..2).map(FakeActor::new).collect();
    let logs: Vec<_> = actors.iter().map(|a| Arc::clone(&a.weights_seen)).collect();
    let mut pool = ActorPool::spawn(actors, 0, &config(5, 2.0, 8, 8.0), 4).unwrap();
    let mut learner = FakeLearner::new(1000, 4);
    pool.run(&mut learner, 2_000, &mut NullReporter).unwrap();
    let final_version = pool.version();
    pool.shutdown().unwrap();
    assert!(final_version > 10, "only {final_version} publications");
    // publish_every = 1: version v carries the weights after v updates.
    assert_eq!(final_version, learner.updates);
    // Publication refills the weights it replaced last time unless an actor still held them (actors hold a
    // version only while they copy it), so almost every publication allocates nothing; the versions checked
    // below prove no refill reached weights an actor was reading.
    assert!(
        learner.refreshed * 2 >= final_version,
        "only {} of {final_version} publications refilled weights in place",
        learner.refreshed
    );
    // (An actor thread scheduled only after the run ended has loaded nothing; the others are checked.)
    assert!(logs.iter().any(|l| !l.lock().unwrap().is_empty()));
    for (a, log) in logs.iter().enumerate() {
        let log = log.lock().unwrap();
        if log.is_empty() {
            continue;
        }
        // An actor starts from the newest version when its thread starts (0 unless it started late).
        assert!(log[0].0 <= final_version);
        assert!(log.windows(2).all(|w| w[0].0 < w[1].0), "actor {a} loaded versions {log:?}");
        assert!(log.iter().all(|(v, w)| v == w), "actor {a}: a version with another version's weights");
        assert!(log.last().unwrap().0 <= final_version);
    }
    // At the learner, each actor's batches carry non-decreasing versions.
    for a in 0..2 {
        let v: Vec<u64> = learner.log.iter().filter(|t| t.0 == a).map(|t| t.2).collect();
        assert!(v.windows(2).all(|w| w[0] <= w[1]), "actor {a}: versions went back");
    }
}

fn run_until_error(actors: Vec<FakeActor>) -> (AgentError, Duration, ActorPool<u64, Vec<Item>>) {
    let mut pool = ActorPool::spawn(actors, 0, &config(5, 1.0, 8, 8.0), 4).unwrap();
    let mut learner = FakeLearner::new(1000, 4);
    let t = Instant::now();
    let err = pool.run(&mut learner, u64::MAX, &mut NullReporter).unwrap_err();
    (err, t.elapsed(), pool)
}

#[test]
fn a_panicking_actor_ends_the_run_with_an_error_naming_it() {
    let mut actors: Vec<_> = (0..3).map(FakeActor::new).collect();
    actors[1].fault = Fault::PanicAt(200);
    let (err, took, mut pool) = run_until_error(actors);
    assert!(took < Duration::from_secs(5), "took {took:?}");
    match &err {
        AgentError::Actor { id, cause } => {
            assert_eq!(*id, 1);
            assert!(cause.contains("panicked: fake env exploded at step 200"), "{cause}");
        }
        other => panic!("expected an actor error, got {other}"),
    }
    assert_eq!(err.to_string(), "actor 1 failed: panicked: fake env exploded at step 200");
    // The others were stopped and joined, the counts still add up, and the pool keeps reporting the failure.
    let c = pool.shutdown().unwrap();
    assert_eq!(c.sent, c.received);
    assert_eq!(c.received, c.inserted + c.discarded);
    assert_eq!(pool.failure().map(|f| f.0), Some(1));
    let again = pool.run(&mut FakeLearner::new(10, 4), u64::MAX, &mut NullReporter).unwrap_err();
    assert!(again.to_string().starts_with("actor 1 failed"), "{again}");
}

#[test]
fn an_env_error_ends_the_run_with_the_actor_and_the_cause() {
    let mut actors: Vec<_> = (0..2).map(FakeActor::new).collect();
    actors[0].fault = Fault::EnvErrorAt(37);
    let (err, took, _pool) = run_until_error(actors);
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let msg = err.to_string();
    assert!(msg.starts_with("actor 0 failed:") && msg.contains("by the fake env on purpose"), "{msg}");
}

#[test]
fn a_failure_is_noticed_while_the_learner_waits_for_data() {
    // The only actor is slow and fails; the learner is blocked waiting for data and must wake up on the failure.
    let mut a = FakeActor::new(0);
    a.step_delay = Duration::from_millis(2);
    a.fault = Fault::PanicAt(3);
    let (err, took, _pool) = run_until_error(vec![a]);
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(err.to_string().starts_with("actor 0 failed: panicked"), "{err}");
}

#[test]
fn rate_limiter_holds_the_band_under_a_slow_actor() {
    // A fast learner and a slow trickle of data: the learner waits, it does not overfit.
    let mut a = FakeActor::new(0);
    a.step_delay = Duration::from_micros(200);
    let spi = 2.0;
    let mut pool = ActorPool::spawn(vec![a], 0, &config(4, spi, 16, 10.0), 8).unwrap();
    let mut learner = FakeLearner::new(10_000, 8);
    pool.run(&mut learner, 1_000, &mut NullReporter).unwrap();
    let lim = pool.limiter().clone();
    let c = pool.shutdown().unwrap();
    let (lo, hi) = lim.seen_range().unwrap();
    let (blo, bhi) = lim.band();
    assert!(lo >= blo && hi <= bhi, "diff went to [{lo}, {hi}], band [{blo}, {bhi}]");
    // The learner was as fast as allowed: samples per insert within error_buffer of the target.
    let expected = c.inserted as f64 * spi;
    assert!((c.sampled as f64 - expected).abs() <= 10.0 + 32.0, "sampled {} vs {expected}", c.sampled);
    assert_eq!(c.sampled, c.updates * 8);
}

#[test]
fn rate_limiter_holds_the_band_under_a_slow_learner() {
    // Fast actors and a slow learner: the actors wait for room in the band, the learner does not fall behind.
    let actors: Vec<_> = (0..2).map(FakeActor::new).collect();
    let spi = 4.0;
    let cfg = config(4, spi, 8, 24.0);
    let mut pool = ActorPool::spawn(actors, 0, &cfg, 8).unwrap();
    let mut learner = FakeLearner::new(10_000, 8);
    learner.update_delay = Duration::from_micros(500);
    let t = Instant::now();
    let mut rep = CountingStop { left: 300, episodes: 0 };
    pool.run(&mut learner, u64::MAX, &mut rep).unwrap();
    assert!(t.elapsed() < Duration::from_secs(10));
    let lim = pool.limiter().clone();
    let before = pool.snapshot();
    let (lo, hi) = lim.seen_range().unwrap();
    let (blo, bhi) = lim.band();
    assert!(lo >= blo && hi <= bhi, "diff went to [{lo}, {hi}], band [{blo}, {bhi}]");
    // Backpressure: what the actors sent beyond what was inserted is bounded by the channel (4 batches of 4),
    // the batch waiting for insertion, and one batch per actor in flight.
    let in_flight = before.sent - before.inserted;
    assert!(in_flight <= (4 + 1 + 2) * 4, "{in_flight} transitions in flight: actors were not blocked");
    // About 300 updates: the learner pace, not the actors', set how much data was made.
    assert!(before.inserted as f64 <= (before.sampled as f64 + bhi) / spi + 1.0, "{before:?}");
    let c = pool.shutdown().unwrap();
    assert_eq!(c.sent, c.received);
    assert_eq!(c.received, c.inserted + c.discarded);
}

/// Actors claim room in the band before they act, so a slow learner with a large channel finds no stale data in it:
/// everything the actors sent is insertable at once, and each transition was collected with weights at most a few
/// updates old. (Before admission, the actors filled whatever channel there was: 64 messages of 4 here.)
#[test]
fn a_slow_learner_with_a_large_channel_gets_no_stale_data() {
    let actors: Vec<_> = (0..2).map(FakeActor::new).collect();
    let cfg = PoolConfig { channel_capacity: 64, ..config(4, 4.0, 8, 24.0) };
    let mut pool = ActorPool::spawn(actors, 0, &cfg, 8).unwrap();
    let mut learner = FakeLearner::new(10_000, 8);
    learner.update_delay = Duration::from_millis(1);
    let mut rep = CountingStop { left: 100, episodes: 0 };
    pool.run(&mut learner, u64::MAX, &mut rep).unwrap();
    // The learner samples no more after `run`, so the actors cannot claim more than this either.
    std::thread::sleep(Duration::from_millis(20));
    let lim = pool.limiter().clone();
    let c = pool.snapshot();
    let insertable = lim.inserts() + lim.insert_allowance(u64::MAX);
    assert!(c.sent <= insertable, "sent {} but only {insertable} fit the band: data waited in the channel", c.sent);
    assert!(c.updates >= 50, "{c:?}");
    // Policy lag: 64 queued messages of 4 would be 128 updates old when inserted (4 samples per insert, 8 per
    // update); claimed room is 14 transitions at most (band), about 7 updates. 20 leaves room for a loaded machine.
    assert!(learner.max_lag <= 20, "policy lag reached {} updates", learner.max_lag);
    let c = pool.shutdown().unwrap();
    assert_eq!(c.received, c.inserted + c.discarded);
}

/// Actors waiting for room in the band (the learner stopped sampling) see a shutdown promptly: it returns well
/// within the shutdown timeout and every transition is accounted for.
#[test]
fn shutdown_stops_actors_waiting_for_room() {
    let actors: Vec<_> = (0..3).map(FakeActor::new).collect();
    let cfg = PoolConfig { channel_capacity: 64, ..config(4, 4.0, 8, 24.0) };
    let mut pool = ActorPool::spawn(actors, 0, &cfg, 8).unwrap();
    let mut learner = FakeLearner::new(10_000, 8);
    let mut rep = CountingStop { left: 20, episodes: 0 };
    pool.run(&mut learner, u64::MAX, &mut rep).unwrap();
    // No more samples: the band fills and every actor ends up waiting for room.
    std::thread::sleep(Duration::from_millis(50));
    let c = pool.snapshot();
    assert!(c.wait_secs > 0.0, "no actor waited: {c:?}");
    let t = Instant::now();
    let c = pool.shutdown().unwrap();
    assert!(t.elapsed() < Duration::from_secs(1), "shutdown took {:?}", t.elapsed());
    assert_eq!(c.sent, c.received);
    assert_eq!(c.received, c.inserted + c.discarded);
}

/// A reporter that asks to stop after a number of progress calls... here, after `left` metrics-free checks.
struct CountingStop {
    left: u64,
    episodes: u64,
}

impl Reporter for CountingStop {
    fn episode(&mut self, _e: &EpisodeRecord) {
        self.episodes += 1;
    }
    fn metrics(&mut self, _m: &TrainMetrics) {}
    fn stop_requested(&self) -> bool {
        self.left == 0
    }
    fn progress(&mut self, _step: u64) {
        self.left = self.left.saturating_sub(1);
    }
}

#[test]
fn a_stop_request_returns_promptly_and_shutdown_is_clean() {
    let actors: Vec<_> = (0..4).map(FakeActor::new).collect();
    let mut pool = ActorPool::spawn(actors, 0, &config(8, 1.0, 16, 16.0), 4).unwrap();
    let mut learner = FakeLearner::new(100, 4);
    let mut rep = CountingStop { left: 50, episodes: 0 };
    let t = Instant::now();
    pool.run(&mut learner, u64::MAX, &mut rep).unwrap();
    let c = pool.shutdown().unwrap();
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(c.sent, c.received);
    assert_eq!(c.received, c.inserted + c.discarded);
    assert!(rep.episodes > 0);
}

#[test]
fn bad_configs_are_errors_naming_the_field() {
    let mk = |cfg: &PoolConfig, n: usize| ActorPool::spawn((0..n).map(FakeActor::new).collect(), 0, cfg, 4).err();
    let e = mk(&PoolConfig { send_batch: 0, ..config(4, 1.0, 8, 8.0) }, 1).unwrap().to_string();
    assert!(e.contains("send_batch = 0"), "{e}");
    let e = mk(&config(4, 1.0, 8, 8.0), 0).unwrap().to_string();
    assert!(e.contains("actors = 0"), "{e}");
    let e = mk(&config(4, 1.0, 2, 8.0), 1).unwrap().to_string();
    assert!(e.contains("min_size_to_sample = 2"), "{e}");
}
