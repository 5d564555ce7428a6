//! Spaces: the sets observations and actions live in, as Gymnasium's `gymnasium.spaces`.
use std::fmt;

use rand::Rng;

use crate::error::{EnvError, Result};

/// Element type of a [`BoxSpace`], as Gymnasium's `dtype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    /// 32-bit float (classic control).
    F32,
    /// Unsigned byte (images).
    U8,
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dtype::F32 => "float32",
            Dtype::U8 => "uint8",
        })
    }
}

/// A box in R^n: element-wise bounds `low <= x <= high` (bounds may be infinite) with a shape.
#[derive(Debug, Clone, PartialEq)]
pub struct BoxSpace {
    /// Lower bound of each element (row-major, `shape.iter().product()` entries).
    pub low: Vec<f32>,
    /// Upper bound of each element.
    pub high: Vec<f32>,
    /// The shape, e.g. `[4]` or `[4, 84, 84]`.
    pub shape: Vec<usize>,
    /// Element type.
    pub dtype: Dtype,
}

impl BoxSpace {
    /// A one-dimensional `f32` box with per-element bounds.
    ///
    /// Errors ([`EnvError::BadSpace`]) when `low` and `high` differ in length, or an element has a NaN bound or
    /// `low > high` (Gymnasium's `Box` rejects the same).
    ///
    /// ```
    /// use bellman_envs::space::BoxSpace;
    /// let b = BoxSpace::new(vec![-1.0, -2.0], vec![1.0, 2.0]).unwrap();
    /// assert_eq!(b.shape, vec![2]);
    /// assert!(BoxSpace::new(vec![0.0], vec![1.0, 2.0]).is_err());
    /// assert!(BoxSpace::new(vec![1.0], vec![0.0]).is_err());
    /// ```
    pub fn new(low: Vec<f32>, high: Vec<f32>) -> Result<Self> {
        if low.len() != high.len() {
            return Err(EnvError::BadSpace(format!(
                "low has {} elements and high has {}; they must have the same length",
                low.len(),
                high.len()
            )));
        }
        if let Some(i) = (0..low.len()).find(|&i| low[i].is_nan() || high[i].is_nan() || low[i] > high[i]) {
            return Err(EnvError::BadSpace(format!(
                "element {i} has bounds [{}, {}]: bounds must be non-NaN with low <= high",
                low[i], high[i]
            )));
        }
        let shape = vec![low.len()];
        Ok(BoxSpace { low, high, shape, dtype: Dtype::F32 })
    }

    /// [`BoxSpace::new`] for the built-in envs' constant bounds, checked in debug builds only.
    pub(crate) fn from_constants(low: Vec<f32>, high: Vec<f32>) -> Self {
        debug_assert!(Self::new(low.clone(), high.clone()).is_ok(), "bad constant bounds {low:?} {high:?}");
        let shape = vec![low.len()];
        BoxSpace { low, high, shape, dtype: Dtype::F32 }
    }

    /// The box `[-high, high]` for the built-in envs' constant bounds.
    pub(crate) fn symmetric(high: &[f32]) -> Self {
        Self::from_constants(high.iter().map(|h| -h).collect(), high.to_vec())
    }

    /// A box with the same bounds for every element of `shape`.
    pub fn uniform(low: f32, high: f32, shape: &[usize], dtype: Dtype) -> Self {
        let n = shape.iter().product();
        BoxSpace { low: vec![low; n], high: vec![high; n], shape: shape.to_vec(), dtype }
    }

    /// Number of scalar elements.
    pub fn flat_dim(&self) -> usize {
        self.shape.iter().product()
    }

    /// True when `x` has the right length and every element is within its bounds (NaN is never contained).
    pub fn contains(&self, x: &[f32]) -> bool {
        x.len() == self.low.len()
            && x.iter().zip(self.low.iter().zip(&self.high)).all(|(v, (lo, hi))| *v >= *lo && *v <= *hi)
    }

