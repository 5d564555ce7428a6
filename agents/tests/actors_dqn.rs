//! Ape-X DQN end to end on CartPole (short runs): accounting, per-actor episodes, metrics, checkpoints, faults.
use bellman_agents::actors::{ActorEpsilon, ApexConfig, ApexDqnTrainer};
use bellman_agents::dqn::DqnConfig;
use bellman_agents::trainer::{EnvSetup, Trainer, VecReporter};
use bellman_envs::{ActionValue, DynEnv, EnvError, Info, Space, StepOutcome};

fn small_cfg() -> DqnConfig {
    DqnConfig {
        hidden: vec![16],
        batch_size: 16,
        buffer_size: 1_000,
        learning_starts: 200,
        train_freq: 4,
        gradient_steps: 1,
        target_update_interval: 100,
        learning_rate: 1e-3,
        total_steps: Some(3_000),
        metrics_every: 500,
        ..DqnConfig::default()
    }
}

#[test]
fn apex_dqn_accounts_for_every_transition_and_tags_episodes() {
    let apex = ApexConfig { send_batch: 20, ..ApexConfig::default() };
    let mut t = ApexDqnTrainer::new(&small_cfg(), &apex, 2, &EnvSetup::new("CartPole-v1"), 3, "cpu").unwrap();
    let mut rep = VecReporter::default();
    t.train(1_500, &mut rep).unwrap();
    t.train(3_000, &mut rep).unwrap();
    assert!(t.steps_done() >= 3_000);
    let c = t.shutdown().unwrap();
    assert_eq!(c.sent, c.received, "{c:?}");
    assert_eq!(c.received, c.inserted + c.discarded, "{c:?}");
    assert_eq!(c.evicted, c.inserted.saturating_sub(1_000), "capacity 1000");
    // Default ratio = batch * gradient_steps / train_freq = 4 samples per insert, kept within the band.
    let expected = (c.inserted as f64 * 4.0 - c.sampled as f64).abs();
    assert!(expected <= 200.0 * 4.0 + 16.0, "diff {expected}: {c:?}");
    assert_eq!(t.updates_done(), c.updates);
    assert!(c.updates > 100);
    // Episodes come from both actors, numbered in order, with CartPole's returns (= lengths).
    let actors: std::collections::BTreeSet<usize> = rep.episodes.iter().map(|e| e.actor).collect();
    assert!(actors.is_subset(&[0, 1].into()) && !actors.is_empty(), "{actors:?}");
    for (i, e) in rep.episodes.iter().enumerate() {
        assert_eq!(e.episode, i as u64);
        assert_eq!(e.ret, e.len as f64);
    }
    // Metrics rows carry the counters and the policy lag.
    let m = rep.metrics.last().unwrap();
    let get = |k: &str| m.extra.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
    assert_eq!(get("actors"), Some(2.0));
    assert!(get("policy_lag_mean").is_some() && get("received").unwrap() > 0.0);
    assert!(m.loss.is_some_and(f64::is_finite));
    // Greedy evaluation and a checkpoint round trip: the restored agent evaluates identically.
    let ev = t.evaluate(3, 100).unwrap();
    let ck = t.checkpoint().unwrap();
    assert_eq!(ck.meta["actors"], 2);
    let mut fresh = ApexDqnTrainer::new(&small_cfg(), &apex, 1, &EnvSetup::new("CartPole-v1"), 9, "cpu").unwrap();
    fresh.restore(&ck).unwrap();
    assert_eq!(fresh.evaluate(3, 100).unwrap(), ev);
    assert_eq!(fresh.steps_done(), ck.meta["steps"].as_u64().unwrap());
}

