//! TD control on small MDPs built here, and the tabular trainer (reporting, checkpoints, bad input).
use bellman_agents::tabular::learning::{MdpEnv, Schedule, TableMdp, discrete_sizes, run_episodes};
use bellman_agents::tabular::planning::{CompiledMdp, ViOptions, value_iteration};
use bellman_agents::tabular::{TabularConfig, TabularTrainer, TdAlgorithm};
use bellman_agents::trainer::{Checkpoint, EnvSetup, Trainer, VecReporter};
use bellman_envs::mdp::{Outcome, TransitionTable};
use bellman_envs::{Env, Info, Space, Step};

/// A deterministic 2x3 grid: start 0, goal 5 (+1, terminal), reward -0.1 per other step; actions L/D/R/U.
fn small_grid() -> TableMdp {
    let mut t = TransitionTable::builder(6, 4);
    for s in 0..6 {
        let (r, c) = ((s / 3) as i64, (s % 3) as i64);
        for (dr, dc) in [(0i64, -1i64), (1, 0), (0, 1), (-1, 0)] {
            if s == 5 {
                t.push(Outcome { prob: 1.0, next_state: 5, reward: 0.0, terminal: true });
            } else {
                let (nr, nc) = (r + dr, c + dc);
                let n = if (0..2).contains(&nr) && (0..3).contains(&nc) { (nr * 3 + nc) as usize } else { s };
                let goal = n == 5;
                t.push(Outcome { prob: 1.0, next_state: n, reward: if goal { 1.0 } else { -0.1 }, terminal: goal });
            }
            t.end_action();
        }
    }
    let mut isd = vec![0.0; 6];
    isd[0] = 1.0;
    TableMdp::new(t.build().unwrap(), isd).unwrap().with_grid(2, 3).unwrap()
}

#[test]
fn q_learning_converges_to_the_optimal_q_on_a_deterministic_grid() {
    let mdp = small_grid();
    let vi = value_iteration(&CompiledMdp::compile(&mdp).unwrap(), &ViOptions::new(0.9)).unwrap();
    let mut env = MdpEnv::new(mdp);
    // epsilon 1: a uniformly random behaviour visits every (s, a) often; alpha 0.5 on a deterministic MDP
    // contracts to Q* geometrically.
    let cfg = TabularConfig { gamma: 0.9, alpha: 0.5, epsilon: 1.0, ..Default::default() };
    let run = run_episodes(&cfg, &mut env, 3000, 1).unwrap();
    for s in 0..5 {
        for a in 0..4 {
            let (got, want) = (run.learner.q()[s * 4 + a], vi.q[s * 4 + a]);
            assert!((got - want).abs() < 1e-9, "Q[{s}][{a}] = {got}, Q* = {want}");
        }
    }
    assert_eq!(run.learner.q()[20..24], [0.0; 4]); // the terminal state is never updated
}

#[test]
fn expected_sarsa_and_sarsa_with_decaying_epsilon_find_the_optimal_path() {
    let mdp = small_grid();
    let vi = value_iteration(&CompiledMdp::compile(&mdp).unwrap(), &ViOptions::new(0.9)).unwrap();
    for algorithm in [TdAlgorithm::Sarsa, TdAlgorithm::ExpectedSarsa] {
        let mut env = MdpEnv::new(mdp.clone());
        let cfg = TabularConfig {
            algorithm,
            gamma: 0.9,
            alpha: 0.5,
            epsilon: 0.5,
            epsilon_final: Some(0.0),
            decay_episodes: 400,
            ..Default::default()
        };
        let run = run_episodes(&cfg, &mut env, 800, 2).unwrap();
        // The greedy episodes at the end take the shortest path: 3 steps, return -0.1 - 0.1 + 1.
        assert_eq!(run.lengths[799], 3, "{algorithm:?}");
        assert!((run.returns[799] - 0.8).abs() < 1e-12);
        // On that path the learned Q equals Q* (greedy targets once epsilon is 0).
        let a0 = run.learner.greedy_action(0).unwrap();
        assert!((run.learner.q()[a0] - vi.values[0]).abs() < 1e-9, "{algorithm:?}: {}", run.learner.q()[a0]);
    }
}

#[test]
fn runs_are_reproducible_from_the_seed() {
    let cfg = TabularConfig { gamma: 0.9, alpha: 0.3, epsilon: 0.3, ..Default::default() };
    let a = run_episodes(&cfg, &mut MdpEnv::new(small_grid()), 100, 7).unwrap();
    let b = run_episodes(&cfg, &mut MdpEnv::new(small_grid()), 100, 7).unwrap();
    let c = run_episodes(&cfg, &mut MdpEnv::new(small_grid()), 100, 8).unwrap();
    assert_eq!(a.lengths, b.lengths);
    assert_eq!(a.learner.q(), b.learner.q());
    assert_ne!(a.lengths, c.lengths);
}

/// One state, four actions, each ending the episode with reward 0 in its own terminal state: `Q` stays 0, so
/// the greedy choice is a four-way tie every time. Counts the actions taken.
struct TieBandit {
    counts: [u64; 4],
    space_obs: Space,
    space_act: Space,
}

