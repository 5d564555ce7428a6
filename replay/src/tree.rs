//! Segment trees over `f64` priorities: [`SumTree`] (prefix-sum search) and [`MinTree`].
//!
//! Both are implicit 8-ary trees stored level by level (leaves first), so the 8 children of a node fill one
//! 64-byte cache line: a search or an update over 1,000,000 leaves touches 7 lines instead of the 20 of a binary
//! tree (the binary layout is OpenAI Baselines' `segment_tree.py`). An update recomputes each ancestor from its
//! children (never `node += delta`), so no floating-point error accumulates: after any sequence of updates
//! every node is the sum of its children rounded as one fresh left-to-right sum, and the root is within
//! `7 * depth` roundings of the exact sum.

/// Children per node.
const B: usize = 8;

/// Level sizes (each a multiple of `B`, except a top level of at most `B` entries).
fn level_lens(capacity: usize) -> Vec<usize> {
    let mut lens = vec![capacity.max(1).div_ceil(B) * B];
    while *lens.last().expect("non-empty") > B {
        let n = lens.last().expect("non-empty").div_ceil(B);
        lens.push(if n > B { n.div_ceil(B) * B } else { n });
    }
    lens
}

/// Sum of a group of nodes (a fresh left-to-right sum, see the module docs).
fn group_sum(v: &[f64]) -> f64 {
    v.iter().sum()
}

/// Minimum of a group of nodes (`+inf` for an empty group).
fn group_min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

/// Sets leaves `idx[k]` to `vals[k]` (later duplicates win), recomputes their ancestors level by level with
/// `combine` (so the memory loads of different leaves overlap), and returns `combine` of the top level: the one
/// update of [`SumTree`] and [`MinTree`]. The caller checks every `idx[k] < capacity`.
#[inline]
fn set_leaves<F: Fn(&[f64]) -> f64>(levels: &mut [Vec<f64>], idx: &[usize], vals: &[f64], combine: F) -> f64 {
    for (&i, &v) in idx.iter().zip(vals) {
        levels[0][i] = v;
    }
    let mut div = 1;
    for h in 1..levels.len() {
        div *= B;
        let (lo, hi) = levels.split_at_mut(h);
        let (child, parent) = (&lo[h - 1], &mut hi[0]);
        for &i in idx {
            let g = i / div;
            parent[g] = combine(&child[g * B..g * B + B]);
        }
    }
    levels.last().map_or(combine(&[]), |top| combine(top))
}

/// A sum tree: set leaf values, read the total, find the leaf where a running prefix sum crosses a value.
///
/// ```
/// use bellman_replay::SumTree;
/// let mut t = SumTree::new(4);
/// for (i, p) in [1.0, 2.0, 3.0, 4.0].into_iter().enumerate() { t.set(i, p); }
/// assert_eq!(t.total(), 10.0);
/// assert_eq!(t.find_prefix(0.5), 0);
/// assert_eq!(t.find_prefix(2.9), 1);
/// assert_eq!(t.find_prefix(9.99), 3);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct SumTree {
    levels: Vec<Vec<f64>>,
    total: f64,
}

impl SumTree {
    /// A tree of `capacity` leaves, all zero.
    pub fn new(capacity: usize) -> Self {
        SumTree { levels: level_lens(capacity).into_iter().map(|n| vec![0.0; n]).collect(), total: 0.0 }
    }
    /// Bytes held by the nodes.
    pub fn memory_bytes(&self) -> usize {
        self.levels.iter().map(|l| l.capacity() * 8).sum()
    }
    /// Sets leaf `i` (the caller checks `i < capacity` and that `value` is finite and `>= 0`).
    pub fn set(&mut self, i: usize, value: f64) {
        self.total = set_leaves(&mut self.levels, &[i], &[value], group_sum);
    }
    /// Sets leaves `idx[k]` to `vals[k]` (later duplicates win), then recomputes their ancestors level by level,
    /// so the memory loads of different leaves overlap.
    pub fn set_many(&mut self, idx: &[usize], vals: &[f64]) {
        self.total = set_leaves(&mut self.levels, idx, vals, group_sum);
    }
    /// Leaf `i`.
    pub fn get(&self, i: usize) -> f64 {
        self.levels[0][i]
    }
    /// Sum of all leaves.
    pub fn total(&self) -> f64 {
        self.total
    }
    /// Picks the child of group `g` at level `h` where `u` falls; returns (child index, `u` minus the mass before).
    /// Where rounding puts `u` past the group's mass, it takes the last child of positive mass.
    #[inline]
    fn pick(level: &[f64], base: usize, u: f64) -> (usize, f64) {
        let vals = &level[base..(base + B).min(level.len())];
        let mut acc = 0.0;
        let mut count = 0;
        let mut before = 0.0;
        for &v in vals {
            acc += v;
            let past = acc <= u;
            count += usize::from(past);
            before = if past { acc } else { before };
        }
        if count < vals.len() {
            (base + count, u - before)
        } else {
            // u >= the group's mass (rounding): last child with positive mass
            let j = vals.iter().rposition(|&v| v > 0.0).unwrap_or(0);
            (base + j, vals[j])
        }
    }
    /// The leaf `i` with `sum(leaves[..i]) <= u < sum(leaves[..=i])`. Never returns a zero leaf while the total is
    /// positive.
    pub fn find_prefix(&self, mut u: f64) -> usize {
        let mut g = 0;
        for level in self.levels.iter().rev() {
            (g, u) = Self::pick(level, g * B, u);
        }
        g
    }
    /// [`SumTree::find_prefix`] for many values at once (`us` is overwritten, `out[k]` gets the leaf of `us[k]`).
    /// The batch descends level by level, so the memory loads of different values overlap instead of forming one
    /// dependent chain per value.
    pub fn find_prefix_many(&self, us: &mut [f64], out: &mut [usize]) {
        out.fill(0);
        for level in self.levels.iter().rev() {
            for (g, u) in out.iter_mut().zip(us.iter_mut()) {
                (*g, *u) = Self::pick(level, *g * B, *u);
            }
        }
    }
    /// Recomputes every internal node from the leaves.
    pub fn rebuild(&mut self) {
        for h in 1..self.levels.len() {
            for g in 0..self.levels[h].len() {
                let end = (g * B + B).min(self.levels[h - 1].len());
                let s: f64 = self.levels[h - 1][(g * B).min(end)..end].iter().sum();
                self.levels[h][g] = s;
            }
        }
        self.total = self.levels.last().expect("non-empty").iter().sum();
    }
}

