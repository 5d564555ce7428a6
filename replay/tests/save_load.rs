//! Save and load: exact round trips, atomic writes, clear errors for other versions and truncated files.
use bellman_replay::{
    Batch, FlatStorage, FrameStackStorage, PrioritizedReplayBuffer, ReplayBuffer, ReplayError, Storage, Transition,
};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

fn flat() -> ReplayBuffer<FlatStorage<f32, i64>> {
    let mut buf = ReplayBuffer::flat::<f32, i64>(50, &[2, 2], 1).unwrap();
    let mut rng = Pcg64::seed_from_u64(0);
    for i in 0..73 {
        let o: Vec<f32> = (0..4).map(|_| rng.random()).collect();
        let n: Vec<f32> = (0..4).map(|_| rng.random()).collect();
        buf.push(&Transition {
            obs: &o,
            action: &[i % 3],
            reward: i as f32,
            next_obs: &n,
            terminated: i % 5 == 0,
            truncated: i % 7 == 0,
            discount: 0.97,
        })
        .unwrap();
    }
    buf
}

fn same_samples<S: Storage>(a: &ReplayBuffer<S>, b: &ReplayBuffer<S>)
where
    S::Obs: PartialEq,
{
    let (mut x, mut y) = (Batch::new(), Batch::new());
    a.sample(64, &mut Pcg64::seed_from_u64(9), &mut x).unwrap();
    b.sample(64, &mut Pcg64::seed_from_u64(9), &mut y).unwrap();
    assert_eq!(x, y);
}

#[test]
fn flat_round_trip_and_pushes_continue_identically() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("buf.bin");
    let mut a = flat();
    a.save(&path).unwrap();
    let mut b = ReplayBuffer::<FlatStorage<f32, i64>>::load(&path).unwrap();
    assert_eq!(a.storage(), b.storage());
    same_samples(&a, &b);
    let t = Transition {
        obs: &[1.0; 4],
        action: &[2],
        reward: 1.0,
        next_obs: &[2.0; 4],
        terminated: false,
        truncated: false,
        discount: 0.9,
    };
    assert_eq!(a.push(&t).unwrap(), b.push(&t).unwrap());
    assert_eq!(a.storage(), b.storage());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left behind");
}

#[test]
fn frame_and_prioritized_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Pcg64::seed_from_u64(4);
    let mut frames = ReplayBuffer::frame_stack::<i64>(30, 4, &[3, 3], 1).unwrap();
    let mut per =
        PrioritizedReplayBuffer::new(FrameStackStorage::<i64>::new(30, 4, &[3, 3], 1).unwrap(), 0.6, 1e-6).unwrap();
    let mut stack: Vec<u8> = vec![7; 36];
    for i in 0..80 {
        let mut next = stack[9..].to_vec();
        next.extend((0..9).map(|_| rng.random::<u8>()));
        let t = Transition {
            obs: &stack,
            action: &[i],
            reward: 0.5,
            next_obs: &next,
            terminated: i % 13 == 12,
            truncated: false,
            discount: 0.9,
        };
        frames.push(&t).unwrap();
        per.push(&t).unwrap();
        stack = if i % 13 == 12 { vec![rng.random(); 36] } else { next };
    }
    let mut batch = Batch::new();
    per.sample(16, 0.5, &mut rng, &mut batch).unwrap();
    let td: Vec<f32> = (0..16).map(|k| k as f32 - 8.0).collect();
    per.update_priorities(&batch.indices, &td).unwrap();

    let p1 = dir.path().join("frames.bin");
    frames.save(&p1).unwrap();
    let f2 = ReplayBuffer::<FrameStackStorage<i64>>::load(&p1).unwrap();
    same_samples(&frames, &f2);
    assert_eq!(f2.storage().frames_stored(), frames.storage().frames_stored());

    let p2 = dir.path().join("per.bin");
    per.save(&p2).unwrap();
    let per2 = PrioritizedReplayBuffer::<FrameStackStorage<i64>>::load(&p2).unwrap();
    assert_eq!(per2.total_priority(), per.total_priority());
    assert_eq!(per2.max_priority(), per.max_priority());
    let (mut x, mut y) = (Batch::new(), Batch::new());
    per.sample(32, 0.7, &mut Pcg64::seed_from_u64(1), &mut x).unwrap();
    per2.sample(32, 0.7, &mut Pcg64::seed_from_u64(1), &mut y).unwrap();
    assert_eq!(x, y);
    // a prioritised file is not a uniform one
    let err = ReplayBuffer::<FrameStackStorage<i64>>::load(&p2).unwrap_err().to_string();
    assert!(err.contains("'prioritized' buffer, expected 'uniform'"), "{err}");
}

fn format_err(r: Result<impl std::fmt::Debug, ReplayError>) -> String {
    match r {
        Err(ReplayError::Format { msg, .. }) => msg,
        other => panic!("expected a format error, got {other:?}"),
    }
}

#[test]
fn other_version_truncated_or_mismatched_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("buf.bin");
    flat().save(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();

    let mut v2 = bytes.clone();
    v2[8..12].copy_from_slice(&2u32.to_le_bytes());
    let p = dir.path().join("v2.bin");
    std::fs::write(&p, &v2).unwrap();
    let msg = format_err(ReplayBuffer::<FlatStorage<f32, i64>>::load(&p));
    assert!(msg.contains("format version 2, this build reads only version 1"), "{msg}");

    for cut in [0, 5, 30, bytes.len() / 2, bytes.len() - 1] {
        let p = dir.path().join("cut.bin");
        std::fs::write(&p, &bytes[..cut]).unwrap();
        let msg = format_err(ReplayBuffer::<FlatStorage<f32, i64>>::load(&p));
        assert!(msg.contains("truncated") || msg.contains("end marker"), "cut {cut}: {msg}");
    }
    let mut extra = bytes.clone();
    extra.push(0);
    let p = dir.path().join("extra.bin");
    std::fs::write(&p, &extra).unwrap();
    assert!(format_err(ReplayBuffer::<FlatStorage<f32, i64>>::load(&p)).contains("after the end marker"));

    let msg = format_err(ReplayBuffer::<FlatStorage<u8, i64>>::load(&path));
    assert!(msg.contains("u8 observations"), "{msg}");
    let msg = format_err(ReplayBuffer::<FrameStackStorage<i64>>::load(&path));
    assert!(msg.contains("'flat' storage, expected 'frames'"), "{msg}");
    std::fs::write(&p, b"not a replay file at all").unwrap();
    assert!(format_err(ReplayBuffer::<FlatStorage<f32, i64>>::load(&p)).contains("not a Bellman replay file"));
    assert!(matches!(
        ReplayBuffer::<FlatStorage<f32, i64>>::load(dir.path().join("missing.bin")),
        Err(ReplayError::Io { .. })
    ));
}

#[test]
fn failed_save_leaves_the_old_file_intact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("buf.bin");
    flat().save(&path).unwrap();
    let before = std::fs::read(&path).unwrap();
    // saving into a missing directory fails and touches nothing
    assert!(flat().save(dir.path().join("nope").join("buf.bin")).is_err());
    assert_eq!(std::fs::read(&path).unwrap(), before);
}