/// Prioritised replay with actors (Ape-X's setting) and 3-step returns, end to end on CartPole: every transition
/// accounted for, updates run on the actors' priorities, losses finite.
#[test]
fn apex_dqn_with_prioritized_replay_runs_end_to_end() {
    let cfg = DqnConfig { prioritized: true, n_step: 3, double_dqn: true, ..small_cfg() };
    let apex = ApexConfig { send_batch: 20, ..ApexConfig::default() };
    let mut t = ApexDqnTrainer::new(&cfg, &apex, 2, &EnvSetup::new("CartPole-v1"), 4, "cpu").unwrap();
    let mut rep = VecReporter::default();
    t.train(2_000, &mut rep).unwrap();
    let c = t.shutdown().unwrap();
    assert_eq!(c.sent, c.received, "{c:?}");
    assert_eq!(c.received, c.inserted + c.discarded, "{c:?}");
    assert!(c.updates > 50, "{c:?}");
    let losses: Vec<f64> = rep.metrics.iter().filter_map(|m| m.loss).collect();
    assert!(!losses.is_empty() && losses.iter().all(|l| l.is_finite() && *l >= 0.0), "{losses:?}");
    assert!(rep.metrics.iter().filter_map(|m| m.mean_q).all(f64::is_finite));
    let actors: std::collections::BTreeSet<usize> = rep.episodes.iter().map(|e| e.actor).collect();
    assert!(!actors.is_empty() && actors.is_subset(&[0, 1].into()), "{actors:?}");
}

/// `bellman train --resume` of Ape-X DQN (RMSProp, centered, with momentum: every optimiser buffer): the learner's
/// optimiser state, target network and replay buffer round-trip exactly through a checkpoint and `save_replay`,
/// the report says not exact (the actors restart), and training continues from the restored counters. An
/// optimiser of another kind is refused with a message naming both.
#[test]
fn apex_dqn_resume_round_trips_the_learner_state() {
    let cfg = DqnConfig {
        optimizer: bellman_agents::dqn::optim::OptimizerKind::Rmsprop,
        rmsprop_centered: true,
        rmsprop_momentum: 0.5,
        ..small_cfg()
    };
    let apex = ApexConfig { send_batch: 20, ..ApexConfig::default() };
    let mut t = ApexDqnTrainer::new(&cfg, &apex, 2, &EnvSetup::new("CartPole-v1"), 6, "cpu").unwrap();
    t.train(1_000, &mut VecReporter::default()).unwrap();
    t.shutdown().unwrap();
    let ck = t.checkpoint().unwrap();
    let learner = &ck.meta["learner"];
    assert_eq!(learner["optimizer"]["kind"], "rmsprop");
    assert_eq!(learner["optimizer"]["step"], ck.meta["updates"]);
    assert!(t.updates_done() > 50, "{} updates", t.updates_done());
    let path = std::env::temp_dir().join(format!("bellman-actors-dqn-resume-{}.replay", std::process::id()));
    assert!(t.save_replay(&path).unwrap());
    assert!(t.replay_bytes().is_some_and(|b| b > 0));

    let mut r = ApexDqnTrainer::new(&cfg, &apex, 2, &EnvSetup::new("CartPole-v1"), 6, "cpu").unwrap();
    let report = r.resume(&ck, Some(&path)).unwrap();
    assert!(!report.exact, "{report}");
    assert!(report.notes[0].contains("Ape-X actors restart"), "{report}");
    let rc = r.checkpoint().unwrap();
    assert_eq!((&rc.weights, &rc.train_state), (&ck.weights, &ck.train_state), "weights, target, optimiser");
    assert_eq!(rc.meta["learner"], ck.meta["learner"], "optimiser step, replay generator and counts");
    assert_eq!(r.steps_done(), t.steps_done());
    assert_eq!(r.updates_done(), t.updates_done());
    assert_ne!(rc.meta["env_seed"], ck.meta["env_seed"], "the actors restart on a derived seed");
    r.train(t.steps_done() + 800, &mut VecReporter::default()).unwrap();
    r.shutdown().unwrap();
    assert!(r.steps_done() >= t.steps_done() + 800);
    assert!(r.updates_done() > t.updates_done(), "the restored learner keeps learning");

    let adam = DqnConfig { optimizer: bellman_agents::dqn::optim::OptimizerKind::Adam, ..cfg };
    let mut a = ApexDqnTrainer::new(&adam, &apex, 1, &EnvSetup::new("CartPole-v1"), 6, "cpu").unwrap();
    let e = a.resume(&ck, Some(&path)).unwrap_err().to_string();
    assert!(e.contains("rmsprop") && e.contains("adam"), "{e}");
    std::fs::remove_file(&path).unwrap();
}

