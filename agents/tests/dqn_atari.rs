#![cfg(feature = "atari")]
//! Pixel DQN end to end on Pong (feature `atari`; skipped with a SKIPPED line when the ROMs are missing, a failure
//! under `BELLMAN_REQUIRE_ROMS=1`). Tiny budgets: the Nature CNN is slow on a CPU.
use bellman_agents::dqn::network::Arch;
use bellman_agents::dqn::pixels::PixelDqnTrainer;
use bellman_agents::dqn::{DqnConfig, optim::OptimizerKind};
use bellman_agents::trainer::{EnvSetup, Trainer, VecReporter};

#[path = "common/atari.rs"]
mod atari;
use atari::{breakout_episodic, pong, roms_available};
use bellman_envs::atari::AtariEnv;
use bellman_replay::{Batch, FrameReplay};

fn tiny() -> DqnConfig {
    DqnConfig {
        network: Arch::NatureCnn,
        hidden: vec![32],
        buffer_size: 1000,
        batch_size: 8,
        learning_starts: 60,
        train_freq: 4,
        target_update_interval: 50,
        learning_rate: 1e-3,
        exploration_fraction: 0.5,
        total_steps: Some(240),
        n_envs: 2,
        metrics_every: 40,
        ..DqnConfig::default()
    }
}

/// Trains `cfg` for `steps` and returns the reporter, the Q-values of a fixed observation before and after.
fn run(cfg: &DqnConfig, steps: u64) -> (VecReporter, Vec<f32>, Vec<f32>, u64) {
    let mut agent = PixelDqnTrainer::new(cfg, &pong(), 7, "cpu").unwrap();
    // A fixed probe observation: a gradient image in every frame of the stack.
    let probe: Vec<u8> = (0..agent.obs_len()).map(|i| (i % 251) as u8).collect();
    let q0 = agent.q_values(&probe).unwrap();
    let mut rep = VecReporter::default();
    agent.train(steps, &mut rep).unwrap();
    assert!(agent.steps_done() >= steps);
    assert!(agent.replay_len() > 0 && agent.replay_len() <= cfg.buffer_size);
    let q1 = agent.q_values(&probe).unwrap();
    (rep, q0, q1, agent.updates_done())
}

#[test]
fn pixel_dqn_learns_and_is_reproducible() {
    if !roms_available("pixel_dqn_learns_and_is_reproducible") {
        return;
    }
    let cfg = tiny();
    let (a, q0, q1, updates) = run(&cfg, 240);
    // (240 - 60) / 2 envs / train_freq 4 ~ 22 updates.
    assert!(updates >= 15, "only {updates} updates");
    assert_eq!(q0.len(), 6, "Pong's minimal action set has 6 actions");
    assert!(q0.iter().zip(&q1).any(|(x, y)| (x - y).abs() > 1e-6), "Q-values did not change: {q0:?} {q1:?}");
    let losses: Vec<f64> = a.metrics.iter().filter_map(|m| m.loss).collect();
    assert!(!losses.is_empty(), "no loss reported");
    assert!(losses.iter().all(|l| l.is_finite() && *l >= 0.0), "{losses:?}");
    assert!(a.metrics.iter().filter_map(|m| m.mean_q).all(f64::is_finite));
    // 400-frame truncation: every episode is at most 100 steps, and 240 steps over 2 envs finish at least 2.
    assert!(a.episodes.len() >= 2, "{:?}", a.episodes);
    assert!(a.episodes.iter().all(|e| e.len <= 100 && (-21.0..=21.0).contains(&e.ret)), "{:?}", a.episodes);
    // Same seed, same episodes and the same learned Q-values, bit for bit.
    let (b, _, q1b, _) = run(&cfg, 240);
    assert_eq!(a.episodes.iter().map(|e| (e.step, e.ret, e.len)).collect::<Vec<_>>(), {
        b.episodes.iter().map(|e| (e.step, e.ret, e.len)).collect::<Vec<_>>()
    });
    assert_eq!(q1, q1b);
}

#[test]
fn pixel_dqn_rainbow_parts_and_eval() {
    if !roms_available("pixel_dqn_rainbow_parts_and_eval") {
        return;
    }
    let cfg = DqnConfig {
        double_dqn: true,
        dueling: true,
        n_step: 3,
        prioritized: true,
        optimizer: OptimizerKind::Rmsprop,
        learning_rate: 2.5e-4,
        ..tiny()
    };
    let (rep, q0, q1, updates) = run(&cfg, 160);
    assert!(updates >= 8, "only {updates} updates");
    assert!(q0.iter().zip(&q1).any(|(x, y)| (x - y).abs() > 1e-6));
    assert!(rep.metrics.iter().filter_map(|m| m.loss).all(f64::is_finite));
    // Greedy evaluation: truncated at 400 frames, of which up to 30 no-ops and 2 FIRE-reset steps come before
    // the first agent step (so 91..=100 steps); reproducible for the same seed.
    let mut agent = PixelDqnTrainer::new(&cfg, &pong(), 3, "cpu").unwrap();
    let e1 = agent.evaluate(1, 11).unwrap();
    let e2 = agent.evaluate(1, 11).unwrap();
    assert_eq!(e1, e2);
    assert!((91..=100).contains(&e1.lengths[0]), "{e1:?}");
}