    /// Samples into `out` as Gymnasium does: uniform on bounded elements, standard normal on unbounded ones,
    /// shifted exponential on half-bounded ones. `u8` boxes sample integers.
    pub fn sample_into<R: Rng + ?Sized>(&self, rng: &mut R, out: &mut [f32]) {
        for ((o, &lo), &hi) in out.iter_mut().zip(&self.low).zip(&self.high) {
            let v = match (lo.is_finite(), hi.is_finite()) {
                (true, true) => {
                    if self.dtype == Dtype::U8 {
                        let (lo, hi) = (lo as i64, hi as i64);
                        // An empty element (low > high, only reachable through the public fields) samples `low`.
                        if lo <= hi { rng.random_range(lo..=hi) as f32 } else { lo as f32 }
                    } else {
                        lo + (hi - lo) * rng.random::<f32>()
                    }
                }
                (false, false) => standard_normal(rng),
                (true, false) => lo + exponential(rng),
                (false, true) => hi - exponential(rng),
            };
            *o = v;
        }
    }
}

fn standard_normal<R: Rng + ?Sized>(rng: &mut R) -> f32 {
    // Box-Muller transform.
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

fn exponential<R: Rng + ?Sized>(rng: &mut R) -> f32 {
    (-(1.0 - rng.random::<f64>()).ln()) as f32
}

/// A space: where observations or actions live.
///
/// ```
/// use bellman_envs::Space;
/// let s = Space::Discrete(3);
/// assert!(s.contains_discrete(2));
/// assert!(!s.contains_discrete(3));
/// assert_eq!(s.to_string(), "Discrete(3)");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Space {
    /// The integers `0..n`.
    Discrete(usize),
    /// A box of real (or byte) values.
    Box(BoxSpace),
}

impl Space {
    /// `n` of a discrete space.
    pub fn n(&self) -> Option<usize> {
        match self {
            Space::Discrete(n) => Some(*n),
            Space::Box(_) => None,
        }
    }

    /// The box of a box space.
    pub fn as_box(&self) -> Option<&BoxSpace> {
        match self {
            Space::Box(b) => Some(b),
            Space::Discrete(_) => None,
        }
    }

    /// The shape: `[]` for discrete spaces (a scalar), the box's shape otherwise.
    pub fn shape(&self) -> &[usize] {
        match self {
            Space::Discrete(_) => &[],
            Space::Box(b) => &b.shape,
        }
    }

    /// Number of `f32` values a flat encoding of one element takes: 1 for discrete (the index), the box size.
    pub fn flat_dim(&self) -> usize {
        match self {
            Space::Discrete(_) => 1,
            Space::Box(b) => b.flat_dim(),
        }
    }

    /// True for a discrete space holding `a`.
    pub fn contains_discrete(&self, a: usize) -> bool {
        matches!(self, Space::Discrete(n) if a < *n)
    }

    /// True for a box space holding `x`.
    pub fn contains_box(&self, x: &[f32]) -> bool {
        matches!(self, Space::Box(b) if b.contains(x))
    }

    /// A uniform sample of a discrete space (`None` for a box, use [`BoxSpace::sample_into`], and for the empty
    /// `Discrete(0)`).
    pub fn sample_discrete<R: Rng + ?Sized>(&self, rng: &mut R) -> Option<usize> {
        self.n().filter(|&n| n > 0).map(|n| rng.random_range(0..n))
    }

    /// Samples one element into `out` (`out[0] = index` for discrete spaces). Errors when `out` is not
    /// [`flat_dim`](Self::flat_dim) long or the space is the empty `Discrete(0)`.
    ///
    /// ```
    /// use bellman_envs::Space;
    /// let mut rng = bellman_envs::rng::seeded(0);
    /// let mut out = [0.0f32];
    /// Space::Discrete(3).sample_into(&mut rng, &mut out).unwrap();
    /// assert!([0.0, 1.0, 2.0].contains(&out[0]));
    /// assert!(Space::Discrete(0).sample_into(&mut rng, &mut out).is_err());
    /// assert!(Space::Discrete(3).sample_into(&mut rng, &mut []).is_err());
    /// ```
    pub fn sample_into<R: Rng + ?Sized>(&self, rng: &mut R, out: &mut [f32]) -> Result<()> {
        if out.len() != self.flat_dim() {
            return Err(EnvError::BadSpace(format!(
                "sample buffer has {} elements, the space {self} has flat_dim {}",
                out.len(),
                self.flat_dim()
            )));
        }
        match self {
            Space::Discrete(n) => {
                let a = self.sample_discrete(rng).ok_or_else(|| {
                    EnvError::BadSpace(format!("cannot sample the empty space Discrete({n}): n must be >= 1"))
                })?;
                out[0] = a as f32;
            }
            Space::Box(b) => b.sample_into(rng, out),
        }
        Ok(())
    }
}

