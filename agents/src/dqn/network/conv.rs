//! CPU kernels of the Nature CNN as candle custom ops: a convolution layer (im2col + GEMM + bias + ReLU) and a fully
//! connected layer (GEMM + bias, optionally ReLU), each with a hand-written backward pass.
//!
//! candle's CPU `conv2d` backward is slow, and an `index_select` im2col in candle costs an `index_add` backward and
//! a dozen tensor passes per layer. Here every layer is one forward and one backward op:
//!
//! - the GEMMs call the `gemm` crate (what candle's own CPU matmul uses) with strides, so no operand is transposed
//!   or copied here, and the weight gradients are written straight into their buffers; the linear layer's forward
//!   writes its output transposed, which lets `gemm` read the large weight in place instead of packing it;
//! - im2col works on row chunks of about [`CHUNK_FLOATS`] values, so the column matrix stays in the core's L2 cache
//!   between the gather and the GEMM; the backward pass rebuilds the chunk instead of keeping the whole matrix;
//! - the first layer reads the `u8` (or `f32`) frames directly: the `u8 -> f32` conversion and the 1/255 scaling
//!   happen inside im2col, and no input gradient is computed for it (its input is data);
//! - bias and ReLU are applied in one pass over each GEMM output chunk; the ReLU backward is folded into the pass
//!   that also sums the bias gradient.
//!
//! Layouts. The frames are NCHW (`[B, C, H, W]`) and their columns are ordered `(c, ky, kx)`, the PyTorch weight
//! order. Later layers take the NHWC output (`[B, H, W, C]`) of the previous one, so a kernel row of the window is
//! one contiguous run of `k * C` values; their columns are ordered `(ky, kx, c)` and the weight is permuted to match
//! (a few ten thousand values per call). The last convolution writes NCHW, the order PyTorch's `nn.Flatten` gives
//! the first linear layer. Weights keep PyTorch's layout (`[out, in, kh, kw]`, `[out, in]`) everywhere.
//!
//! Scratch buffers live in a thread-local and are reused, so a layer allocates only the tensors candle keeps.
//! With several threads (`RAYON_NUM_THREADS`, candle's rule) a convolution runs groups of samples as rayon tasks,
//! each with single-threaded GEMMs and its own weight-gradient partial (summed in a fixed order, so results do not
//! depend on the scheduling); the linear layers split their GEMMs across the threads as candle's matmul does.
use std::cell::RefCell;
use std::sync::OnceLock;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, DType, Device, Error, Layout, Result, Shape, Storage, Tensor, WithDType};
use gemm::Parallelism;
use rayon::prelude::*;

/// Values of one im2col chunk (512 KiB of `f32`): small enough to stay in a server core's L2 cache (1-2 MiB) with
/// the GEMM's packed operands. Measured on the dev box (docs/BENCHMARKS.md, "DQN / Speed").
pub(crate) const CHUNK_FLOATS: usize = 128 * 1024;

/// The scale of the observation frames: the Nature DQN (and SB3's `NatureCNN`) divide pixels by 255.
pub(crate) const FRAME_SCALE: f32 = 1.0 / 255.0;

/// Where a convolution's input comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConvInput {
    /// Observation frames `[B, C, H, W]` (`u8` or `f32`, 0..=255), scaled by [`FRAME_SCALE`]; no input gradient.
    Frames,
    /// The NHWC output `[B, H, W, C]` of the previous convolution (`f32`).
    Nhwc,
}

/// Shape of one convolution layer (no padding, no dilation, as the Nature CNN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConvGeom {
    /// Input channels.
    pub c: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Square kernel size.
    pub k: usize,
    /// Stride.
    pub s: usize,
    /// Output channels.
    pub out: usize,
}

impl ConvGeom {
    /// Output height.
    pub fn oh(&self) -> usize {
        (self.h - self.k) / self.s + 1
    }
    /// Output width.
    pub fn ow(&self) -> usize {
        (self.w - self.k) / self.s + 1
    }
    /// Values in one window (GEMM inner dimension).
    fn ckk(&self) -> usize {
        self.c * self.k * self.k
    }
    /// Output positions per sample.
    fn positions(&self) -> usize {
        self.oh() * self.ow()
    }
    fn valid(&self) -> bool {
        self.k > 0 && self.s > 0 && self.c > 0 && self.out > 0 && self.h >= self.k && self.w >= self.k
    }
}

/// A convolution + bias + ReLU layer: `apply_op3(x, weight [out, c, k, k], bias [out])`. The output is NHWC
/// `[B, oh, ow, out]`, or NCHW `[B, out, oh, ow]` with `nchw_out`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvOp {
    pub geom: ConvGeom,
    pub input: ConvInput,
    pub nchw_out: bool,
}

/// A linear layer `y = x W^T + b` (ReLU with `relu`): `apply_op3(x [B, ...], weight [out, in], bias [out])`, the
/// input flattened from dimension 1 (as `nn.Flatten` + `nn.Linear`). Output `[B, out]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LinearOp {
    pub relu: bool,
}

/// im2col buffers: the column chunk and one converted input line (frames path).
#[derive(Default)]
struct ColBufs {
    cols: Vec<f32>,
    line: Vec<f32>,
}

#[derive(Default)]
struct Scratch {
    cols: ColBufs,
    wmat: Vec<f32>,
    dz: Vec<f32>,
    dwmat: Vec<f32>,
    y: Vec<f32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's scratch buffers, or with fresh ones when they are in use (a rayon worker that runs
/// another layer while it waits inside a parallel GEMM).
fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut s) => f(&mut s),
        Err(_) => f(&mut Scratch::default()),
    })
}

fn sized(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    if v.len() < n {
        v.resize(n, 0.0);
    }
    &mut v[..n]
}

fn msg(m: String) -> Error {
    Error::Msg(m)
}

/// The contiguous data of a CPU storage.
fn slice<'a, T: WithDType>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [T]> {
    let data = s.as_slice::<T>()?;
    let (a, b) = l.contiguous_offsets().ok_or_else(|| msg(format!("{what}: the tensor is not contiguous")))?;
    Ok(&data[a..b])
}

fn cpu<'a>(st: &'a Storage, what: &str) -> Result<&'a CpuStorage> {
    match st {
        Storage::Cpu(c) => Ok(c),
        _ => Err(msg(format!("{what}: the CPU kernels need CPU tensors"))),
    }
}

/// Threads by candle's rule for its CPU matmul (`RAYON_NUM_THREADS`, else the core count), read once: candle
/// re-reads it on every matmul, which costs a `/proc/cpuinfo` parse when the variable is unset (GPU.md).
fn threads() -> usize {
    static THREADS: OnceLock<usize> = OnceLock::new();
    *THREADS.get_or_init(candle_core::utils::get_num_threads)
}

/// How a single GEMM may use the threads.
fn parallelism() -> Parallelism {
    let n = threads();
    if n > 1 { Parallelism::Rayon(n) } else { Parallelism::None }
}

/// A strided matrix operand: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub(super) struct View<'a> {
    pub(super) data: &'a [f32],
    pub(super) rs: usize,
    pub(super) cs: usize,
}

fn fits(len: usize, rows: usize, cols: usize, rs: usize, cs: usize) -> bool {
    (rows - 1)
        .checked_mul(rs)
        .and_then(|a| (cols - 1).checked_mul(cs).and_then(|b| a.checked_add(b)))
        .is_some_and(|i| i < len)
}

/// `dst = lhs · rhs`, or `dst += lhs · rhs` with `accumulate`; `lhs` is `m x k`, `rhs` `k x n`, `dst` `m x n`
/// row-major with row stride `dst_rs`; `par` says how the GEMM may use threads. Bounds are checked before the
/// `gemm` call.
#[allow(clippy::too_many_arguments)]
pub(super) fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    lhs: View,
    rhs: View,
    par: Parallelism,
) -> Result<()> {
    matmul_strided(m, n, k, dst, (dst_rs, 1), accumulate, lhs, rhs, par)
}

