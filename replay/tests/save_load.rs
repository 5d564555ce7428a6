//! Save and load: exact round trips of every storage kind (flat `f32` and `u8`, frame stacks with their per-env
//! frame history, prioritised with priorities) that keep sampling and pushing exactly as the original; atomic
//! writes; clear errors for other versions, truncation at every byte, headers whose sizes do not fit the file
//! (checked before allocating) and corrupt fields.
use bellman_replay::{
    Batch, FlatStorage, FrameStackStorage, PrioritizedReplayBuffer, ReplayBuffer, ReplayError, Storage, Transition,
    WindowBatch,
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
fn flat_u8_with_continuous_actions_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("u8.bin");
    let mut a = ReplayBuffer::flat::<u8, f32>(7, &[3], 2).unwrap();
    for i in 0..5u8 {
        let t = Transition {
            obs: &[i, i + 1, 255 - i],
            action: &[i as f32 * 0.5, -1.25],
            reward: -(i as f32),
            next_obs: &[i + 1, i + 2, 254 - i],
            terminated: i == 4,
            truncated: i == 2,
            discount: 0.5,
        };
        a.push(&t).unwrap();
    }
    a.save(&path).unwrap();
    let b = ReplayBuffer::<FlatStorage<u8, f32>>::load(&path).unwrap();
    assert_eq!(a.storage(), b.storage());
    same_samples(&a, &b);
    // the same file is not one of f32 observations
    let msg = format_err(ReplayBuffer::<FlatStorage<f32, f32>>::load(&path));
    assert!(msg.contains("f32 observations"), "{msg}");
}

/// One transition of a frame-stack episode stream: `4` frames of 3x3 bytes, a new random frame per step, a reset
/// (padded with the first frame) every 13 steps of each env.
struct Frames {
    rng: Pcg64,
    stacks: Vec<Vec<u8>>,
    step: u64,
}

impl Frames {
    fn new(envs: usize, seed: u64) -> Self {
        let mut rng = Pcg64::seed_from_u64(seed);
        let stacks = (0..envs).map(|_| vec![rng.random(); 36]).collect();
        Frames { rng, stacks, step: 0 }
    }
    /// Pushes the next transition of env `step % envs` to `push`.
    fn next(&mut self, mut push: impl FnMut(usize, &Transition<'_, u8, i64>)) {
        let e = (self.step % self.stacks.len() as u64) as usize;
        let stack = &self.stacks[e];
        let mut next = stack[9..].to_vec();
        next.extend((0..9).map(|_| self.rng.random::<u8>()));
        let end = self.step % 13 == 12;
        let t = Transition {
            obs: stack,
            action: &[self.step as i64],
            reward: 0.5,
            next_obs: &next,
            terminated: end,
            truncated: false,
            discount: 0.9,
        };
        push(e, &t);
        self.stacks[e] = if end { vec![self.rng.random(); 36] } else { next };
        self.step += 1;
    }
}

fn frame_buffers(pushes: usize, src: &mut Frames) -> Bufs {
    let mut frames = ReplayBuffer::frame_stack::<i64>(30, 4, &[3, 3], 1).unwrap();
    let mut per =
        PrioritizedReplayBuffer::new(FrameStackStorage::<i64>::new(30, 4, &[3, 3], 1).unwrap(), 0.6, 1e-6).unwrap();
    for _ in 0..pushes {
        src.next(|e, t| {
            frames.push_from(e, t).unwrap();
            per.push_from(e, t).unwrap();
        });
    }
    (frames, per)
}

type Bufs = (ReplayBuffer<FrameStackStorage<i64>>, PrioritizedReplayBuffer<FrameStackStorage<i64>>);

fn assert_same_frames(a: &ReplayBuffer<FrameStackStorage<i64>>, b: &ReplayBuffer<FrameStackStorage<i64>>, seed: u64) {
    assert_eq!(a.storage().frames_stored(), b.storage().frames_stored());
    assert_eq!(a.storage().live(), b.storage().live());
    let (mut x, mut y) = (Batch::new(), Batch::new());
    a.sample(64, &mut Pcg64::seed_from_u64(seed), &mut x).unwrap();
    b.sample(64, &mut Pcg64::seed_from_u64(seed), &mut y).unwrap();
    assert_eq!(x, y);
    let (mut x, mut y) = (WindowBatch::new(), WindowBatch::new());
    a.sample_window(64, &mut Pcg64::seed_from_u64(seed), &mut x).unwrap();
    b.sample_window(64, &mut Pcg64::seed_from_u64(seed), &mut y).unwrap();
    assert_eq!(x, y);
}

#[test]
fn frame_buffer_reloads_with_its_frame_history_and_continues_identically() {
    // 3 interleaved envs: each push is matched against its env's recent frames. Without the saved frame history,
    // the reloaded buffer would store the next pushes' shared frames again, drop transitions earlier and sample
    // other batches.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("frames.bin");
    let mut src = Frames::new(3, 4);
    let (mut a, _) = frame_buffers(80, &mut src);
    a.save(&path).unwrap();
    let mut b = ReplayBuffer::<FrameStackStorage<i64>>::load(&path).unwrap();
    assert_same_frames(&a, &b, 1);
    for round in 0..100 {
        src.next(|e, t| {
            assert_eq!(a.push_from(e, t).unwrap(), b.push_from(e, t).unwrap());
        });
        assert_eq!(a.storage().frames_stored(), b.storage().frames_stored(), "push {round} after the reload");
        assert_same_frames(&a, &b, round);
    }
    // and a second save of the continued buffer is byte-identical to the original's
    let p2 = dir.path().join("frames2.bin");
    a.save(&path).unwrap();
    b.save(&p2).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), std::fs::read(&p2).unwrap());
}