fn fmt_bounds(v: &[f32], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let first = v.first().copied().unwrap_or(0.0);
    let fmt_one = |x: f32| {
        if x.is_infinite() { if x > 0.0 { "inf".to_string() } else { "-inf".to_string() } } else { format!("{x}") }
    };
    if v.iter().all(|x| x.to_bits() == first.to_bits()) {
        f.write_str(&fmt_one(first))
    } else {
        let items: Vec<String> = v.iter().map(|x| fmt_one(*x)).collect();
        write!(f, "[{}]", items.join(" "))
    }
}

impl fmt::Display for Space {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Space::Discrete(n) => write!(f, "Discrete({n})"),
            Space::Box(b) => {
                f.write_str("Box(")?;
                fmt_bounds(&b.low, f)?;
                f.write_str(", ")?;
                fmt_bounds(&b.high, f)?;
                let dims: Vec<String> = b.shape.iter().map(|d| d.to_string()).collect();
                if dims.len() == 1 {
                    write!(f, ", ({},), {})", dims[0], b.dtype)
                } else {
                    write!(f, ", ({}), {})", dims.join(", "), b.dtype)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discrete_samples_cover_the_range_and_stay_inside() {
        let s = Space::Discrete(4);
        let mut rng = crate::rng::seeded(0);
        let mut seen = [0usize; 4];
        for _ in 0..4000 {
            let a = s.sample_discrete(&mut rng).unwrap();
            assert!(s.contains_discrete(a));
            seen[a] += 1;
        }
        // Each of 4 values has expectation 1000; 6 sigma is about 164.
        assert!(seen.iter().all(|&c| (836..=1164).contains(&c)), "{seen:?}");
    }

    #[test]
    fn box_contains_and_samples() {
        let b = BoxSpace::new(vec![-1.0, 0.0, f32::NEG_INFINITY], vec![1.0, 2.0, f32::INFINITY]).unwrap();
        let s = Space::Box(b.clone());
        assert!(s.contains_box(&[0.0, 2.0, 1e30]));
        assert!(!s.contains_box(&[0.0, 2.1, 0.0]));
        assert!(!s.contains_box(&[f32::NAN, 1.0, 0.0]));
        assert!(!s.contains_box(&[0.0, 1.0]));
        let mut rng = crate::rng::seeded(1);
        let mut out = [0.0f32; 3];
        for _ in 0..1000 {
            b.sample_into(&mut rng, &mut out);
            assert!(b.contains(&out), "{out:?}");
        }
        assert_eq!(s.to_string(), "Box([-1 0 -inf], [1 2 inf], (3,), float32)");
    }

    #[test]
    fn bad_boxes_and_samples_are_errors_naming_the_value() {
        let e = BoxSpace::new(vec![0.0; 2], vec![1.0; 3]).unwrap_err().to_string();
        assert!(e.contains("low has 2 elements and high has 3"), "{e}");
        let e = BoxSpace::new(vec![0.0, 2.0], vec![1.0, 1.5]).unwrap_err().to_string();
        assert!(e.contains("element 1 has bounds [2, 1.5]"), "{e}");
        assert!(BoxSpace::new(vec![f32::NAN], vec![1.0]).is_err());
        let mut rng = crate::rng::seeded(2);
        assert_eq!(Space::Discrete(0).sample_discrete(&mut rng), None);
        let e = Space::Discrete(0).sample_into(&mut rng, &mut [0.0]).unwrap_err().to_string();
        assert!(e.contains("Discrete(0)"), "{e}");
        let e = Space::Discrete(2).sample_into(&mut rng, &mut [0.0; 2]).unwrap_err().to_string();
        assert!(e.contains("has 2 elements") && e.contains("flat_dim 1"), "{e}");
        // A u8 box samples integers within its bounds, both ends included.
        let b = BoxSpace::uniform(0.0, 2.0, &[64], Dtype::U8);
        let mut out = [0.0f32; 64];
        b.sample_into(&mut rng, &mut out);
        assert!(out.iter().all(|v| v.fract() == 0.0 && (0.0..=2.0).contains(v)), "{out:?}");
        assert!(out.contains(&0.0) && out.contains(&2.0), "{out:?}");
    }
}