impl Env for TieBandit {
    type Obs = usize;
    type Action = usize;
    fn observation_space(&self) -> &Space {
        &self.space_obs
    }
    fn action_space(&self) -> &Space {
        &self.space_act
    }
    fn reset(&mut self, _seed: Option<u64>) -> bellman_envs::Result<(usize, Info)> {
        Ok((0, Info::default()))
    }
    fn step(&mut self, a: usize) -> bellman_envs::Result<Step<usize>> {
        self.counts[a] += 1;
        Ok(Step { obs: 1 + a, reward: 0.0, terminated: true, truncated: false, info: Info::default() })
    }
}

#[test]
fn greedy_ties_are_broken_uniformly_at_random() {
    let mut env = TieBandit { counts: [0; 4], space_obs: Space::Discrete(5), space_act: Space::Discrete(4) };
    let cfg = TabularConfig { epsilon: 0.0, ..Default::default() };
    run_episodes(&cfg, &mut env, 8000, 3).unwrap();
    // Each count is Binomial(8000, 1/4): mean 2000, sd 38.7; 5 sd = 194.
    for c in env.counts {
        assert!((c as i64 - 2000).abs() < 194, "{:?}", env.counts);
    }
}

#[test]
fn schedules_are_linear_then_constant() {
    let s = Schedule { start: 0.5, end: 0.1, episodes: 4 };
    assert_eq!([s.at(0), s.at(2), s.at(4), s.at(100)], [0.5, 0.3, 0.1, 0.1]);
    assert_eq!(Schedule { start: 0.2, end: 0.0, episodes: 0 }.at(9), 0.2);
}