/// An env that fails on its `fail_at`-th step.
struct Failing {
    obs_space: Space,
    act_space: Space,
    steps: u64,
    fail_at: u64,
}

impl DynEnv for Failing {
    fn observation_space(&self) -> &Space {
        &self.obs_space
    }
    fn action_space(&self) -> &Space {
        &self.act_space
    }
    fn reset_into(&mut self, _seed: Option<u64>, obs: &mut [f32]) -> Result<Info, EnvError> {
        obs.fill(0.0);
        Ok(Info::default())
    }
    fn step_into(&mut self, _a: ActionValue<'_>, obs: &mut [f32]) -> Result<StepOutcome, EnvError> {
        self.steps += 1;
        if self.steps == self.fail_at {
            return Err(EnvError::Backend("simulator crashed".into()));
        }
        obs.fill(self.steps as f32 * 1e-3);
        Ok(StepOutcome { reward: 1.0, terminated: self.steps.is_multiple_of(20), ..StepOutcome::default() })
    }
}

#[test]
fn an_actor_env_error_fails_the_run_naming_the_actor() {
    let made = std::sync::atomic::AtomicUsize::new(0);
    let factory = Box::new(move || -> bellman_agents::Result<Box<dyn DynEnv>> {
        // The first env made is the evaluation env; then actor 0, actor 1: actor 1's env fails at step 300.
        let k = made.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Box::new(Failing {
            obs_space: Space::Box(bellman_envs::BoxSpace::new(vec![-1.0; 3], vec![1.0; 3]).unwrap()),
            act_space: Space::Discrete(2),
            steps: 0,
            fail_at: if k == 2 { 300 } else { u64::MAX },
        }))
    });
    let apex = ApexConfig { epsilon: ActorEpsilon::Schedule, send_batch: 10, ..ApexConfig::default() };
    let mut t = ApexDqnTrainer::with_env_factory(&small_cfg(), &apex, 2, factory, 0, "cpu").unwrap();
    let start = std::time::Instant::now();
    let err = t.train(1_000_000, &mut VecReporter::default()).unwrap_err().to_string();
    assert!(start.elapsed() < std::time::Duration::from_secs(30));
    assert!(err.starts_with("actor 1 failed:") && err.contains("simulator crashed"), "{err}");
}

#[test]
fn bad_actor_settings_are_config_errors() {
    let e = ApexDqnTrainer::new(&small_cfg(), &ApexConfig::default(), 0, &EnvSetup::new("CartPole-v1"), 0, "cpu")
        .unwrap_err()
        .to_string();
    assert!(e.contains("actors = 0"), "{e}");
    let cfg = DqnConfig { learning_starts: 5_000, ..small_cfg() };
    let e = ApexDqnTrainer::new(&cfg, &ApexConfig::default(), 2, &EnvSetup::new("CartPole-v1"), 0, "cpu")
        .unwrap_err()
        .to_string();
    assert!(e.contains("learning_starts = 5000"), "{e}");
    let apex = ApexConfig { error_buffer: Some(1.0), ..ApexConfig::default() };
    let e =
        ApexDqnTrainer::new(&small_cfg(), &apex, 2, &EnvSetup::new("CartPole-v1"), 0, "cpu").unwrap_err().to_string();
    assert!(e.contains("error_buffer = 1"), "{e}");
}
