#![cfg(feature = "atari")]
//! Pixel actors (`--actors N` on Atari) end to end on Pong (feature `atari`; skipped with a SKIPPED line when the
//! ROMs are missing, a failure under `BELLMAN_REQUIRE_ROMS=1`). Tiny budgets: the Nature CNN is slow on a CPU.
use bellman_agents::actors::pixels::ApexPixelTrainer;
use bellman_agents::actors::{ActorEpsilon, ApexConfig};
use bellman_agents::dqn::network::Arch;
use bellman_agents::dqn::{DqnConfig, optim::OptimizerKind};
use bellman_agents::trainer::{EnvSetup, Trainer, VecReporter};

#[path = "common/atari.rs"]
mod atari;
use atari::{pong, roms_available};

/// pong-dqn-fast's components (Double, dueling, 3-step returns, PER, Adam) at a tiny size.
fn tiny() -> DqnConfig {
    DqnConfig {
        network: Arch::NatureCnn,
        hidden: vec![32],
        dueling: true,
        double_dqn: true,
        n_step: 3,
        prioritized: true,
        optimizer: OptimizerKind::Adam,
        learning_rate: 1e-3,
        buffer_size: 1000,
        batch_size: 8,
        learning_starts: 60,
        train_freq: 4,
        gradient_steps: 1,
        target_update_interval: 50,
        exploration_fraction: 0.5,
        total_steps: Some(300),
        metrics_every: 50,
        ..DqnConfig::default()
    }
}

#[test]
fn pixel_actors_train_pong_end_to_end() {
    if !roms_available("pixel_actors_train_pong_end_to_end") {
        return;
    }
    let cfg = tiny();
    let apex = ApexConfig { send_batch: 8, ..ApexConfig::default() };
    let mut t = ApexPixelTrainer::new(&cfg, &apex, 2, &pong(), 7, "cpu").unwrap();
    let probe: Vec<u8> = (0..t.obs_len()).map(|i| (i % 251) as u8).collect();
    let q0 = t.q_values(&probe).unwrap();
    assert_eq!(q0.len(), 6, "Pong's minimal action set has 6 actions");
    let mut rep = VecReporter::default();
    t.train(150, &mut rep).unwrap();
    t.train(300, &mut rep).unwrap();
    assert!(t.steps_done() >= 300);
    let c = t.shutdown().unwrap();
    // Every transition accounted for; 3-step returns: each actor's transitions lag its steps by at most 2.
    assert_eq!(c.sent, c.received, "{c:?}");
    assert_eq!(c.received, c.inserted + c.discarded, "{c:?}");
    assert!(c.env_steps_sent >= c.sent && c.env_steps_sent <= c.sent + 2 * 2, "{c:?}");
    assert_eq!(t.replay_len() as u64, c.inserted.min(1000));
    // 4 samples per insert (batch 8 / train_freq 4), past 60 inserts: some updates, kept in the band.
    assert!(c.updates >= 10, "{c:?}");
    assert_eq!(t.updates_done(), c.updates);
    let q1 = t.q_values(&probe).unwrap();
    assert!(q0.iter().zip(&q1).any(|(a, b)| (a - b).abs() > 1e-6), "Q-values did not change: {q0:?} {q1:?}");
    let losses: Vec<f64> = rep.metrics.iter().filter_map(|m| m.loss).collect();
    assert!(!losses.is_empty() && losses.iter().all(|l| l.is_finite() && *l >= 0.0), "{losses:?}");
    assert!(rep.metrics.iter().filter_map(|m| m.mean_q).all(f64::is_finite));
    let m = rep.metrics.last().unwrap();
    let get = |k: &str| m.extra.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
    assert_eq!(get("actors"), Some(2.0));
    assert!(get("actor_send_cpu_fraction").is_some_and(|f| (0.0..=1.0).contains(&f)));
    // 400-frame truncation: episodes of at most 100 steps with Pong's returns, tagged with an actor id.
    assert!(!rep.episodes.is_empty());
    assert!(rep.episodes.iter().all(|e| e.len <= 100 && (-21.0..=21.0).contains(&e.ret) && e.actor < 2));
    // Greedy evaluation, and a checkpoint round trip evaluates identically.
    let ev = t.evaluate(1, 11).unwrap();
    assert!((91..=100).contains(&ev.lengths[0]), "{ev:?}");
    let ck = t.checkpoint().unwrap();
    assert_eq!(ck.meta["actors"], 2);
    let mut fresh = ApexPixelTrainer::new(&cfg, &apex, 1, &pong(), 3, "cpu").unwrap();
    fresh.restore(&ck).unwrap();
    assert_eq!(fresh.evaluate(1, 11).unwrap(), ev);
    assert_eq!(fresh.q_values(&probe).unwrap(), q1);
}

