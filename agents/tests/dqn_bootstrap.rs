//! Targets bootstrap on `truncated` and never on `terminated`, shown on an env with a short time limit; plus
//! the bad-input errors of DQN (continuous actions, bad config, a diverging loss).
use bellman_agents::AgentError;
use bellman_agents::dqn::loss::LossKind;
use bellman_agents::dqn::{DqnConfig, DqnTrainer, EnvFactory};
use bellman_agents::trainer::{EnvSetup, NullReporter, Trainer};
use bellman_envs::wrappers::TimeLimit;
use bellman_envs::{BoxSpace, DynEnv, Env, Info, Space, Step};

fn init_threads() {
    // SAFETY: first statement of each test, before candle starts any thread (see GPU.md).
    unsafe { std::env::set_var("RAYON_NUM_THREADS", "1") };
}

/// One constant observation, reward `reward` every step; terminates after `end` steps when `end` is `Some`.
struct Constant {
    t: u64,
    end: Option<u64>,
    reward: f64,
    obs: Space,
    act: Space,
}

impl Constant {
    fn new(end: Option<u64>, reward: f64, act: Space) -> Self {
        Constant { t: 0, end, reward, obs: Space::Box(BoxSpace::new(vec![0.0], vec![2.0]).unwrap()), act }
    }
}

impl Env for Constant {
    type Obs = [f32; 1];
    type Action = usize;
    fn observation_space(&self) -> &Space {
        &self.obs
    }
    fn action_space(&self) -> &Space {
        &self.act
    }
    fn reset(&mut self, _seed: Option<u64>) -> bellman_envs::Result<([f32; 1], Info)> {
        self.t = 0;
        Ok(([1.0], Info::default()))
    }
    fn step(&mut self, _a: usize) -> bellman_envs::Result<Step<[f32; 1]>> {
        self.t += 1;
        let terminated = self.end.is_some_and(|e| self.t >= e);
        Ok(Step { obs: [1.0], reward: self.reward, terminated, truncated: false, info: Info::default() })
    }
}

fn cfg() -> DqnConfig {
    DqnConfig {
        hidden: vec![16],
        learning_rate: 1e-2,
        batch_size: 32,
        buffer_size: 1000,
        learning_starts: 64,
        gamma: 0.9,
        target_update_interval: 25,
        train_freq: 1,
        gradient_steps: 1,
        total_steps: Some(3000),
        loss: LossKind::Mse,
        ..DqnConfig::default()
    }
}

fn mean_q(make: EnvFactory, cfg: &DqnConfig) -> f32 {
    let mut agent = DqnTrainer::with_env_factory(cfg, make, 0, "cpu").unwrap();
    agent.train(3000, &mut NullReporter).unwrap();
    let q = agent.q_values(&[1.0]).unwrap();
    q.iter().sum::<f32>() / q.len() as f32
}

/// Reward 1 per step, episodes of 5 steps, gamma 0.9, the observation never changes (so one Q-value serves
/// every step, and with the squared loss it converges to the mean of the targets over the buffer):
/// * Cut by a time limit (`truncated`): every target is `1 + 0.9 Q`, so Q = 1 / (1 - 0.9) = 10.
/// * Ended by the MDP (`terminated`): 4 of 5 targets are `1 + 0.9 Q`, 1 of 5 is `1`: Q = 1 + 0.72 Q, Q = 3.571.
///
/// A learner that treated truncation as termination would give 3.57 for both.
#[test]
fn truncation_bootstraps_termination_does_not() {
    init_threads();
    let act = Space::Discrete(2);
    let a2 = act.clone();
    let truncated: EnvFactory =
        Box::new(move || Ok(Box::new(TimeLimit::new(Constant::new(None, 1.0, a2.clone()), 5)) as Box<dyn DynEnv>));
    let terminated: EnvFactory =
        Box::new(move || Ok(Box::new(Constant::new(Some(5), 1.0, act.clone())) as Box<dyn DynEnv>));
    let q_trunc = mean_q(truncated, &cfg());
    let q_term = mean_q(terminated, &cfg());
    assert!((q_trunc - 10.0).abs() < 0.8, "truncated: Q = {q_trunc}, expected about 10");
    assert!((q_term - 3.571).abs() < 0.4, "terminated: Q = {q_term}, expected about 3.571");
}

/// The same with 3-step returns, prioritised replay (importance weights annealed to 1), Double DQN, a dueling
/// head, RMSProp and two envs per learner. Truncated: every 3-step target (`2.71 + 0.729 Q`, and the shorter
/// `1.9 + 0.81 Q`, `1 + 0.9 Q` at the cut) has the fixed point 10. Terminated: of the 5 transitions of an
/// episode, 2 bootstrap (`2.71 + 0.729 Q`) and 3 end (2.71, 1.9, 1): Q = (11.03 + 1.458 Q) / 5, Q = 3.114.
#[test]
fn truncation_bootstraps_with_nstep_per_double_dueling() {
    init_threads();
    let c = DqnConfig {
        n_step: 3,
        prioritized: true,
        double_dqn: true,
        dueling: true,
        n_envs: 2,
        optimizer: bellman_agents::dqn::optim::OptimizerKind::Rmsprop,
        learning_rate: 3e-3,
        ..cfg()
    };
    let act = Space::Discrete(2);
    let a2 = act.clone();
    let truncated: EnvFactory =
        Box::new(move || Ok(Box::new(TimeLimit::new(Constant::new(None, 1.0, a2.clone()), 5)) as Box<dyn DynEnv>));
    let terminated: EnvFactory =
        Box::new(move || Ok(Box::new(Constant::new(Some(5), 1.0, act.clone())) as Box<dyn DynEnv>));
    let q_trunc = mean_q(truncated, &c);
    let q_term = mean_q(terminated, &c);
    assert!((q_trunc - 10.0).abs() < 0.8, "truncated: Q = {q_trunc}, expected about 10");
    assert!((q_term - 3.114).abs() < 0.4, "terminated: Q = {q_term}, expected about 3.114");
}