#[test]
fn prioritized_round_trips_keep_priorities_and_continue_identically() {
    let dir = tempfile::tempdir().unwrap();
    let mut src = Frames::new(2, 5);
    let (_, mut per) = frame_buffers(80, &mut src);
    let mut rng = Pcg64::seed_from_u64(4);
    let mut batch = Batch::new();
    per.sample(16, 0.5, &mut rng, &mut batch).unwrap();
    let td: Vec<f32> = (0..16).map(|k| k as f32 - 8.0).collect();
    per.update_priorities(&batch.indices, &td).unwrap();

    let path = dir.path().join("per.bin");
    per.save(&path).unwrap();
    let mut per2 = PrioritizedReplayBuffer::<FrameStackStorage<i64>>::load(&path).unwrap();
    for i in 0..per.capacity() {
        assert_eq!(per2.priority(i).to_bits(), per.priority(i).to_bits(), "slot {i}");
    }
    assert_eq!(per2.total_priority(), per.total_priority());
    assert_eq!(per2.max_priority(), per.max_priority());
    assert_eq!(per2.alpha(), per.alpha());
    for round in 0..40u64 {
        let (mut x, mut y) = (Batch::new(), Batch::new());
        per.sample(32, 0.7, &mut Pcg64::seed_from_u64(round), &mut x).unwrap();
        per2.sample(32, 0.7, &mut Pcg64::seed_from_u64(round), &mut y).unwrap();
        assert_eq!(x, y);
        let (mut x, mut y) = (WindowBatch::new(), WindowBatch::new());
        per.sample_window(32, 0.7, &mut Pcg64::seed_from_u64(round), &mut x).unwrap();
        per2.sample_window(32, 0.7, &mut Pcg64::seed_from_u64(round), &mut y).unwrap();
        assert_eq!(x, y);
        let td: Vec<f32> = (0..32).map(|k| (k as f32 - round as f32).sin()).collect();
        per.update_priorities(&x.indices, &td).unwrap();
        per2.update_priorities(&y.indices, &td).unwrap();
        src.next(|e, t| {
            assert_eq!(per.push_from(e, t).unwrap(), per2.push_from(e, t).unwrap());
        });
    }
    assert_eq!(per2.total_priority(), per.total_priority());

    // over flat storage too
    let mut fp = PrioritizedReplayBuffer::new(flat().storage().clone(), 0.5, 0.01).unwrap();
    let idx: Vec<usize> = (0..50).collect();
    let td: Vec<f32> = (0..50).map(|i| i as f32 * 0.1).collect();
    fp.update_priorities(&idx, &td).unwrap();
    let p = dir.path().join("flat_per.bin");
    fp.save(&p).unwrap();
    let fp2 = PrioritizedReplayBuffer::<FlatStorage<f32, i64>>::load(&p).unwrap();
    assert_eq!(fp2.storage(), fp.storage());
    for i in 0..50 {
        assert_eq!(fp2.priority(i), fp.priority(i));
    }
    // a prioritised file is not a uniform one
    let err = ReplayBuffer::<FrameStackStorage<i64>>::load(&path).unwrap_err().to_string();
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

    for v in [1u32, 3] {
        let mut other = bytes.clone();
        other[8..12].copy_from_slice(&v.to_le_bytes());
        let p = dir.path().join("v.bin");
        std::fs::write(&p, &other).unwrap();
        let msg = format_err(ReplayBuffer::<FlatStorage<f32, i64>>::load(&p));
        assert!(msg.contains(&format!("format version {v}, this build reads only version 2")), "{msg}");
    }
    let mut extra = bytes.clone();
    extra.push(0);
    let p = dir.path().join("extra.bin");
    std::fs::write(&p, &extra).unwrap();
    assert!(format_err(ReplayBuffer::<FlatStorage<f32, i64>>::load(&p)).contains("after the end marker"));
    let mut end = bytes.clone();
    let n = end.len();
    end[n - 1] = b'?';
    std::fs::write(&p, &end).unwrap();
    assert!(format_err(ReplayBuffer::<FlatStorage<f32, i64>>::load(&p)).contains("end marker"));

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

/// Loads every proper prefix of `bytes` with `load`: each is a format error that says the file is truncated. The
/// file is written once and cut shorter and shorter in place.
fn every_cut_is_truncated<T: std::fmt::Debug>(
    bytes: &[u8],
    dir: &std::path::Path,
    load: impl Fn(&std::path::Path) -> Result<T, ReplayError>,
) {
    let p = dir.join("cut.bin");
    std::fs::write(&p, bytes).unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
    let n = bytes.len();
    for cut in (0..n).rev() {
        file.set_len(cut as u64).unwrap();
        let msg = format_err(load(&p));
        assert!(msg.contains("truncated"), "cut at {cut} of {n}: {msg}");
    }
}

#[test]
fn a_file_cut_at_any_byte_is_a_truncation_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut src = Frames::new(2, 6);
    let (frames, per) = frame_buffers(40, &mut src);
    type Loader = Box<dyn Fn(&std::path::Path) -> Result<(), ReplayError>>;
    let files: [(&str, Loader); 4] = [
        ("flat", Box::new(|p| ReplayBuffer::<FlatStorage<f32, i64>>::load(p).map(|_| ()))),
        ("frames", Box::new(|p| ReplayBuffer::<FrameStackStorage<i64>>::load(p).map(|_| ()))),
        ("per", Box::new(|p| PrioritizedReplayBuffer::<FrameStackStorage<i64>>::load(p).map(|_| ()))),
        ("flat_per", Box::new(|p| PrioritizedReplayBuffer::<FlatStorage<f32, i64>>::load(p).map(|_| ()))),
    ];
    for (name, load) in files {
        let path = dir.path().join(format!("{name}.bin"));
        match name {
            "flat" => flat().save(&path).unwrap(),
            "frames" => frames.save(&path).unwrap(),
            "per" => per.save(&path).unwrap(),
            _ => PrioritizedReplayBuffer::new(flat().storage().clone(), 0.6, 1e-6).unwrap().save(&path).unwrap(),
        }
        load(&path).unwrap();
        every_cut_is_truncated(&std::fs::read(&path).unwrap(), dir.path(), load);
    }
}