/// `bellman train --resume` of pixel Ape-X: the learner's optimiser state (Adam's moments and step), target
/// network and frame-deduplicated replay buffer round-trip exactly through a checkpoint and `save_replay`; the
/// report says not exact (the actors' Atari envs restart); training continues from the restored counters.
#[test]
fn pixel_actors_resume_round_trips_the_learner_state() {
    if !roms_available("pixel_actors_resume_round_trips_the_learner_state") {
        return;
    }
    let cfg = tiny();
    let apex = ApexConfig { send_batch: 8, ..ApexConfig::default() };
    let mut t = ApexPixelTrainer::new(&cfg, &apex, 2, &pong(), 7, "cpu").unwrap();
    t.train(120, &mut VecReporter::default()).unwrap();
    t.shutdown().unwrap();
    assert!(t.updates_done() >= 5, "{} updates", t.updates_done());
    let ck = t.checkpoint().unwrap();
    assert_eq!(ck.meta["learner"]["optimizer"]["kind"], "adam");
    assert_eq!(ck.meta["learner"]["optimizer"]["step"], ck.meta["updates"]);
    let path = std::env::temp_dir().join(format!("bellman-actors-atari-resume-{}.replay", std::process::id()));
    assert!(t.save_replay(&path).unwrap());

    let mut r = ApexPixelTrainer::new(&cfg, &apex, 2, &pong(), 7, "cpu").unwrap();
    let report = r.resume(&ck, Some(&path)).unwrap();
    assert!(!report.exact, "{report}");
    assert!(report.notes[0].contains("Atari env starts a new episode"), "{report}");
    assert!(!report.to_string().contains("replay buffer was not saved"), "{report}");
    let rc = r.checkpoint().unwrap();
    assert_eq!((&rc.weights, &rc.train_state), (&ck.weights, &ck.train_state), "weights, target, optimiser");
    assert_eq!(rc.meta["learner"], ck.meta["learner"], "optimiser step, replay generator and counts");
    assert_eq!(r.replay_len(), t.replay_len());
    assert_eq!((r.steps_done(), r.updates_done()), (t.steps_done(), t.updates_done()));
    let probe: Vec<u8> = (0..t.obs_len()).map(|i| (i % 251) as u8).collect();
    assert_eq!(r.q_values(&probe).unwrap(), t.q_values(&probe).unwrap());
    r.train(t.steps_done() + 80, &mut VecReporter::default()).unwrap();
    r.shutdown().unwrap();
    assert!(r.steps_done() >= t.steps_done() + 80);
    assert!(r.updates_done() > t.updates_done(), "the restored learner keeps learning");
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn pixel_actors_reject_bad_setups() {
    if !roms_available("pixel_actors_reject_bad_setups") {
        return;
    }
    let apex = ApexConfig { epsilon: ActorEpsilon::Schedule, ..ApexConfig::default() };
    let e = ApexPixelTrainer::new(&tiny(), &apex, 2, &EnvSetup::new("ALE/Pong-v5"), 0, "cpu").unwrap_err().to_string();
    assert!(e.contains("preprocess=true"), "{e}");
    let mlp = DqnConfig { network: Arch::Mlp, ..tiny() };
    let e = ApexPixelTrainer::new(&mlp, &apex, 2, &pong(), 0, "cpu").unwrap_err().to_string();
    assert!(e.contains("nature_cnn"), "{e}");
    let e = ApexPixelTrainer::new(&tiny(), &apex, 0, &pong(), 0, "cpu").unwrap_err().to_string();
    assert!(e.contains("actors = 0"), "{e}");
    let big = DqnConfig { learning_starts: 5_000, ..tiny() };
    let e = ApexPixelTrainer::new(&big, &apex, 2, &pong(), 0, "cpu").unwrap_err().to_string();
    assert!(e.contains("learning_starts = 5000"), "{e}");
}
