//! Flush-to-zero while a DQN update runs.
//!
//! Adam's first moment of a weight whose gradient stays zero (a dead ReLU unit) decays by `beta1` per update and
//! reaches the denormal range (below 1.2e-38 for `f32`) after about 800 updates; x86 SIMD arithmetic on denormal
//! operands takes a microcode assist, tens to a hundred times slower. On the dev box this made `CpuAdam`'s
//! 4,610-element step take about a third of every CartPole update. With the MXCSR's flush-to-zero (FTZ, bit 15)
//! and denormals-are-zero (DAZ, bit 6) bits set, such values are zero: the update changes by less than `1e-38`
//! per weight and runs at full speed. TensorFlow flushes denormals on its CPU threads for the same reason
//! (`tensorflow/core/platform/denormal.h`, `ScopedFlushDenormal`).
//!
//! The guard sets both bits on the calling thread and restores the previous state when dropped, so env code
//! (which Gymnasium's parity fixtures check in `f64`) never runs with them. Other architectures: a no-op.

/// Sets FTZ and DAZ on the calling thread until dropped (x86 and x86_64; elsewhere it does nothing).
///
/// ```ignore
/// let _ftz = FlushDenormals::new();
/// // ... arithmetic where denormals become zero ...
/// ```
#[must_use = "the guard restores the previous floating-point mode when dropped"]
pub(crate) struct FlushDenormals {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    saved: u32,
    /// The mode belongs to this thread: the guard must be dropped where it was made (not `Send`).
    _thread: std::marker::PhantomData<*const ()>,
}

#[cfg(target_arch = "x86")]
use std::arch::x86 as arch;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64 as arch;

/// MXCSR flush-to-zero (bit 15) and denormals-are-zero (bit 6): Intel SDM vol. 1, 10.2.3.
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
const FTZ_DAZ: u32 = 0x8040;

impl FlushDenormals {
    /// Sets FTZ and DAZ, remembering the previous mode.
    pub(crate) fn new() -> Self {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        {
            // SAFETY: SSE is part of the x86_64 baseline (and assumed on x86 by Rust's std targets); reading the
            // MXCSR and setting two mode bits changes only how this thread rounds tiny floats, no memory.
            #[allow(deprecated)]
            let saved = unsafe { arch::_mm_getcsr() };
            #[allow(deprecated)]
            unsafe {
                arch::_mm_setcsr(saved | FTZ_DAZ)
            };
            FlushDenormals { saved, _thread: std::marker::PhantomData }
        }
        #[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
        FlushDenormals { _thread: std::marker::PhantomData }
    }
}

impl Drop for FlushDenormals {
    fn drop(&mut self) {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        // SAFETY: restores the mode read in `new` on the same thread (the guard is not Send).
        #[allow(deprecated)]
        unsafe {
            arch::_mm_setcsr(self.saved)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hint::black_box;

    #[test]
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    fn denormals_are_zero_inside_the_guard_only() {
        let tiny = black_box(f32::MIN_POSITIVE);
        // Outside: half the smallest normal is a denormal, not zero.
        assert!(black_box(tiny * 0.5) > 0.0);
        {
            let _g = FlushDenormals::new();
            assert_eq!(black_box(tiny * 0.5), 0.0, "FTZ: a denormal result is flushed");
            let denormal = black_box(f32::from_bits(1));
            assert_eq!(black_box(denormal * 2.0), 0.0, "DAZ: a denormal operand reads as zero");
            // Nested guards restore in order.
            drop(FlushDenormals::new());
            assert_eq!(black_box(tiny * 0.5), 0.0);
        }
        assert!(black_box(tiny * 0.5) > 0.0, "the previous mode is restored");
    }
}