/// Offset of the storage state in a file of buffer kind `kind` and storage kind `skind`.
fn state_offset(kind: &str, skind: &str) -> usize {
    8 + 4 + 1 + kind.len() + 1 + skind.len() + 2
}

fn put(bytes: &mut [u8], at: usize, x: u64) {
    bytes[at..at + 8].copy_from_slice(&x.to_le_bytes());
}

#[test]
fn header_sizes_are_checked_against_the_file_before_allocating() {
    // Allocating any of these would abort the process (10^12 Atari frames are 7 PB), so an error proves the check
    // comes first.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.bin");
    let mut src = Frames::new(1, 7);
    let (frames, _) = frame_buffers(20, &mut src);
    let fpath = dir.path().join("frames.bin");
    frames.save(&fpath).unwrap();
    let fbytes = std::fs::read(&fpath).unwrap();
    let at = state_offset("uniform", "frames");
    // capacity, stack, action_dim, rank, shape[0], shape[1]
    for (field, value, expect) in [
        (0, 1_000_000_000_000u64, "capacity 1000000000000, stack 4, frame shape [3, 3], action_dim 1, which needs"),
        (0, u64::MAX / 2, "whose size overflows"),
        (4, 84_000_000, "frame shape [84000000, 3]"),
        (2, 1 << 40, "action_dim 1099511627776"),
        (1, 1 << 62, "whose size overflows"),
    ] {
        let mut b = fbytes.clone();
        put(&mut b, at + 8 * field, value);
        std::fs::write(&p, &b).unwrap();
        let msg = format_err(ReplayBuffer::<FrameStackStorage<i64>>::load(&p));
        assert!(msg.contains(expect), "field {field} = {value}: {msg}");
        assert!(msg.contains("truncated or corrupt") || msg.contains("corrupt file"), "{msg}");
    }
    let mut b = fbytes.clone();
    put(&mut b, at + 24, 17);
    std::fs::write(&p, &b).unwrap();
    assert!(format_err(ReplayBuffer::<FrameStackStorage<i64>>::load(&p)).contains("frame rank 17"));

    let path = dir.path().join("flat.bin");
    flat().save(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let at = state_offset("uniform", "flat");
    for (field, value, expect) in [
        (0, 1_000_000_000_000u64, "capacity 1000000000000, observation shape [2, 2], action_dim 1, which needs"),
        (0, u64::MAX, "whose size overflows"),
        (1, 1 << 50, "action_dim 1125899906842624"),
        (3, 1 << 40, "observation shape [1099511627776, 2]"),
    ] {
        let mut b = bytes.clone();
        put(&mut b, at + 8 * field, value);
        std::fs::write(&p, &b).unwrap();
        let msg = format_err(ReplayBuffer::<FlatStorage<f32, i64>>::load(&p));
        assert!(msg.contains(expect), "field {field} = {value}: {msg}");
    }
}

/// Byte offsets of the fields of a saved frame storage (capacity 30, stack 4, 3x3 frames, one `i64` action).
struct FrameLayout {
    counters: usize,
    ids: usize,
    rewards: usize,
    discounts: usize,
    terminated: usize,
    streams: usize,
}

fn frame_layout(kind: &str) -> FrameLayout {
    let (cap, k, fl, frame_cap) = (30, 4, 9, 30 + 16);
    let counters = state_offset(kind, "frames") + 6 * 8;
    let ids = counters + 24 + frame_cap * fl;
    let rewards = ids + cap * 2 * k * 8 + cap * 8;
    let discounts = rewards + cap * 4;
    let terminated = discounts + cap * 4;
    FrameLayout { counters, ids, rewards, discounts, terminated, streams: terminated + 2 * cap }
}

#[test]
fn corrupt_fields_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.bin");
    let mut src = Frames::new(2, 8);
    let (frames, _) = frame_buffers(50, &mut src);
    let path = dir.path().join("frames.bin");
    frames.save(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let l = frame_layout("uniform");
    assert_eq!(frames.len(), 30, "the layout below assumes a full buffer");
    let load = |b: &[u8]| {
        std::fs::write(&p, b).unwrap();
        format_err(ReplayBuffer::<FrameStackStorage<i64>>::load(&p))
    };
    let cases: Vec<(usize, Vec<u8>, &str)> = vec![
        (l.counters, 1000u64.to_le_bytes().to_vec(), "live range 1000..50 does not fit capacity 30"),
        (l.counters + 16, (1u64 << 63).to_le_bytes().to_vec(), "9223372036854775808 frames) are implausible"),
        (l.ids, 1_000_000u64.to_le_bytes().to_vec(), "refers to frame 1000000, not held"),
        (l.rewards, f32::NAN.to_le_bytes().to_vec(), "reward NaN of slot 0 is not finite"),
        (l.discounts + 4, 1.5f32.to_le_bytes().to_vec(), "discount 1.5 of slot 1 is outside [0, 1]"),
        (l.terminated + 3, vec![2], "flag byte 2 is not 0 or 1"),
        (l.streams, 70_000u64.to_le_bytes().to_vec(), "70000 env streams"),
        (l.streams + 8, 65u64.to_le_bytes().to_vec(), "env 0: 65 ids in its frame history, at most 64"),
        (l.streams + 16, 1_000_000u64.to_le_bytes().to_vec(), "env 0: frame history refers to frame 1000000"),
    ];
    for (at, patch, expect) in cases {
        let mut b = bytes.clone();
        b[at..at + patch.len()].copy_from_slice(&patch);
        let msg = load(&b);
        assert!(msg.contains(expect), "patch at {at}: {msg}");
    }
    // history ids out of order
    let mut b = bytes.clone();
    let first = u64::from_le_bytes(b[l.streams + 16..l.streams + 24].try_into().unwrap());
    put(&mut b, l.streams + 24, first);
    assert!(load(&b).contains("is not increasing"));

    // priorities: NaN, and a priority on a slot that holds nothing
    let mut per = PrioritizedReplayBuffer::new(FlatStorage::<f32, i64>::new(8, &[1], 1).unwrap(), 0.6, 1e-6).unwrap();
    for i in 0..5 {
        let t = Transition {
            obs: &[i as f32],
            action: &[0],
            reward: 0.0,
            next_obs: &[0.0],
            terminated: false,
            truncated: false,
            discount: 0.9,
        };
        per.push(&t).unwrap();
    }
    let path = dir.path().join("per.bin");
    per.save(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let prio = |slot: usize| bytes.len() - 4 - (8 - slot) * 8;
    let load = |b: &[u8]| {
        std::fs::write(&p, b).unwrap();
        format_err(PrioritizedReplayBuffer::<FlatStorage<f32, i64>>::load(&p))
    };
    for (slot, value, expect) in [
        (2, f64::NAN, "priority NaN of slot 2 is not a finite number >= 0"),
        (3, -1.0, "priority -1 of slot 3 is not"),
        (6, 0.5, "priority 0.5 of slot 6, which holds no transition"),
        (1, 0.0, "priority 0 of slot 1, which holds a live transition"),
    ] {
        let mut b = bytes.clone();
        put(&mut b, prio(slot), value.to_bits());
        let msg = load(&b);
        assert!(msg.contains(expect), "slot {slot}: {msg}");
    }
    // alpha, eps and the max priority
    let extra = prio(0) - 24;
    for (k, value, expect) in [(0, 11.0f64, "alpha 11 is outside"), (1, -1.0, "eps -1"), (2, 0.0, "max priority 0")] {
        let mut b = bytes.clone();
        put(&mut b, extra + 8 * k, value.to_bits());
        let msg = load(&b);
        assert!(msg.contains(expect), "{msg}");
    }
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
    // saving over it replaces it whole, with no temporary file left behind
    let mut other = flat();
    let t = Transition {
        obs: &[0.0; 4],
        action: &[0],
        reward: 0.0,
        next_obs: &[0.0; 4],
        terminated: false,
        truncated: false,
        discount: 0.9,
    };
    other.push(&t).unwrap();
    other.save(&path).unwrap();
    assert_ne!(std::fs::read(&path).unwrap(), before);
    assert_eq!(ReplayBuffer::<FlatStorage<f32, i64>>::load(&path).unwrap().storage(), other.storage());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}