/// [`matmul`] with any destination strides `(rs, cs)`.
#[allow(clippy::too_many_arguments)]
fn matmul_strided(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    (dst_rs, dst_cs): (usize, usize),
    accumulate: bool,
    lhs: View,
    rhs: View,
    par: Parallelism,
) -> Result<()> {
    if m == 0 || n == 0 {
        return Ok(());
    }
    if !fits(dst.len(), m, n, dst_rs, dst_cs) {
        return Err(msg(format!("matmul: destination of {} values is too small for {m}x{n}", dst.len())));
    }
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                for c in 0..n {
                    dst[r * dst_rs + c * dst_cs] = 0.0;
                }
            }
        }
        return Ok(());
    }
    if !fits(lhs.data.len(), m, k, lhs.rs, lhs.cs) || !fits(rhs.data.len(), k, n, rhs.rs, rhs.cs) {
        return Err(msg(format!("matmul: an operand is too small for {m}x{k} times {k}x{n}")));
    }
    // SAFETY: every index the GEMM touches, (i, j) -> i * rs + j * cs for i < rows, j < cols, was checked above to
    // lie inside its slice; `dst` is borrowed mutably, so it aliases neither operand.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_cs as isize,
            dst_rs as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    }
    Ok(())
}

/// A pixel type the first layer reads.
trait Pixel: Copy {
    fn to_f32(self) -> f32;
}
impl Pixel for u8 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self as f32
    }
}
impl Pixel for f32 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
}