#[test]
fn pixel_dqn_rejects_bad_setups() {
    if !roms_available("pixel_dqn_rejects_bad_setups") {
        return;
    }
    let raw = EnvSetup::new("ALE/Pong-v5");
    let e = PixelDqnTrainer::new(&tiny(), &raw, 0, "cpu").unwrap_err().to_string();
    assert!(e.contains("preprocess=true"), "{e}");
    let mlp = DqnConfig { network: Arch::Mlp, ..tiny() };
    let e = PixelDqnTrainer::new(&mlp, &pong(), 0, "cpu").unwrap_err().to_string();
    assert!(e.contains("nature_cnn"), "{e}");
    let e = PixelDqnTrainer::new(&tiny(), &EnvSetup::new("ALE/Pong"), 0, "cpu").unwrap_err().to_string();
    assert!(e.contains("ALE/<Game>-v5"), "{e}");
}

fn tmp_path(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("bellman-dqn-atari-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// The checkpoint's state but the env seed, which a resume rederives: (train-state bytes, meta without it).
fn state_of(t: &PixelDqnTrainer) -> (Vec<u8>, Vec<u8>, serde_json::Value) {
    let ck = t.checkpoint().unwrap();
    let mut meta = ck.meta.clone();
    meta.as_object_mut().unwrap().remove("env_seed");
    (ck.weights, ck.train_state.unwrap(), meta)
}

/// Checkpointed mid-run (episodes in progress) with its replay buffer and resumed in a fresh trainer, the pixel
/// DQN continues its learner exactly: the same weights, target network, optimiser moments, generators, counters
/// and metrics sums right after the resume, and the same next update (so the same replay-sampled batch and the
/// same Adam/RMSProp step). The Atari envs restart new episodes, and the report says so: not exact.
#[test]
fn pixel_dqn_resume_continues_the_learner_exactly() {
    if !roms_available("pixel_dqn_resume_continues_the_learner_exactly") {
        return;
    }
    let rainbow = DqnConfig {
        double_dqn: true,
        n_step: 3,
        prioritized: true,
        optimizer: OptimizerKind::Rmsprop,
        learning_rate: 2.5e-4,
        ..tiny()
    };
    for (name, cfg) in [("adam", tiny()), ("per-nstep-rmsprop", rainbow)] {
        let mut full = PixelDqnTrainer::new(&cfg, &pong(), 7, "cpu").unwrap();
        // 90 steps: 2 envs mid-episode (episodes are up to 100 steps), ~4 updates past learning_starts = 60.
        full.train(90, &mut VecReporter::default()).unwrap();
        assert!(full.updates_done() >= 3, "{name}: {} updates", full.updates_done());
        let ck = full.checkpoint().unwrap();
        let path = tmp_path(&format!("{name}.replay"));
        assert!(full.save_replay(&path).unwrap());
        assert!(full.replay_bytes().is_some_and(|b| b > 0));

        let mut resumed = PixelDqnTrainer::new(&cfg, &pong(), 7, "cpu").unwrap();
        let report = resumed.resume(&ck, Some(&path)).unwrap();
        assert!(!report.exact, "{name}: {report}");
        assert_eq!(report.notes.len(), 1, "{name}: only the envs differ: {report}");
        assert!(report.notes[0].contains("the Atari envs restart their episodes"), "{name}: {report}");
        let seed = resumed.checkpoint().unwrap().meta["env_seed"].as_u64().unwrap();
        assert_ne!(seed, 7, "{name}: the envs must not replay the run's first episodes");
        assert!(report.notes[0].contains(&seed.to_string()), "{name}: the derived seed is reported: {report}");
        // Everything but the envs equals the original's: weights, target, optimiser moments and step, metrics
        // sums (train state); generators, counters, schedules, replay counts (meta).
        let (a, b) = (state_of(&full), state_of(&resumed));
        assert_eq!(a.0, b.0, "{name}: weights");
        assert_eq!(a.1, b.1, "{name}: target network, optimiser state, metrics sums");
        assert_eq!(a.2, b.2, "{name}: generators and counters");
        assert!(a.2["optimizer"]["step"].as_u64().unwrap() >= 3, "{name}: {}", a.2["optimizer"]);
        assert_eq!(resumed.replay_len(), full.replay_len());
        assert_eq!(resumed.steps_done(), full.steps_done());
        // The next update: the same sampled batch, the same optimiser step, bit for bit.
        full.gradient_step().unwrap();
        resumed.gradient_step().unwrap();
        let (a, b) = (state_of(&full), state_of(&resumed));
        assert_eq!(a.0, b.0, "{name}: weights after the next update");
        assert_eq!(a.1, b.1, "{name}: optimiser state after the next update");
        assert_eq!(a.2, b.2, "{name}: generators after the next update");
        // Training goes on from the restored counters on the restarted envs.
        resumed.train(110, &mut VecReporter::default()).unwrap();
        assert!(resumed.steps_done() >= 110 && resumed.updates_done() > full.updates_done(), "{name}");

        // Without the buffer: not exact, and learning waits for it to refill.
        let mut refill = PixelDqnTrainer::new(&cfg, &pong(), 7, "cpu").unwrap();
        let report = refill.resume(&ck, None).unwrap();
        assert!(report.notes.iter().any(|n| n.contains("replay buffer was not saved")), "{name}: {report}");
        let updates = refill.updates_done();
        refill.train(110, &mut VecReporter::default()).unwrap();
        assert_eq!(refill.updates_done(), updates, "{name}: no update before the buffer refills");
        // A buffer of another checkpoint is refused.
        let mut other = ck.clone();
        other.meta["replay_pushed"] = serde_json::json!(1);
        let e = PixelDqnTrainer::new(&cfg, &pong(), 7, "cpu").unwrap().resume(&other, Some(&path)).unwrap_err();
        assert!(e.to_string().contains("belongs to another checkpoint"), "{name}: {e}");
        std::fs::remove_file(&path).unwrap();
    }
}

/// Breakout with SB3's `AtariWrapper` lives (`episodic_life`): the learner's episodes end at every lost life
/// (terminated transitions in the replay buffer), while the reporter (episodes.csv) gets whole games with their
/// raw score. A random-policy run (learning_starts beyond it) is replayed on an independent env from the actions
/// stored in the saved buffer: every transition matches (clipped reward, terminated), the reported episodes are
/// exactly the env's `info.episode` of each game over (len = the game's agent steps, step = where it ended), and
/// each game holds 5 terminated transitions (4 lives lost, then the game over): fewer games than life losses.
/// Evaluation scores whole games too.
#[test]
fn pixel_dqn_reports_whole_games_with_episodic_life() {
    if !roms_available("pixel_dqn_reports_whole_games_with_episodic_life") {
        return;
    }
    let n = 1200;
    let cfg = DqnConfig { learning_starts: 100_000, buffer_size: 2000, n_envs: 1, total_steps: Some(n), ..tiny() };
    let mut agent = PixelDqnTrainer::new(&cfg, &breakout_episodic(), 7, "cpu").unwrap();
    let mut rep = VecReporter::default();
    agent.train(n, &mut rep).unwrap();
    assert_eq!(agent.updates_done(), 0, "a random-policy run");
    let path = tmp_path("breakout-episodic.replay");
    assert!(agent.save_replay(&path).unwrap());
    let replay = FrameReplay::<i64>::load(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(replay.len() as u64, n);

    let mut env = AtariEnv::new(agent.atari_config().clone()).unwrap();
    let mut obs = vec![0u8; env.obs_len()];
    env.reset_into(Some(7), &mut obs).unwrap();
    let (mut games, mut terminated, mut clipped) = (Vec::new(), 0, 0.0);
    let mut batch = Batch::new();
    for start in (0..n as usize).step_by(100) {
        replay.gather(&(start..start + 100).collect::<Vec<_>>(), &mut batch).unwrap();
        for r in 0..100 {
            let out = env.step_into(batch.actions[r] as usize, &mut obs).unwrap();
            let t = start + r;
            assert_eq!(
                (out.reward as f32, out.terminated, out.truncated),
                (batch.rewards[r], batch.terminated[r], batch.truncated[r]),
                "transition {t}"
            );
            terminated += out.terminated as usize;
            clipped += out.reward;
            let mut game = out.info.episode;
            if out.terminated || out.truncated {
                game = game.or(env.reset_into(None, &mut obs).unwrap().episode);
            }
            if let Some(g) = game {
                assert!(g.ret >= clipped, "game {}: raw score {} below the clipped sum {clipped}", games.len(), g.ret);
                games.push((t as u64 + 1, g.ret, g.len));
                clipped = 0.0;
            }
        }
    }
    let reported: Vec<(u64, f64, u64)> = rep.episodes.iter().map(|e| (e.step, e.ret, e.len)).collect();
    assert_eq!(reported, games);
    assert!(games.len() >= 2, "{games:?}");
    let mut prev = 0;
    for &(step, _, len) in &games {
        assert_eq!(len, step - prev, "one env: a game's length is the steps since the previous game");
        prev = step;
    }
    assert!(
        terminated >= 5 * games.len() && terminated < 5 * games.len() + 5,
        "{terminated} terminations, {} games",
        games.len()
    );

    let ev = agent.evaluate(2, 11).unwrap();
    assert_eq!(ev, agent.evaluate(2, 11).unwrap());
    // A whole game is 5 lives: even a ball missed at once takes about 22 agent steps per life (seed 7's random
    // run has 111-step games of 5 such lives), so a game takes over 100 steps where one life would take ~22.
    assert!(ev.lengths.iter().all(|&l| l > 100), "{ev:?}");
    assert!(ev.returns.iter().all(|&r| r >= 0.0 && r.fract() == 0.0), "{ev:?}");
}