#[test]
fn continuous_actions_are_rejected() {
    init_threads();
    let err = DqnTrainer::new(&DqnConfig::default(), &EnvSetup::new("Pendulum-v1"), 0, "cpu").unwrap_err();
    assert!(matches!(err, AgentError::Unsupported(_)), "{err}");
    assert!(err.to_string().contains("discrete action space"), "{err}");
}

#[test]
fn bad_config_and_env_are_clear_errors() {
    init_threads();
    let cp = EnvSetup::new("CartPole-v1");
    let e = DqnTrainer::new(&DqnConfig { gamma: 1.5, ..DqnConfig::default() }, &cp, 0, "cpu").unwrap_err();
    assert!(e.to_string().contains("gamma = 1.5: must be in (0, 1]"), "{e}");
    let e = DqnTrainer::new(&DqnConfig { learning_rate: -1.0, ..DqnConfig::default() }, &cp, 0, "cpu").unwrap_err();
    assert!(e.to_string().contains("learning_rate = -1"), "{e}");
    let big = DqnConfig { batch_size: 128, buffer_size: 100, ..DqnConfig::default() };
    let e = DqnTrainer::new(&big, &cp, 0, "cpu").unwrap_err();
    assert!(e.to_string().contains("batch_size = 128 is larger than buffer_size = 100"), "{e}");
    let e = DqnTrainer::new(&DqnConfig::default(), &cp, 0, "tpu").unwrap_err();
    assert!(e.to_string().contains("cpu, cuda, cuda:N"), "{e}");
    let e = DqnTrainer::new(&DqnConfig::default(), &EnvSetup::new("CartPole-v9"), 0, "cpu").unwrap_err();
    assert!(e.to_string().contains("CartPole-v1"), "{e}");
}

/// Rewards of 1e30 with a squared loss overflow f32: training stops with `Diverged` before the bad gradient
/// reaches the weights, which stay those of the last good update (here: the initial ones).
#[test]
fn diverging_loss_stops_with_clear_error_and_keeps_weights() {
    init_threads();
    let make: EnvFactory =
        Box::new(|| Ok(Box::new(Constant::new(Some(3), 1e30, Space::Discrete(2))) as Box<dyn DynEnv>));
    let cfg = DqnConfig { max_grad_norm: 0.0, ..cfg() };
    let mut agent = DqnTrainer::with_env_factory(&cfg, make, 0, "cpu").unwrap();
    let before = agent.checkpoint().unwrap().weights;
    let err = agent.train(1000, &mut NullReporter).unwrap_err();
    assert!(matches!(err, AgentError::Diverged(_)), "{err}");
    assert!(err.to_string().contains("last good update"), "{err}");
    assert_eq!(agent.updates_done(), 0);
    assert_eq!(agent.checkpoint().unwrap().weights, before);
}

#[test]
fn checkpoint_round_trip_restores_policy() {
    init_threads();
    let cp = EnvSetup::new("CartPole-v1");
    let cfg = DqnConfig { learning_starts: 50, total_steps: Some(400), ..DqnConfig::default() };
    let mut a = DqnTrainer::new(&cfg, &cp, 1, "cpu").unwrap();
    a.train(400, &mut NullReporter).unwrap();
    let ck = a.checkpoint().unwrap();
    let mut b = DqnTrainer::new(&cfg, &cp, 2, "cpu").unwrap();
    assert_ne!(b.checkpoint().unwrap().weights, ck.weights);
    b.restore(&ck).unwrap();
    assert_eq!(b.steps_done(), 400);
    assert_eq!(b.checkpoint().unwrap().weights, ck.weights);
    assert_eq!(b.evaluate(3, 7).unwrap(), a.evaluate(3, 7).unwrap());
    // Training goes on after a restore (the replay buffer refills before the next update).
    b.train(700, &mut NullReporter).unwrap();
    assert_eq!(b.steps_done(), 700);
    let mut bad = ck.clone();
    bad.weights.truncate(bad.weights.len() / 2);
    assert!(matches!(b.restore(&bad), Err(AgentError::Checkpoint(_))));
}

/// SB3's schedule: the target network is synced every `target_update_interval` env steps, before that step's
/// training phase, and stays fixed in between.
#[test]
fn target_network_syncs_every_interval() {
    init_threads();
    let make: EnvFactory = Box::new(|| Ok(bellman_envs::make("CartPole-v1")?));
    let c = DqnConfig { learning_starts: 5, target_update_interval: 7, train_freq: 1, ..cfg() };
    let mut agent = DqnTrainer::with_env_factory(&c, make, 0, "cpu").unwrap();
    let w = |a: &DqnTrainer| (a.online().to_safetensors().unwrap(), a.target().to_safetensors().unwrap());
    agent.train(13, &mut NullReporter).unwrap();
    let (online13, target13) = w(&agent);
    assert_ne!(online13, target13, "8 updates since the sync at step 7");
    agent.train(14, &mut NullReporter).unwrap();
    let (online14, target14) = w(&agent);
    assert_eq!(target14, online13, "step 14 syncs the target to the online net before its update");
    assert_ne!(online14, online13);
    agent.train(20, &mut NullReporter).unwrap();
    assert_eq!(w(&agent).1, online13, "no sync between steps 15 and 20");
    let online20 = w(&agent).0;
    agent.train(21, &mut NullReporter).unwrap();
    assert_eq!(w(&agent).1, online20);
    assert_eq!(agent.updates_done(), 21 - 5);
}