/// The input of a convolution's im2col.
#[derive(Clone, Copy)]
enum Src<'a> {
    U8(&'a [u8]),
    F32(&'a [f32]),
    Nhwc(&'a [f32]),
}

#[inline(always)]
fn im2col_frames_k<T: Pixel>(
    x: &[T],
    g: &ConvGeom,
    rows: std::ops::Range<usize>,
    k: usize,
    cols: &mut [f32],
    line: &mut Vec<f32>,
) {
    let (p, ow, ckk, s) = (g.positions(), g.ow(), g.ckk(), g.s);
    let line = sized(line, g.w);
    let mut r = rows.start;
    while r < rows.end {
        // The rows r..r + n share one output line (b, oy): each input line under the kernel is converted to f32
        // once, then its windows are copied out as k-value runs.
        let (b, q) = (r / p, r % p);
        let (oy, ox0) = (q / ow, q % ow);
        let n = (ow - ox0).min(rows.end - r);
        let (xa, xb) = (ox0 * s, (ox0 + n - 1) * s + k);
        let base = (r - rows.start) * ckk;
        for ci in 0..g.c {
            let plane = (b * g.c + ci) * g.h;
            for ky in 0..k {
                let src = &x[(plane + oy * s + ky) * g.w..][xa..xb];
                let line = &mut line[..xb - xa];
                for (d, v) in line.iter_mut().zip(src) {
                    *d = v.to_f32() * FRAME_SCALE;
                }
                let off = base + (ci * k + ky) * k;
                for j in 0..n {
                    cols[off + j * ckk..][..k].copy_from_slice(&line[j * s..][..k]);
                }
            }
        }
        r += n;
    }
}

/// Columns of output rows `rows` (flat `(b, oy, ox)`) of NCHW frames, in `(c, ky, kx)` order, scaled by 1/255.
fn im2col_frames<T: Pixel>(x: &[T], g: &ConvGeom, rows: std::ops::Range<usize>, cols: &mut [f32], line: &mut Vec<f32>) {
    // Nature CNN layer 1 (8x8): a constant kernel size turns each window run into one vector move.
    match g.k {
        8 => im2col_frames_k(x, g, rows, 8, cols, line),
        k => im2col_frames_k(x, g, rows, k, cols, line),
    }
}

/// Columns of output rows `rows` of an NHWC input, in `(ky, kx, c)` order: one `k * c` run per kernel row.
fn im2col_nhwc(x: &[f32], g: &ConvGeom, rows: std::ops::Range<usize>, cols: &mut [f32]) {
    let (p, ow, run) = (g.positions(), g.ow(), g.k * g.c);
    for (r, dst) in rows.zip(cols.chunks_exact_mut(g.ckk())) {
        let (b, q) = (r / p, r % p);
        let (y0, x0) = ((q / ow) * g.s, (q % ow) * g.s);
        for (ky, d) in dst.chunks_exact_mut(run).enumerate() {
            d.copy_from_slice(&x[((b * g.h + y0 + ky) * g.w + x0) * g.c..][..run]);
        }
    }
}

/// The adjoint of [`im2col_nhwc`]: adds the column gradients of rows `rows` into the NHWC input gradient.
fn col2im_nhwc(dcols: &[f32], g: &ConvGeom, rows: std::ops::Range<usize>, dx: &mut [f32]) {
    let (p, ow, run) = (g.positions(), g.ow(), g.k * g.c);
    for (r, src) in rows.zip(dcols.chunks_exact(g.ckk())) {
        let (b, q) = (r / p, r % p);
        let (y0, x0) = ((q / ow) * g.s, (q % ow) * g.s);
        for (ky, s) in src.chunks_exact(run).enumerate() {
            let d = &mut dx[((b * g.h + y0 + ky) * g.w + x0) * g.c..][..run];
            for (d, s) in d.iter_mut().zip(s) {
                *d += s;
            }
        }
    }
}

/// Columns of output rows `rows` into `cols`; `line` is scratch for the frames path.
fn im2col(src: Src, g: &ConvGeom, rows: std::ops::Range<usize>, cols: &mut [f32], line: &mut Vec<f32>) {
    match src {
        Src::U8(x) => im2col_frames(x, g, rows, cols, line),
        Src::F32(x) => im2col_frames(x, g, rows, cols, line),
        Src::Nhwc(x) => im2col_nhwc(x, g, rows, cols),
    }
}

/// The weight as the GEMM's `[out, ckk]` matrix in the column order of `input`: the PyTorch layout itself for
/// frames, `(ky, kx, c)` for NHWC inputs (written into `buf`).
fn weight_matrix<'a>(w: &'a [f32], g: &ConvGeom, input: ConvInput, buf: &'a mut Vec<f32>) -> &'a [f32] {
    match input {
        ConvInput::Frames => w,
        ConvInput::Nhwc => {
            let (c, kk) = (g.c, g.k * g.k);
            let m = sized(buf, w.len());
            for o in 0..g.out {
                for ci in 0..c {
                    for j in 0..kk {
                        m[(o * kk + j) * c + ci] = w[(o * c + ci) * kk + j];
                    }
                }
            }
            m
        }
    }
}

/// Rows per im2col chunk.
fn chunk_rows(ckk: usize) -> usize {
    (CHUNK_FLOATS / ckk).max(8)
}

impl ConvOp {
    fn check(&self, x_dims: &[usize], x_dtype: DType, w_dims: &[usize], b_dims: &[usize]) -> Result<usize> {
        let g = &self.geom;
        if !g.valid() {
            return Err(msg(format!("conv: invalid geometry {g:?}")));
        }
        let want = match self.input {
            ConvInput::Frames => [g.c, g.h, g.w],
            ConvInput::Nhwc => [g.h, g.w, g.c],
        };
        let dtype_ok = match self.input {
            ConvInput::Frames => matches!(x_dtype, DType::U8 | DType::F32),
            ConvInput::Nhwc => x_dtype == DType::F32,
        };
        if x_dims.len() != 4 || x_dims[1..] != want || !dtype_ok {
            return Err(msg(format!(
                "conv: input {x_dims:?} ({x_dtype:?}) does not match the layer's [B, {want:?}] ({:?} input)",
                self.input
            )));
        }
        if w_dims != [g.out, g.c, g.k, g.k] || b_dims != [g.out] {
            return Err(msg(format!(
                "conv: weight {w_dims:?} / bias {b_dims:?}, expected [{}, {}, {}, {}] / [{}]",
                g.out, g.c, g.k, g.k, g.out
            )));
        }
        Ok(x_dims[0])
    }

    fn out_shape(&self, batch: usize) -> Shape {
        let g = &self.geom;
        if self.nchw_out { (batch, g.out, g.oh(), g.ow()).into() } else { (batch, g.oh(), g.ow(), g.out).into() }
    }

    /// Samples per parallel task: one im2col chunk's worth, at least one sample.
    fn samples_per_task(&self) -> usize {
        (chunk_rows(self.geom.ckk()) / self.geom.positions()).max(1)
    }

    /// The forward pass on slices: the output in [`ConvOp::out_shape`] layout. With several threads, groups of
    /// samples run as rayon tasks (each with its own scratch and a single-threaded GEMM): one fork-join per layer
    /// instead of one per GEMM, which a busy or preempted core slows far less.
    fn forward(&self, src: Src, w: &[f32], bias: &[f32], batch: usize) -> Result<Vec<f32>> {
        self.forward_threads(src, w, bias, batch, threads())
    }

    /// [`ConvOp::forward`] as if `threads` threads were configured (tests run both paths).
    fn forward_threads(&self, src: Src, w: &[f32], bias: &[f32], batch: usize, threads: usize) -> Result<Vec<f32>> {
        let g = &self.geom;
        let (out, p) = (g.out, g.positions());
        let mut y = vec![0.0f32; batch * p * out];
        let mut wbuf = with_scratch(|s| std::mem::take(&mut s.wmat));
        let wm = weight_matrix(w, g, self.input, &mut wbuf);
        let run = |s0: usize, yc: &mut [f32], par: Parallelism| {
            with_scratch(|s| {
                let rows = s0 * p..s0 * p + yc.len() / out;
                if !self.nchw_out {
                    return self.forward_rows(src, wm, bias, rows, &mut s.cols, yc, par);
                }
                // NCHW output: NHWC rows into scratch, then transposed per sample.
                let ys = sized(&mut s.y, yc.len());
                self.forward_rows(src, wm, bias, rows, &mut s.cols, ys, par)?;
                for (ys, yo) in ys.chunks_exact(p * out).zip(yc.chunks_exact_mut(p * out)) {
                    for q in 0..p {
                        for o in 0..out {
                            yo[o * p + q] = ys[q * out + o];
                        }
                    }
                }
                Ok(())
            })
        };
        let spt = self.samples_per_task();
        if threads > 1 && batch > spt {
            y.par_chunks_mut(spt * p * out).enumerate().try_for_each(|(t, yc)| run(t * spt, yc, Parallelism::None))?;
        } else {
            run(0, &mut y, parallelism())?;
        }
        with_scratch(|s| s.wmat = wbuf);
        Ok(y)
    }

    /// `y[rows, out] = relu(cols . wm^T + bias)` for the output rows `rows` (`y` holds exactly those), chunk by
    /// chunk.
    #[allow(clippy::too_many_arguments)]
    fn forward_rows(
        &self,
        src: Src,
        wm: &[f32],
        bias: &[f32],
        rows: std::ops::Range<usize>,
        bufs: &mut ColBufs,
        y: &mut [f32],
        par: Parallelism,
    ) -> Result<()> {
        let g = &self.geom;
        let (ckk, out) = (g.ckk(), g.out);
        let chunk = chunk_rows(ckk);
        let start = rows.start;
        for r0 in rows.clone().step_by(chunk) {
            let r1 = (r0 + chunk).min(rows.end);
            let cols = sized(&mut bufs.cols, (r1 - r0) * ckk);
            im2col(src, g, r0..r1, cols, &mut bufs.line);
            let yc = &mut y[(r0 - start) * out..(r1 - start) * out];
            let (lhs, rhs) = (View { data: cols, rs: ckk, cs: 1 }, View { data: wm, rs: 1, cs: ckk });
            matmul(r1 - r0, out, ckk, yc, out, false, lhs, rhs, par)?;
            for row in yc.chunks_exact_mut(out) {
                for (v, b) in row.iter_mut().zip(bias) {
                    let t = *v + b;
                    // NaN stays NaN (as torch.relu), so a diverged network still shows in the loss.
                    *v = if t < 0.0 { 0.0 } else { t };
                }
            }
        }
        Ok(())
    }

    /// The backward pass on slices: `(dx, dw, db)`, `dx` only for NHWC inputs.
    #[allow(clippy::type_complexity)]
    fn backward(
        &self,
        src: Src,
        w: &[f32],
        res: &[f32],
        grad: &[f32],
        batch: usize,
    ) -> Result<(Option<Vec<f32>>, Vec<f32>, Vec<f32>)> {
        self.backward_threads(src, w, res, grad, batch, threads())
    }

    /// [`ConvOp::backward`] as if `threads` threads were configured (tests run both paths).
    #[allow(clippy::type_complexity)]
    fn backward_threads(
        &self,
        src: Src,
        w: &[f32],
        res: &[f32],
        grad: &[f32],
        batch: usize,
        threads: usize,
    ) -> Result<(Option<Vec<f32>>, Vec<f32>, Vec<f32>)> {
        let g = &self.geom;
        let (ckk, out, p) = (g.ckk(), g.out, g.positions());
        let rows = batch * p;
        let mut db = vec![0.0f32; out];
        let mut dw = vec![0.0f32; out * ckk];
        let mut dx = (self.input == ConvInput::Nhwc).then(|| vec![0.0f32; batch * g.h * g.w * g.c]);
        // Buffers taken out of the scratch for the whole pass, so that tasks on this thread can use the scratch.
        let (mut dzbuf, mut wbuf, mut dwbuf) =
            with_scratch(|s| (std::mem::take(&mut s.dz), std::mem::take(&mut s.wmat), std::mem::take(&mut s.dwmat)));
        // dz = grad * relu'(res), as rows x out; torch's threshold_backward passes the gradient where out > 0.
        let dz = sized(&mut dzbuf, rows * out);
        if self.nchw_out {
            let per = p * out;
            for ((dzb, gb), rb) in dz.chunks_exact_mut(per).zip(grad.chunks_exact(per)).zip(res.chunks_exact(per)) {
                for o in 0..out {
                    for q in 0..p {
                        let i = o * p + q;
                        dzb[q * out + o] = if rb[i] <= 0.0 { 0.0 } else { gb[i] };
                    }
                }
            }
        } else {
            for ((d, gv), r) in dz.iter_mut().zip(grad).zip(res) {
                *d = if *r <= 0.0 { 0.0 } else { *gv };
            }
        }
        for row in dz.chunks_exact(out) {
            for (d, v) in db.iter_mut().zip(row) {
                *d += v;
            }
        }
        let dz: &[f32] = dz;
        let wm = weight_matrix(w, g, self.input, &mut wbuf);
        match self.input {
            ConvInput::Frames => self.weight_and_input_grads(src, wm, dz, batch, &mut dw, None, threads)?,
            ConvInput::Nhwc => {
                // Weight gradient in the GEMM's (ky, kx, c) column order, then back to PyTorch's layout.
                let dwm = sized(&mut dwbuf, out * ckk);
                self.weight_and_input_grads(src, wm, dz, batch, dwm, dx.as_deref_mut(), threads)?;
                let (c, kk) = (g.c, g.k * g.k);
                for o in 0..out {
                    for ci in 0..c {
                        for j in 0..kk {
                            dw[(o * c + ci) * kk + j] = dwm[(o * kk + j) * c + ci];
                        }
                    }
                }
            }
        }
        with_scratch(|s| {
            s.dz = dzbuf;
            s.wmat = wbuf;
            s.dwmat = dwbuf;
        });
        Ok((dx, dw, db))
    }

    /// `dwm = dz^T . cols` over all rows and, with `dx`, the input gradient. With several threads, groups of
    /// samples run as rayon tasks, each with its own weight-gradient partial (summed in task order, so the result
    /// does not depend on the scheduling) and its own samples of `dx`.
    #[allow(clippy::too_many_arguments)]
    fn weight_and_input_grads(
        &self,
        src: Src,
        wm: &[f32],
        dz: &[f32],
        batch: usize,
        dwm: &mut [f32],
        dx: Option<&mut [f32]>,
        threads: usize,
    ) -> Result<()> {
        let g = &self.geom;
        let p = g.positions();
        let spt = self.samples_per_task();
        if threads <= 1 || batch <= spt {
            return with_scratch(|s| {
                self.backward_rows(src, wm, dz, 0..batch * p, &mut s.cols, dwm, dx, parallelism())
            });
        }
        let task = |t: usize, dxc: Option<&mut [f32]>| -> Result<Vec<f32>> {
            let rows = t * spt * p..((t + 1) * spt).min(batch) * p;
            let mut part = vec![0.0f32; dwm.len()];
            with_scratch(|s| self.backward_rows(src, wm, dz, rows, &mut s.cols, &mut part, dxc, Parallelism::None))?;
            Ok(part)
        };
        let parts: Vec<Result<Vec<f32>>> = match dx {
            Some(dx) => dx.par_chunks_mut(spt * g.h * g.w * g.c).enumerate().map(|(t, d)| task(t, Some(d))).collect(),
            None => (0..batch.div_ceil(spt)).into_par_iter().map(|t| task(t, None)).collect(),
        };
        for (i, part) in parts.into_iter().enumerate() {
            let part = part?;
            if i == 0 {
                dwm.copy_from_slice(&part);
            } else {
                for (d, v) in dwm.iter_mut().zip(&part) {
                    *d += v;
                }
            }
        }
        Ok(())
    }

    /// For the output rows `rows`, chunk by chunk: `dwm (+)= dz^T . cols`, and with `dx` (the input gradient of
    /// the samples of `rows`, which must start at a sample boundary), `dcols = dz . wm` added into `dx` by col2im.
    #[allow(clippy::too_many_arguments)]
    fn backward_rows(
        &self,
        src: Src,
        wm: &[f32],
        dz: &[f32],
        rows: std::ops::Range<usize>,
        bufs: &mut ColBufs,
        dwm: &mut [f32],
        mut dx: Option<&mut [f32]>,
        par: Parallelism,
    ) -> Result<()> {
        let g = &self.geom;
        let (ckk, out) = (g.ckk(), g.out);
        let chunk = chunk_rows(ckk);
        let start = rows.start;
        for r0 in rows.clone().step_by(chunk) {
            let r1 = (r0 + chunk).min(rows.end);
            let n = r1 - r0;
            let cols = sized(&mut bufs.cols, n * ckk);
            im2col(src, g, r0..r1, cols, &mut bufs.line);
            let dzc = &dz[r0 * out..r1 * out];
            let (lhs, rhs) = (View { data: dzc, rs: 1, cs: out }, View { data: cols, rs: ckk, cs: 1 });
            matmul(out, ckk, n, dwm, ckk, r0 > start, lhs, rhs, par)?;
            if let Some(dx) = dx.as_deref_mut() {
                // dcols into the same scratch (the chunk's columns are no longer needed).
                let (lhs, rhs) = (View { data: dzc, rs: out, cs: 1 }, View { data: wm, rs: ckk, cs: 1 });
                matmul(n, ckk, out, cols, ckk, false, lhs, rhs, par)?;
                col2im_nhwc(cols, g, r0 - start..r1 - start, dx);
            }
        }
        Ok(())
    }
}

impl CustomOp3 for ConvOp {
    fn name(&self) -> &'static str {
        "bellman-conv-bias-relu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let batch = self.check(l1.dims(), s1.dtype(), l2.dims(), l3.dims())?;
        let w = slice::<f32>(s2, l2, "conv weight")?;
        let b = slice::<f32>(s3, l3, "conv bias")?;
        let src = match (self.input, s1) {
            (ConvInput::Frames, CpuStorage::U8(_)) => Src::U8(slice(s1, l1, "conv input")?),
            (ConvInput::Frames, _) => Src::F32(slice(s1, l1, "conv input")?),
            (ConvInput::Nhwc, _) => Src::Nhwc(slice(s1, l1, "conv input")?),
        };
        let y = self.forward(src, w, b, batch)?;
        Ok((CpuStorage::F32(y), self.out_shape(batch)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let batch = self.check(x.dims(), x.dtype(), w.dims(), b.dims())?;
        let (x, w, grad) = (x.contiguous()?, w.contiguous()?, grad.contiguous()?);
        let (xs, xl) = x.storage_and_layout();
        let (ws, wl) = w.storage_and_layout();
        let (rs, rl) = res.storage_and_layout();
        let (gs, gl) = grad.storage_and_layout();
        let (xs, ws, rs, gs) =
            (cpu(&xs, "conv input")?, cpu(&ws, "conv weight")?, cpu(&rs, "conv output")?, cpu(&gs, "conv gradient")?);
        let src = match (self.input, xs) {
            (ConvInput::Frames, CpuStorage::U8(_)) => Src::U8(slice(xs, xl, "conv input")?),
            (ConvInput::Frames, _) => Src::F32(slice(xs, xl, "conv input")?),
            (ConvInput::Nhwc, _) => Src::Nhwc(slice(xs, xl, "conv input")?),
        };
        let wv = slice::<f32>(ws, wl, "conv weight")?;
        let rv = slice::<f32>(rs, rl, "conv output")?;
        let gv = slice::<f32>(gs, gl, "conv gradient")?;
        if rv.len() != gv.len() || gv.len() != batch * self.geom.positions() * self.geom.out {
            return Err(msg(format!("conv backward: gradient of {} values for an output of {}", gv.len(), rv.len())));
        }
        let (dx, dw, db) = self.backward(src, wv, rv, gv, batch)?;
        let dx = dx.map(|v| Tensor::from_vec(v, x.shape(), &Device::Cpu)).transpose()?;
        Ok((
            dx,
            Some(Tensor::from_vec(dw, w.shape(), &Device::Cpu)?),
            Some(Tensor::from_vec(db, b.shape(), &Device::Cpu)?),
        ))
    }
}

/// Weight size (`in * out`) from which [`LinearOp`] writes its GEMM column-major (reading the weight in place
/// pays off for the Nature CNN's 3136x512 layer; for the MLPs' layers, up to 256x256, the strided transpose back
/// cost a sixth of a CartPole update, measured with perf).
const LARGE_LINEAR: usize = 1 << 18;

impl LinearOp {
    fn check(x_dims: &[usize], x_dtype: DType, w_dims: &[usize], b_dims: &[usize]) -> Result<(usize, usize, usize)> {
        let n_in: usize = x_dims.iter().skip(1).product();
        if x_dims.len() < 2 || x_dtype != DType::F32 || w_dims.len() != 2 || w_dims[1] != n_in || b_dims != [w_dims[0]]
        {
            return Err(msg(format!(
                "linear: input {x_dims:?} ({x_dtype:?}), weight {w_dims:?} and bias {b_dims:?} do not fit \
                 ([B, in] f32, [out, in], [out])"
            )));
        }
        Ok((x_dims[0], n_in, w_dims[0]))
    }

    fn forward(
        &self,
        x: &[f32],
        w: &[f32],
        bias: &[f32],
        (batch, n_in, out): (usize, usize, usize),
    ) -> Result<Vec<f32>> {
        let mut y = vec![0.0f32; batch * out];
        let (lhs, rhs) = (View { data: x, rs: n_in, cs: 1 }, View { data: w, rs: 1, cs: n_in });
        if n_in * out < LARGE_LINEAR {
            // Small layers (MLPs): the GEMM writes y row-major, then bias and ReLU run over contiguous rows.
            matmul_strided(batch, out, n_in, &mut y, (out, 1), false, lhs, rhs, parallelism())?;
            for row in y.chunks_exact_mut(out) {
                for (v, b) in row.iter_mut().zip(bias) {
                    let t = *v + b;
                    *v = if self.relu && t < 0.0 { 0.0 } else { t };
                }
            }
            return Ok(y);
        }
        with_scratch(|s| {
            // The GEMM writes y^T ([out, B]): with a column-major destination `gemm` reads the weight in place
            // instead of packing all of it (2.7x faster for the 3136x512 layer at batch 32, measured).
            let yt = sized(&mut s.y, batch * out);
            matmul_strided(batch, out, n_in, yt, (1, batch), false, lhs, rhs, parallelism())?;
            for (bi, row) in y.chunks_exact_mut(out).enumerate() {
                for ((v, b), t) in row.iter_mut().zip(bias).zip(yt[bi..].iter().step_by(batch)) {
                    let t = t + b;
                    *v = if self.relu && t < 0.0 { 0.0 } else { t };
                }
            }
            Ok::<(), Error>(())
        })?;
        Ok(y)
    }

    #[allow(clippy::type_complexity)]
    fn backward(
        &self,
        x: &[f32],
        w: &[f32],
        res: &[f32],
        grad: &[f32],
        (batch, n_in, out): (usize, usize, usize),
    ) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
        let mut db = vec![0.0f32; out];
        let mut dw = vec![0.0f32; out * n_in];
        let mut dx = vec![0.0f32; batch * n_in];
        with_scratch(|s| {
            let dz = sized(&mut s.dz, batch * out);
            for ((d, g), r) in dz.iter_mut().zip(grad).zip(res) {
                *d = if self.relu && *r <= 0.0 { 0.0 } else { *g };
            }
            for row in dz.chunks_exact(out) {
                for (d, v) in db.iter_mut().zip(row) {
                    *d += v;
                }
            }
            let dz: &[f32] = dz;
            // dW[out, in] = dz^T . x; dx[B, in] = dz . W
            matmul(
                out,
                n_in,
                batch,
                &mut dw,
                n_in,
                false,
                View { data: dz, rs: 1, cs: out },
                View { data: x, rs: n_in, cs: 1 },
                parallelism(),
            )?;
            matmul(
                batch,
                n_in,
                out,
                &mut dx,
                n_in,
                false,
                View { data: dz, rs: out, cs: 1 },
                View { data: w, rs: n_in, cs: 1 },
                parallelism(),
            )
        })?;
        Ok((dx, dw, db))
    }
}

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        "bellman-linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dims = Self::check(l1.dims(), s1.dtype(), l2.dims(), l3.dims())?;
        let y = self.forward(
            slice(s1, l1, "linear input")?,
            slice(s2, l2, "linear weight")?,
            slice(s3, l3, "linear bias")?,
            dims,
        )?;
        Ok((CpuStorage::F32(y), (dims.0, dims.2).into()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dims = Self::check(x.dims(), x.dtype(), w.dims(), b.dims())?;
        let (x, w, grad) = (x.contiguous()?, w.contiguous()?, grad.contiguous()?);
        let (xs, xl) = x.storage_and_layout();
        let (ws, wl) = w.storage_and_layout();
        let (rs, rl) = res.storage_and_layout();
        let (gs, gl) = grad.storage_and_layout();
        let xv = slice::<f32>(cpu(&xs, "linear input")?, xl, "linear input")?;
        let wv = slice::<f32>(cpu(&ws, "linear weight")?, wl, "linear weight")?;
        let rv = slice::<f32>(cpu(&rs, "linear output")?, rl, "linear output")?;
        let gv = slice::<f32>(cpu(&gs, "linear gradient")?, gl, "linear gradient")?;
        if rv.len() != gv.len() || gv.len() != dims.0 * dims.2 {
            return Err(msg(format!("linear backward: gradient of {} values for an output of {}", gv.len(), rv.len())));
        }
        let (dx, dw, db) = self.backward(xv, wv, rv, gv, dims)?;
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), &Device::Cpu)?),
            Some(Tensor::from_vec(dw, w.shape(), &Device::Cpu)?),
            Some(Tensor::from_vec(db, b.shape(), &Device::Cpu)?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Var;

    // The `bellman` binary and the benchmarks allocate with mimalloc (GPU.md); the profile below measures the same.
    #[global_allocator]
    static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

    use rand::{Rng, SeedableRng};

    use super::*;

    fn rng(seed: u64) -> rand_pcg::Pcg64 {
        rand_pcg::Pcg64::seed_from_u64(seed)
    }

    fn uniform(rng: &mut rand_pcg::Pcg64, n: usize, bound: f32) -> Vec<f32> {
        (0..n).map(|_| rng.random_range(-bound..=bound)).collect()
    }

    fn max_abs(t: &Tensor) -> f32 {
        t.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
    }

    /// `|a - b| <= tol * max|b|` elementwise, and `b` not all zero (so the comparison means something).
    fn assert_close(a: &Tensor, b: &Tensor, tol: f32, what: &str) {
        assert_eq!(a.dims(), b.dims(), "{what}: shapes");
        let m = max_abs(b);
        assert!(m > 0.0, "{what}: the reference is all zeros");
        let d = max_abs(&(a - b).unwrap());
        assert!(d <= tol * m, "{what}: max diff {d}, max value {m}");
    }

    /// One conv layer through `ConvOp` and through candle's `conv2d` + bias + ReLU on the same NCHW input:
    /// outputs and the gradients of `sum(out * r)` with respect to the weight, the bias and (for NHWC inputs) the
    /// input must agree.
    fn check_against_candle(g: ConvGeom, input: ConvInput, nchw_out: bool, batch: usize, u8_frames: bool, seed: u64) {
        let dev = &Device::Cpu;
        let mut r = rng(seed);
        let bound = 1.0 / ((g.c * g.k * g.k) as f32).sqrt();
        let w = Var::from_vec(uniform(&mut r, g.out * g.c * g.k * g.k, bound), (g.out, g.c, g.k, g.k), dev).unwrap();
        let b = Var::from_vec(uniform(&mut r, g.out, bound), g.out, dev).unwrap();
        let n = batch * g.c * g.h * g.w;
        let (ours, x_ref, x_var) = match input {
            ConvInput::Frames => {
                let px: Vec<u8> = (0..n).map(|_| r.random_range(0..=255u8)).collect();
                let x8 = Tensor::from_vec(px, (batch, g.c, g.h, g.w), dev).unwrap();
                let xf = x8.to_dtype(DType::F32).unwrap();
                let ours = if u8_frames { x8 } else { xf.clone() };
                (ours, (xf * FRAME_SCALE as f64).unwrap(), None)
            }
            ConvInput::Nhwc => {
                let x = Var::from_vec(uniform(&mut r, n, 1.0), (batch, g.c, g.h, g.w), dev).unwrap();
                let nhwc = x.as_tensor().permute((0, 2, 3, 1)).unwrap().contiguous().unwrap();
                (nhwc, x.as_tensor().clone(), Some(x))
            }
        };
        let op = ConvOp { geom: g, input, nchw_out };
        let mut y = ours.apply_op3(w.as_tensor(), b.as_tensor(), op).unwrap();
        if !nchw_out {
            assert_eq!(y.dims(), &[batch, g.oh(), g.ow(), g.out]);
            y = y.permute((0, 3, 1, 2)).unwrap();
        }
        assert_eq!(y.dims(), &[batch, g.out, g.oh(), g.ow()]);
        let y_ref = x_ref.conv2d(w.as_tensor(), 0, g.s, 1, 1).unwrap();
        let y_ref = y_ref.broadcast_add(&b.as_tensor().reshape((1, g.out, 1, 1)).unwrap()).unwrap().relu().unwrap();
        assert_close(&y, &y_ref, 1e-5, "forward");
        let rw = Tensor::from_vec(uniform(&mut r, y_ref.elem_count(), 1.0), y_ref.shape(), dev).unwrap();
        let ga = (&y * &rw).unwrap().sum_all().unwrap().backward().unwrap();
        let gb = (&y_ref * &rw).unwrap().sum_all().unwrap().backward().unwrap();
        assert_close(ga.get(&w).unwrap(), gb.get(&w).unwrap(), 1e-4, "weight gradient");
        assert_close(ga.get(&b).unwrap(), gb.get(&b).unwrap(), 1e-4, "bias gradient");
        if let Some(x) = x_var {
            assert_close(ga.get(&x).unwrap(), gb.get(&x).unwrap(), 1e-4, "input gradient");
        }
    }

    /// The Nature CNN's three layers (at batch sizes that span several im2col chunks) and small odd shapes, against
    /// candle's `conv2d` (square inputs: candle's conv2d backward mishandles non-square ones).
    #[test]
    fn conv_op_matches_candle_conv2d() {
        let nature1 = ConvGeom { c: 4, h: 84, w: 84, k: 8, s: 4, out: 32 };
        let nature2 = ConvGeom { c: 32, h: 20, w: 20, k: 4, s: 2, out: 64 };
        let nature3 = ConvGeom { c: 64, h: 9, w: 9, k: 3, s: 1, out: 64 };
        assert!(2 * nature1.positions() > chunk_rows(nature1.ckk()));
        assert!(4 * nature2.positions() > chunk_rows(nature2.ckk()));
        check_against_candle(nature1, ConvInput::Frames, false, 1, true, 1);
        check_against_candle(nature1, ConvInput::Frames, false, 2, true, 2);
        check_against_candle(nature2, ConvInput::Nhwc, false, 4, false, 3);
        check_against_candle(nature3, ConvInput::Nhwc, true, 1, false, 4);
        check_against_candle(nature3, ConvInput::Nhwc, false, 2, false, 5);
        // A generic (not 8x8) first layer on f32 frames, and a strided NHWC layer with few channels.
        check_against_candle(ConvGeom { c: 3, h: 13, w: 13, k: 5, s: 2, out: 6 }, ConvInput::Frames, true, 3, false, 6);
        check_against_candle(ConvGeom { c: 3, h: 10, w: 10, k: 3, s: 2, out: 4 }, ConvInput::Nhwc, true, 2, false, 7);
    }

    /// Direct convolution on NCHW `f32` data (the definition): output `[B, out, oh, ow]` after bias and ReLU, and,
    /// for an upstream gradient `gy` of that layout, the gradients of the weight, bias and input.
    fn direct(g: &ConvGeom, x: &[f32], w: &[f32], b: &[f32], gy: &[f32], batch: usize) -> [Vec<f32>; 4] {
        let (oh, ow, k) = (g.oh(), g.ow(), g.k);
        let mut y = vec![0.0; batch * g.out * oh * ow];
        let (mut dw, mut db, mut dx) = (vec![0.0; w.len()], vec![0.0; g.out], vec![0.0; x.len()]);
        for bi in 0..batch {
            for o in 0..g.out {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let xi = |ci: usize, ky: usize, kx: usize| {
                            ((bi * g.c + ci) * g.h + oy * g.s + ky) * g.w + ox * g.s + kx
                        };
                        let wi = |ci: usize, ky: usize, kx: usize| ((o * g.c + ci) * k + ky) * k + kx;
                        let mut acc = b[o] as f64;
                        for ci in 0..g.c {
                            for ky in 0..k {
                                for kx in 0..k {
                                    acc += (x[xi(ci, ky, kx)] * w[wi(ci, ky, kx)]) as f64;
                                }
                            }
                        }
                        let yi = ((bi * g.out + o) * oh + oy) * ow + ox;
                        y[yi] = acc.max(0.0) as f32;
                        if acc <= 0.0 {
                            continue;
                        }
                        let gz = gy[yi];
                        db[o] += gz;
                        for ci in 0..g.c {
                            for ky in 0..k {
                                for kx in 0..k {
                                    dw[wi(ci, ky, kx)] += gz * x[xi(ci, ky, kx)];
                                    dx[xi(ci, ky, kx)] += gz * w[wi(ci, ky, kx)];
                                }
                            }
                        }
                    }
                }
            }
        }
        [y, dw, db, dx]
    }

    fn to_nhwc(x: &[f32], batch: usize, c: usize, hw: usize) -> Vec<f32> {
        let mut out = vec![0.0; x.len()];
        for bi in 0..batch {
            for ci in 0..c {
                for p in 0..hw {
                    out[(bi * hw + p) * c + ci] = x[(bi * c + ci) * hw + p];
                }
            }
        }
        out
    }

    fn close(a: &[f32], b: &[f32], tol: f32, what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        let m = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(m > 0.0, "{what}: the reference is all zeros");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= tol * m, "{what}[{i}]: {x} vs {y} (max {m})");
        }
    }

    /// Non-square inputs, odd strides and several chunks, against the direct convolution above (forward and
    /// backward on the kernels' slices).
    #[test]
    fn conv_kernels_match_direct_convolution_on_non_square_inputs() {
        let mut r = rng(11);
        // u8 frames through the 8x8 path, spanning three chunks (chunk_rows(8 * 8 * 2) = 1024 rows).
        let g = ConvGeom { c: 2, h: 71, w: 48, k: 8, s: 2, out: 5 };
        let batch = 4;
        assert!(batch * g.positions() > 2 * chunk_rows(g.ckk()));
        let px: Vec<u8> = (0..batch * g.c * g.h * g.w).map(|_| r.random_range(0..=255u8)).collect();
        let xf: Vec<f32> = px.iter().map(|v| *v as f32 * FRAME_SCALE).collect();
        let bound = 1.0 / (g.ckk() as f32).sqrt();
        let (w, b) = (uniform(&mut r, g.out * g.ckk(), bound), uniform(&mut r, g.out, bound));
        let gy = uniform(&mut r, batch * g.out * g.positions(), 1.0);
        let [y_ref, dw_ref, db_ref, _] = direct(&g, &xf, &w, &b, &gy, batch);
        let op = ConvOp { geom: g, input: ConvInput::Frames, nchw_out: true };
        let y = op.forward(Src::U8(&px), &w, &b, batch).unwrap();
        close(&y, &y_ref, 1e-5, "frames forward");
        let (dx, dw, db) = op.backward(Src::U8(&px), &w, &y, &gy, batch).unwrap();
        assert!(dx.is_none(), "no input gradient for frames");
        close(&dw, &dw_ref, 1e-4, "frames weight gradient");
        close(&db, &db_ref, 1e-4, "frames bias gradient");

        // An NHWC layer (7x3 kernel window positions, stride 2) with NHWC output.
        let g = ConvGeom { c: 5, h: 11, w: 7, k: 3, s: 2, out: 6 };
        let batch = 3;
        let x = uniform(&mut r, batch * g.c * g.h * g.w, 1.0);
        let bound = 1.0 / (g.ckk() as f32).sqrt();
        let (w, b) = (uniform(&mut r, g.out * g.ckk(), bound), uniform(&mut r, g.out, bound));
        let gy = uniform(&mut r, batch * g.out * g.positions(), 1.0);
        let [y_ref, dw_ref, db_ref, dx_ref] = direct(&g, &x, &w, &b, &gy, batch);
        let xn = to_nhwc(&x, batch, g.c, g.h * g.w);
        let op = ConvOp { geom: g, input: ConvInput::Nhwc, nchw_out: false };
        let y = op.forward(Src::Nhwc(&xn), &w, &b, batch).unwrap();
        close(&y, &to_nhwc(&y_ref, batch, g.out, g.positions()), 1e-5, "nhwc forward");
        let gyn = to_nhwc(&gy, batch, g.out, g.positions());
        let (dx, dw, db) = op.backward(Src::Nhwc(&xn), &w, &y, &gyn, batch).unwrap();
        close(&dw, &dw_ref, 1e-4, "nhwc weight gradient");
        close(&db, &db_ref, 1e-4, "nhwc bias gradient");
        close(&dx.unwrap(), &to_nhwc(&dx_ref, batch, g.c, g.h * g.w), 1e-4, "nhwc input gradient");
    }

    /// The multi-threaded path (sample groups as rayon tasks) computes what the single-threaded one does, for the
    /// Nature layers at batch sizes that do not divide into the groups evenly.
    #[test]
    fn parallel_sample_groups_match_the_sequential_path() {
        let mut r = rng(41);
        let layers = [
            (ConvGeom { c: 4, h: 84, w: 84, k: 8, s: 4, out: 32 }, ConvInput::Frames, false, 3),
            (ConvGeom { c: 32, h: 20, w: 20, k: 4, s: 2, out: 64 }, ConvInput::Nhwc, false, 7),
            (ConvGeom { c: 64, h: 9, w: 9, k: 3, s: 1, out: 64 }, ConvInput::Nhwc, true, 9),
        ];
        for (g, input, nchw_out, batch) in layers {
            let op = ConvOp { geom: g, input, nchw_out };
            let spt = op.samples_per_task();
            assert!(batch > spt && (spt == 1 || batch % spt != 0), "{g:?}: several groups, the last one short");
            let n = batch * g.c * g.h * g.w;
            let px: Vec<u8> = (0..n).map(|_| r.random_range(0..=255u8)).collect();
            let xf = uniform(&mut r, n, 1.0);
            let src = if input == ConvInput::Frames { Src::U8(&px) } else { Src::Nhwc(&xf) };
            let bound = 1.0 / (g.ckk() as f32).sqrt();
            let (w, b) = (uniform(&mut r, g.out * g.ckk(), bound), uniform(&mut r, g.out, bound));
            let gy = uniform(&mut r, batch * g.out * g.positions(), 1.0);
            let y1 = op.forward_threads(src, &w, &b, batch, 1).unwrap();
            let y2 = op.forward_threads(src, &w, &b, batch, 2).unwrap();
            close(&y2, &y1, 1e-6, "parallel forward");
            let (dx1, dw1, db1) = op.backward_threads(src, &w, &y1, &gy, batch, 1).unwrap();
            let (dx2, dw2, db2) = op.backward_threads(src, &w, &y1, &gy, batch, 2).unwrap();
            close(&dw2, &dw1, 1e-5, "parallel weight gradient");
            assert_eq!(db2, db1);
            assert_eq!(dx1.is_some(), input == ConvInput::Nhwc);
            if let (Some(a), Some(b)) = (dx2, dx1) {
                close(&a, &b, 1e-6, "parallel input gradient");
            }
        }
    }

    /// A layer that runs while this thread's scratch is in use (re-entered from a rayon worker) uses fresh
    /// buffers and computes the same values.
    #[test]
    fn reentrant_calls_use_fresh_scratch() {
        let mut r = rng(31);
        let g = ConvGeom { c: 3, h: 9, w: 9, k: 3, s: 1, out: 4 };
        let op = ConvOp { geom: g, input: ConvInput::Nhwc, nchw_out: true };
        let x = uniform(&mut r, 2 * g.c * g.h * g.w, 1.0);
        let (w, b) = (uniform(&mut r, g.out * g.ckk(), 0.3), uniform(&mut r, g.out, 0.3));
        let outer = op.forward(Src::Nhwc(&x), &w, &b, 2).unwrap();
        let inner = with_scratch(|_held| op.forward(Src::Nhwc(&x), &w, &b, 2).unwrap());
        assert_eq!(outer, inner);
        assert!(outer.iter().any(|v| *v > 0.0));
    }

    /// `LinearOp` equals candle's `flatten + matmul + bias (+ relu)`: output and gradients, batch 1 and 4.
    #[test]
    fn linear_op_matches_candle_linear() {
        let dev = &Device::Cpu;
        let mut r = rng(21);
        for (batch, relu) in [(1, true), (4, false), (4, true)] {
            let x = Var::from_vec(uniform(&mut r, batch * 21, 1.0), (batch, 3, 7), dev).unwrap();
            let w = Var::from_vec(uniform(&mut r, 5 * 21, 0.3), (5, 21), dev).unwrap();
            let b = Var::from_vec(uniform(&mut r, 5, 0.3), 5, dev).unwrap();
            let y = x.as_tensor().apply_op3(w.as_tensor(), b.as_tensor(), LinearOp { relu }).unwrap();
            let y_ref =
                x.flatten_from(1).unwrap().matmul(&w.t().unwrap()).unwrap().broadcast_add(b.as_tensor()).unwrap();
            let y_ref = if relu { y_ref.relu().unwrap() } else { y_ref };
            assert_close(&y, &y_ref, 1e-6, "linear forward");
            let rw = Tensor::from_vec(uniform(&mut r, batch * 5, 1.0), (batch, 5), dev).unwrap();
            let ga = (&y * &rw).unwrap().sum_all().unwrap().backward().unwrap();
            let gb = (&y_ref * &rw).unwrap().sum_all().unwrap().backward().unwrap();
            for (v, what) in [(&x, "input"), (&w, "weight"), (&b, "bias")] {
                assert_close(ga.get(v).unwrap(), gb.get(v).unwrap(), 1e-5, what);
            }
        }
    }

    /// Inputs that do not fit the layer are errors naming the shapes, never panics.
    #[test]
    fn mismatched_inputs_are_errors() {
        let dev = &Device::Cpu;
        let g = ConvGeom { c: 2, h: 12, w: 12, k: 4, s: 2, out: 3 };
        let w = Tensor::zeros((3, 2, 4, 4), DType::F32, dev).unwrap();
        let b = Tensor::zeros(3, DType::F32, dev).unwrap();
        let frames = ConvOp { geom: g, input: ConvInput::Frames, nchw_out: false };
        let nhwc = ConvOp { geom: g, input: ConvInput::Nhwc, nchw_out: false };
        let bad_hw = Tensor::zeros((1, 2, 12, 13), DType::U8, dev).unwrap();
        let e = bad_hw.apply_op3(&w, &b, frames).unwrap_err().to_string();
        assert!(e.contains("[1, 2, 12, 13]"), "{e}");
        let u8_nhwc = Tensor::zeros((1, 12, 12, 2), DType::U8, dev).unwrap();
        assert!(u8_nhwc.apply_op3(&w, &b, nhwc).unwrap_err().to_string().contains("U8"));
        let x = Tensor::zeros((1, 2, 12, 12), DType::F32, dev).unwrap();
        let e = x.apply_op3(&w.reshape((3, 2, 16)).unwrap(), &b, frames).unwrap_err().to_string();
        assert!(e.contains("[3, 2, 16]"), "{e}");
        let bad = ConvOp { geom: ConvGeom { k: 13, ..g }, ..frames };
        assert!(x.apply_op3(&w, &b, bad).unwrap_err().to_string().contains("invalid geometry"));
        let e = x.apply_op3(&w.reshape((3, 32)).unwrap(), &b, LinearOp { relu: true }).unwrap_err().to_string();
        assert!(e.contains("[1, 2, 12, 12]") && e.contains("[3, 32]"), "{e}");
        // The network makes its inputs contiguous; a strided view is an error, not a misread.
        let xt = Tensor::zeros((1, 12, 2, 12), DType::F32, dev).unwrap().transpose(1, 2).unwrap();
        assert!(xt.apply_op3(&w, &b, frames).unwrap_err().to_string().contains("not contiguous"));
        assert_eq!(xt.contiguous().unwrap().apply_op3(&w, &b, frames).unwrap().dims(), &[1, 5, 5, 3]);
    }

    /// CPU time of this thread in nanoseconds (Linux `schedstat`), so that timings on a shared machine count only
    /// this thread's work; wall time elsewhere.
    fn thread_ns() -> Option<u64> {
        std::fs::read_to_string("/proc/thread-self/schedstat").ok()?.split_whitespace().next()?.parse().ok()
    }

    fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }

    /// Where the time of a Nature-CNN update at batch 32 goes, per layer and per phase (mean thread CPU time and
    /// median wall time in ms). Run by hand, single thread:
    /// `RAYON_NUM_THREADS=1 cargo test --release -p bellman-agents --lib profile_nature_cnn -- --ignored --nocapture`
    #[test]
    #[ignore = "timing, run by hand"]
    fn profile_nature_cnn_update() {
        use crate::dqn::loss::{LossKind, td_loss};
        use crate::dqn::network::{Activation, Arch, Init, NetSpec, QNetwork};
        use crate::dqn::optim::Optim;
        let dev = &Device::Cpu;
        let iters = std::env::var("PROFILE_ITERS").ok().and_then(|s| s.parse().ok()).unwrap_or(20usize);
        let time = |name: &str, f: &mut dyn FnMut()| {
            f();
            let mut wall = Vec::new();
            let c0 = thread_ns();
            for _ in 0..iters {
                let t0 = std::time::Instant::now();
                f();
                wall.push(t0.elapsed().as_secs_f64() * 1e3);
            }
            // schedstat advances in scheduler ticks: only the total over many iterations is meaningful.
            let cpu = match (c0, thread_ns()) {
                (Some(a), Some(b)) => (b - a) as f64 / 1e6 / iters as f64,
                _ => f64::NAN,
            };
            println!("{name:<28} cpu mean {cpu:8.3} ms   wall median {:8.3} ms", median(wall));
        };
        let mut r = rng(0);
        let batch = 32;
        let layers = [
            (ConvGeom { c: 4, h: 84, w: 84, k: 8, s: 4, out: 32 }, ConvInput::Frames, false),
            (ConvGeom { c: 32, h: 20, w: 20, k: 4, s: 2, out: 64 }, ConvInput::Nhwc, false),
            (ConvGeom { c: 64, h: 9, w: 9, k: 3, s: 1, out: 64 }, ConvInput::Nhwc, true),
        ];
        for (i, (g, input, nchw_out)) in layers.into_iter().enumerate() {
            let op = ConvOp { geom: g, input, nchw_out };
            let n = batch * g.c * g.h * g.w;
            let px: Vec<u8> = (0..n).map(|_| r.random_range(0..=255u8)).collect();
            let xf = uniform(&mut r, n, 1.0);
            let src = if input == ConvInput::Frames { Src::U8(&px) } else { Src::Nhwc(&xf) };
            let w = uniform(&mut r, g.out * g.ckk(), 0.05);
            let b = uniform(&mut r, g.out, 0.05);
            let gy = uniform(&mut r, batch * g.out * g.positions(), 1.0);
            let y = op.forward(src, &w, &b, batch).unwrap();
            let flop = 2.0 * (batch * g.positions() * g.ckk() * g.out) as f64;
            println!("conv{} GEMM: {:.1} MFLOP per pass", i + 1, flop / 1e6);
            time(&format!("conv{} forward", i + 1), &mut || {
                std::hint::black_box(op.forward(src, &w, &b, batch).unwrap());
            });
            time(&format!("conv{} backward", i + 1), &mut || {
                std::hint::black_box(op.backward(src, &w, &y, &gy, batch).unwrap());
            });
            let chunk = chunk_rows(g.ckk());
            let (mut cols, mut line) = (vec![0.0; chunk * g.ckk()], Vec::new());
            time(&format!("conv{} im2col (chunked)", i + 1), &mut || {
                let rows = batch * g.positions();
                for r0 in (0..rows).step_by(chunk) {
                    let r1 = (r0 + chunk).min(rows);
                    im2col(src, &g, r0..r1, &mut cols[..(r1 - r0) * g.ckk()], &mut line);
                    std::hint::black_box(&cols);
                }
            });
            let mut yb = vec![0.0; batch * g.positions() * g.out];
            time(&format!("conv{} forward GEMMs only", i + 1), &mut || {
                let rows = batch * g.positions();
                for r0 in (0..rows).step_by(chunk) {
                    let r1 = (r0 + chunk).min(rows);
                    let (lhs, rhs) = (View { data: &cols, rs: g.ckk(), cs: 1 }, View { data: &w, rs: 1, cs: g.ckk() });
                    matmul(
                        r1 - r0,
                        g.out,
                        g.ckk(),
                        &mut yb[r0 * g.out..r1 * g.out],
                        g.out,
                        false,
                        lhs,
                        rhs,
                        Parallelism::None,
                    )
                    .unwrap();
                }
            });
        }
        let fc = LinearOp { relu: true };
        let (x, w, b) =
            (uniform(&mut r, batch * 3136, 1.0), uniform(&mut r, 512 * 3136, 0.02), uniform(&mut r, 512, 0.02));
        let gy = uniform(&mut r, batch * 512, 1.0);
        let y = fc.forward(&x, &w, &b, (batch, 3136, 512)).unwrap();
        time("fc 3136x512 forward", &mut || {
            std::hint::black_box(fc.forward(&x, &w, &b, (batch, 3136, 512)).unwrap());
        });
        time("fc 3136x512 backward", &mut || {
            std::hint::black_box(fc.backward(&x, &w, &y, &gy, (batch, 3136, 512)).unwrap());
        });

        let spec = NetSpec {
            arch: Arch::NatureCnn,
            obs_shape: vec![4, 84, 84],
            hidden: vec![512],
            activation: Activation::Relu,
            dueling: false,
            n_actions: 6,
            init: Init::Torch,
        };
        let online = QNetwork::new(&spec, &mut rng(0), dev).unwrap();
        let target = QNetwork::new(&spec, &mut rng(1), dev).unwrap();
        let vars = online.vars();
        let mut opt = Optim::adam(vars.clone(), 1e-4, 1e-8).unwrap();
        let frames: Vec<u8> = (0..batch * 4 * 84 * 84).map(|i| (i * 7 % 256) as u8).collect();
        let actions: Vec<u32> = (0..batch as u32).map(|i| i % 6).collect();
        let x = Tensor::from_slice(&frames, (batch, 4, 84, 84), dev).unwrap();
        let a = Tensor::from_slice(&actions, batch, dev).unwrap();
        time("net: target forward", &mut || {
            std::hint::black_box(target.forward(&x).unwrap().detach());
        });
        let y = target.forward(&x).and_then(|q| q.max(1)).unwrap().detach();
        time("net: online forward + loss", &mut || {
            let q = online.forward(&x).unwrap();
            std::hint::black_box(td_loss(&q, &a, &y, None, LossKind::Huber).unwrap());
        });
        let q = online.forward(&x).unwrap();
        let (loss, _) = td_loss(&q, &a, &y, None, LossKind::Huber).unwrap();
        time("net: backward", &mut || {
            std::hint::black_box(loss.backward().unwrap());
        });
        let mut grads = loss.backward().unwrap();
        time("net: clip + Adam", &mut || {
            std::hint::black_box(opt.clip_and_step(&mut grads, &vars, 10.0).unwrap());
        });
        // The CPU path this module replaced (git history before 2026-11-27): im2col as a candle `index_select` (whose
        // backward is an `index_add`) + matmul per convolution, candle linear layers; same weights and update.
        let geoms = [(4usize, 84usize, 8usize, 4usize, 32usize), (32, 20, 4, 2, 64), (64, 9, 3, 1, 64)];
        let idx: Vec<Tensor> = geoms
            .iter()
            .enumerate()
            .map(|(i, &(c, hw, k, st, _))| {
                let oh = (hw - k) / st + 1;
                let mut v = Vec::new();
                for oy in 0..oh {
                    for ox in 0..oh {
                        for ci in 0..c {
                            for ky in 0..k {
                                for kx in 0..k {
                                    let (y, x) = (oy * st + ky, ox * st + kx);
                                    v.push(if i > 0 { (y * hw + x) * c + ci } else { ci * hw * hw + y * hw + x }
                                            as u32);
                                }
                            }
                        }
                    }
                }
                let n = v.len();
                Tensor::from_vec(v, n, dev).unwrap()
            })
            .collect();
        let old_forward = |net: &QNetwork, x: &Tensor| -> Tensor {
            let p: Vec<Tensor> = net.vars().iter().map(|v| v.as_tensor().clone()).collect();
            let mut h = x.to_dtype(DType::F32).unwrap().affine(1.0 / 255.0, 0.0).unwrap();
            let b = h.dim(0).unwrap();
            for (i, &(c, hw, k, st, out)) in geoms.iter().enumerate() {
                let o = (hw - k) / st + 1;
                let cols = h.flatten_from(1).unwrap().index_select(&idx[i], 1).unwrap();
                let cols = cols.reshape((b * o * o, c * k * k)).unwrap();
                let w2 = p[2 * i].reshape((out, c * k * k)).unwrap();
                let y = cols.matmul(&w2.t().unwrap()).unwrap().broadcast_add(&p[2 * i + 1]).unwrap().relu().unwrap();
                h = y.reshape((b, o, o, out)).unwrap();
            }
            h = h.permute((0, 3, 1, 2)).unwrap().contiguous().unwrap().flatten_from(1).unwrap();
            use candle_core::Module;
            let h = candle_nn::Linear::new(p[6].clone(), Some(p[7].clone())).forward(&h).unwrap().relu().unwrap();
            candle_nn::Linear::new(p[8].clone(), Some(p[9].clone())).forward(&h).unwrap()
        };
        let q_new = online.forward(&x).unwrap();
        let q_old = old_forward(&online, &x);
        assert!(max_abs(&(&q_new - &q_old).unwrap()) <= 1e-4 * max_abs(&q_old).max(1.0));
        time("old path: whole update", &mut || {
            let y = old_forward(&target, &x).max(1).unwrap().detach();
            let q = old_forward(&online, &x);
            let (loss, _) = td_loss(&q, &a, &y, None, LossKind::Huber).unwrap();
            let mut grads = loss.backward().unwrap();
            std::hint::black_box(opt.clip_and_step(&mut grads, &vars, 10.0).unwrap());
        });
        time("net: whole update", &mut || {
            let y = target.forward(&x).and_then(|q| q.max(1)).unwrap().detach();
            let q = online.forward(&x).unwrap();
            let (loss, _) = td_loss(&q, &a, &y, None, LossKind::Huber).unwrap();
            let mut grads = loss.backward().unwrap();
            std::hint::black_box(opt.clip_and_step(&mut grads, &vars, 10.0).unwrap());
        });
    }
}