/// A min tree: set leaf values, read the minimum (empty leaves are `+inf`).
///
/// ```
/// use bellman_replay::MinTree;
/// let mut t = MinTree::new(3);
/// assert_eq!(t.min(), f64::INFINITY);
/// t.set(0, 2.0);
/// t.set(2, 0.5);
/// assert_eq!(t.min(), 0.5);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct MinTree {
    levels: Vec<Vec<f64>>,
    min: f64,
}

impl MinTree {
    /// A tree of `capacity` leaves, all `+inf`.
    pub fn new(capacity: usize) -> Self {
        MinTree {
            levels: level_lens(capacity).into_iter().map(|n| vec![f64::INFINITY; n]).collect(),
            min: f64::INFINITY,
        }
    }
    /// Bytes held by the nodes.
    pub fn memory_bytes(&self) -> usize {
        self.levels.iter().map(|l| l.capacity() * 8).sum()
    }
    /// Sets leaf `i`.
    pub fn set(&mut self, i: usize, value: f64) {
        self.min = set_leaves(&mut self.levels, &[i], &[value], group_min);
    }
    /// Sets leaves `idx[k]` to `vals[k]`, then recomputes their ancestors level by level.
    pub fn set_many(&mut self, idx: &[usize], vals: &[f64]) {
        self.min = set_leaves(&mut self.levels, idx, vals, group_min);
    }
    /// The smallest leaf.
    pub fn min(&self) -> f64 {
        self.min
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn level_sizes_cover_capacity() {
        assert_eq!(level_lens(1), vec![8]);
        assert_eq!(level_lens(9), vec![16, 2]);
        assert_eq!(level_lens(1_000_000), vec![1_000_000, 125_000, 15_632, 1_960, 248, 32, 4]);
    }

    #[test]
    fn batched_operations_equal_single_ones() {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(5);
        for cap in [1usize, 2, 3, 8, 9, 17, 64, 65, 1000] {
            let (mut a, mut b) = (SumTree::new(cap), SumTree::new(cap));
            let (mut ma, mut mb) = (MinTree::new(cap), MinTree::new(cap));
            for _ in 0..20 {
                let idx: Vec<usize> = (0..rng.random_range(1..40)).map(|_| rng.random_range(0..cap)).collect();
                let vals: Vec<f64> =
                    idx.iter().map(|_| if rng.random_bool(0.1) { 0.0 } else { rng.random_range(0.0..5.0) }).collect();
                for (&i, &v) in idx.iter().zip(&vals) {
                    a.set(i, v);
                    ma.set(i, v);
                }
                b.set_many(&idx, &vals);
                mb.set_many(&idx, &vals);
                assert_eq!(a, b);
                assert_eq!(ma, mb);
                let mut c = a.clone();
                c.rebuild();
                assert_eq!(a, c);
                if a.total() > 0.0 {
                    let us: Vec<f64> = (0..50).map(|_| rng.random_range(0.0..=a.total())).collect();
                    let mut us2 = us.clone();
                    let mut out = vec![0; 50];
                    a.find_prefix_many(&mut us2, &mut out);
                    let single: Vec<usize> = us.iter().map(|&u| a.find_prefix(u)).collect();
                    assert_eq!(out, single);
                    assert!(out.iter().all(|&i| a.get(i) > 0.0));
                }
            }
        }
    }
}