#[test]
fn bad_config_and_spaces_are_clear_errors() {
    for (cfg, needle) in [
        (TabularConfig { gamma: 1.2, ..Default::default() }, "gamma = 1.2 is outside [0, 1]"),
        (TabularConfig { alpha: 0.0, ..Default::default() }, "alpha = 0 is outside (0, 1]"),
        (TabularConfig { epsilon: -0.1, ..Default::default() }, "epsilon = -0.1 is outside [0, 1]"),
        (TabularConfig { epsilon_final: Some(2.0), ..Default::default() }, "epsilon_final = 2"),
        (TabularConfig { q_init: f64::NAN, ..Default::default() }, "q_init = NaN"),
        (TabularConfig { max_episodes: Some(0), ..Default::default() }, "max_episodes = 0"),
    ] {
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains(needle), "{e}");
    }
    let boxed = Space::Box(bellman_envs::BoxSpace::new(vec![0.0; 2], vec![1.0; 2]).unwrap());
    let e = discrete_sizes(&boxed, &Space::Discrete(2)).unwrap_err().to_string();
    assert!(e.contains("discrete observation space"), "{e}");
    let e = TabularTrainer::new(&TabularConfig::default(), &EnvSetup::new("CartPole-v1"), 0).unwrap_err().to_string();
    assert!(e.contains("no transition model") && e.contains("FrozenLake-v1"), "{e}");
    // Config files are strict: an unknown key is an error.
    let e = serde_json::from_str::<TabularConfig>(r#"{"alpa": 0.5}"#).unwrap_err().to_string();
    assert!(e.contains("alpa"), "{e}");
    let cfg: TabularConfig = serde_json::from_str(r#"{"algorithm": "expected_sarsa", "alpha": 0.5}"#).unwrap();
    assert_eq!((cfg.algorithm, cfg.alpha, cfg.gamma), (TdAlgorithm::ExpectedSarsa, 0.5, 0.99));
}

fn frozen_setup() -> EnvSetup {
    EnvSetup { id: "FrozenLake-v1".into(), options: vec!["is_slippery=false".into()] }
}

#[test]
fn trainer_reports_episodes_and_learns_deterministic_frozen_lake() {
    let cfg = TabularConfig { gamma: 0.95, alpha: 0.5, epsilon: 0.2, ..Default::default() };
    let mut t = TabularTrainer::new(&cfg, &frozen_setup(), 0).unwrap();
    let mut rep = VecReporter::default();
    t.train(3000, &mut rep).unwrap();
    assert!(t.steps_done() == 3000);
    let lens: u64 = rep.episodes.iter().map(|e| e.len).sum();
    assert!(lens <= 3000 && 3000 - lens < 100, "episode lengths sum to {lens}");
    assert!(rep.episodes.windows(2).all(|w| w[1].episode == w[0].episode + 1 && w[1].step > w[0].step));
    assert_eq!(rep.metrics.len(), 1);
    let eval = t.evaluate(5, 100).unwrap();
    assert_eq!(eval.returns, vec![1.0; 5]);
    assert_eq!(eval.lengths, vec![6; 5]); // the shortest path from S to G on the 4x4 map
}

#[test]
fn checkpoint_round_trip_resumes_exactly() {
    let cfg = TabularConfig { gamma: 0.99, alpha: 0.2, epsilon: 0.3, ..Default::default() };
    let setup = EnvSetup::new("FrozenLake-v1");
    // Reference: 120 episodes in one go.
    let mut full = TabularTrainer::new(&TabularConfig { max_episodes: Some(120), ..cfg.clone() }, &setup, 5).unwrap();
    let mut rep_full = VecReporter::default();
    full.train(u64::MAX, &mut rep_full).unwrap();
    assert_eq!(full.episodes_done(), 120);
    // 60 episodes, checkpoint, restore into a fresh trainer, 60 more.
    let mut first = TabularTrainer::new(&TabularConfig { max_episodes: Some(60), ..cfg.clone() }, &setup, 5).unwrap();
    first.train(u64::MAX, &mut VecReporter::default()).unwrap();
    let ck = first.checkpoint().unwrap();
    assert_eq!(ck.meta["episodes"], 60);
    let mut second = TabularTrainer::new(&TabularConfig { max_episodes: Some(120), ..cfg }, &setup, 999).unwrap();
    second.restore(&ck).unwrap();
    assert_eq!(second.steps_done(), first.steps_done());
    let mut rep = VecReporter::default();
    second.train(u64::MAX, &mut rep).unwrap();
    assert_eq!(second.learner().q(), full.learner().q());
    let tail: Vec<f64> = rep_full.episodes[60..].iter().map(|e| e.ret).collect();
    assert_eq!(rep.episodes.iter().map(|e| e.ret).collect::<Vec<_>>(), tail);
    assert_eq!(second.steps_done(), full.steps_done());
    // The weights are a plain safetensors file with an F64 tensor "q" of shape [16, 4].
    let st = safetensors::SafeTensors::deserialize(&ck.weights).unwrap();
    let q = st.tensor("q").unwrap();
    assert_eq!((q.dtype(), q.shape()), (safetensors::Dtype::F64, &[16usize, 4][..]));
}

#[test]
fn restore_rejects_bad_checkpoints() {
    let cfg = TabularConfig::default();
    let mut t = TabularTrainer::new(&cfg, &frozen_setup(), 0).unwrap();
    let good = t.checkpoint().unwrap();
    let garbage = Checkpoint { weights: vec![1, 2, 3], ..good.clone() };
    assert!(t.restore(&garbage).unwrap_err().to_string().contains("not a safetensors file"));
    let taxi = TabularTrainer::new(&cfg, &EnvSetup::new("Taxi-v4"), 0).unwrap().checkpoint().unwrap();
    let e = t.restore(&Checkpoint { meta: good.meta.clone(), ..taxi }).unwrap_err().to_string();
    assert!(e.contains("[500, 6]") && e.contains("[16, 4]"), "{e}");
    let mut meta = good.meta.clone();
    meta["episodes"] = serde_json::json!(-3);
    let e = t.restore(&Checkpoint { meta, ..good.clone() }).unwrap_err().to_string();
    assert!(e.contains("episodes") && e.contains("-3"), "{e}");
    let mut meta = good.meta.clone();
    meta["format"] = serde_json::json!("something-else");
    assert!(t.restore(&Checkpoint { meta, ..good.clone() }).unwrap_err().to_string().contains("format"));
    let bytes = vec![0u8; 16 * 4 * 4];
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![16, 4], &bytes).unwrap();
    let f32_weights = safetensors::serialize([("q", view)], None).unwrap();
    let e = t.restore(&Checkpoint { weights: f32_weights, ..good.clone() }).unwrap_err().to_string();
    assert!(e.contains("F32") && e.contains("F64"), "{e}");
    t.restore(&good).unwrap();
}

/// A user model that forgets the outcomes of one action: stepping it is an error naming the pair, not a panic.
struct Holey;

impl bellman_envs::Mdp for Holey {
    fn num_states(&self) -> usize {
        2
    }
    fn num_actions(&self) -> usize {
        2
    }
    fn outcomes(&self, _s: usize, a: usize) -> &[Outcome] {
        const STAY: [Outcome; 1] = [Outcome { prob: 1.0, next_state: 1, reward: 1.0, terminal: false }];
        if a == 0 { &STAY } else { &[] }
    }
    fn initial_distribution(&self) -> &[f64] {
        &[1.0, 0.0]
    }
}

#[test]
fn bad_models_are_errors_not_panics() {
    let mut env = MdpEnv::new(Holey);
    env.reset(Some(0)).unwrap();
    assert_eq!(env.step(0).unwrap().obs, 1);
    let e = env.step(1).unwrap_err().to_string();
    assert!(e.contains("no outcome for state 1, action 1"), "{e}");
    let mut t = TransitionTable::builder(2, 1);
    for _ in 0..2 {
        t.push(Outcome { prob: 1.0, next_state: 0, reward: 0.0, terminal: false });
        t.end_action();
    }
    let e = TableMdp::new(t.build().unwrap(), vec![0.5, 0.6]).unwrap_err().to_string();
    assert!(e.contains("sums to 1.1"), "{e}");
}
