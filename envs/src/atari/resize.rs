//! OpenCV's `cv2.resize(src, (w, h), interpolation=cv2.INTER_AREA)` for single-channel `u8` images with
//! non-integer downscale factors, bit-exact.
//!
//! A direct port of OpenCV's generic area path (`modules/imgproc/src/resize.cpp`: `computeResizeAreaTab` and
//! `ResizeArea_Invoker<uchar, float>`), which `cv2.resize` takes when the scale factors are not both integers,
//! as for Atari's 210x160 -> 84x84 (scales 2.5 and 1.9048):
//!
//! * the weights are computed in `f64` and stored as `f32`;
//! * each source row is reduced horizontally in `f32` (`buf[dx] += src * alpha`), rows are accumulated
//!   vertically in `f32` (`sum[dx] += beta * buf[dx]`);
//! * the result is rounded half to even (`saturate_cast<uchar>` uses `cvRound`).
//!
//! The horizontal pass of each source row is computed once (rows shared by two output rows give the same
//! values), into a buffer allocated at construction: [`AreaResizer::resize`] allocates nothing.
use crate::error::{EnvError, Result};

#[derive(Debug, Clone, Copy)]
struct Alpha {
    di: usize,
    si: usize,
    alpha: f32,
}

/// OpenCV's `computeResizeAreaTab` (resize.cpp), for one channel.
fn area_tab(ssize: usize, dsize: usize, scale: f64) -> Vec<Alpha> {
    let mut tab = Vec::with_capacity(ssize * 2);
    for dx in 0..dsize {
        let fsx1 = dx as f64 * scale;
        let fsx2 = fsx1 + scale;
        let cell_width = scale.min(ssize as f64 - fsx1);
        let mut sx1 = fsx1.ceil() as i64;
        let mut sx2 = fsx2.floor() as i64;
        sx2 = sx2.min(ssize as i64 - 1);
        sx1 = sx1.min(sx2);
        if sx1 as f64 - fsx1 > 1e-3 {
            tab.push(Alpha { di: dx, si: (sx1 - 1) as usize, alpha: ((sx1 as f64 - fsx1) / cell_width) as f32 });
        }
        for sx in sx1..sx2 {
            tab.push(Alpha { di: dx, si: sx as usize, alpha: (1.0 / cell_width) as f32 });
        }
        if fsx2 - sx2 as f64 > 1e-3 {
            let a = (fsx2 - sx2 as f64).min(1.0).min(cell_width) / cell_width;
            tab.push(Alpha { di: dx, si: sx2 as usize, alpha: a as f32 });
        }
    }
    tab
}

/// A precomputed INTER_AREA resize from `src_h x src_w` to `dst_h x dst_w` (one `u8` channel, row-major).
///
/// ```
/// use bellman_envs::atari::AreaResizer;
/// let r = AreaResizer::new(210, 160, 84, 84).unwrap();
/// let src = vec![200u8; 210 * 160];
/// let mut dst = vec![0u8; 84 * 84];
/// let mut r = r;
/// r.resize(&src, &mut dst).unwrap();
/// assert!(dst.iter().all(|&v| v == 200));
/// ```
#[derive(Debug, Clone)]
pub struct AreaResizer {
    src_h: usize,
    src_w: usize,
    dst_h: usize,
    dst_w: usize,
    xtab: Vec<Alpha>,
    ytab: Vec<Alpha>,
    /// Horizontal pass of every source row (`src_h * dst_w`).
    rows: Vec<f32>,
    sum: Vec<f32>,
}

impl AreaResizer {
    /// Builds the tables. Only downscaling with a non-integer factor on at least one axis is supported (the
    /// path OpenCV takes for them); anything else is an error naming the sizes.
    pub fn new(src_h: usize, src_w: usize, dst_h: usize, dst_w: usize) -> Result<Self> {
        let bad = |why: &str| {
            Err(EnvError::Unsupported(format!(
                "INTER_AREA resize {src_h}x{src_w} -> {dst_h}x{dst_w}: {why}; sizes must satisfy 1 <= dst <= src, \
                 with a non-integer scale on some axis"
            )))
        };
        if dst_h == 0 || dst_w == 0 || dst_h > src_h || dst_w > src_w {
            return bad("not a downscale");
        }
        if src_h.is_multiple_of(dst_h) && src_w.is_multiple_of(dst_w) {
            return bad("integer scale factors take OpenCV's fast path, which is not ported");
        }
        // cv::resize: inv_scale = dsize / ssize, scale = 1 / inv_scale, in f64.
        let scale_x = 1.0 / (dst_w as f64 / src_w as f64);
        let scale_y = 1.0 / (dst_h as f64 / src_h as f64);
        Ok(AreaResizer {
            src_h,
            src_w,
            dst_h,
            dst_w,
            xtab: area_tab(src_w, dst_w, scale_x),
            ytab: area_tab(src_h, dst_h, scale_y),
            rows: vec![0.0; src_h * dst_w],
            sum: vec![0.0; dst_w],
        })
    }

    /// Resizes `src` (`src_h * src_w` bytes) into `dst` (`dst_h * dst_w` bytes).
    pub fn resize(&mut self, src: &[u8], dst: &mut [u8]) -> Result<()> {
        if src.len() != self.src_h * self.src_w || dst.len() != self.dst_h * self.dst_w {
            return Err(EnvError::Unsupported(format!(
                "resize buffers of {} and {} bytes, expected {} and {}",
                src.len(),
                dst.len(),
                self.src_h * self.src_w,
                self.dst_h * self.dst_w
            )));
        }
        let dw = self.dst_w;
        // Horizontal pass (ResizeArea_Invoker, cn == 1 branch): buf[dxn] += S[si] * alpha, in f32.
        for (sy, buf) in self.rows.chunks_exact_mut(dw).enumerate() {
            buf.fill(0.0);
            let s = &src[sy * self.src_w..(sy + 1) * self.src_w];
            for t in &self.xtab {
                buf[t.di] += s[t.si] as f32 * t.alpha;
            }
        }
        // Vertical pass: sum = beta * buf on a new output row, sum += beta * buf otherwise.
        let mut prev_dy = self.ytab[0].di;
        self.sum.fill(0.0);
        for t in &self.ytab {
            let buf = &self.rows[t.si * dw..(t.si + 1) * dw];
            if t.di != prev_dy {
                let d = &mut dst[prev_dy * dw..(prev_dy + 1) * dw];
                for ((o, s), b) in d.iter_mut().zip(self.sum.iter_mut()).zip(buf) {
                    *o = saturate_u8(*s);
                    *s = t.alpha * b;
                }
                prev_dy = t.di;
            } else {
                for (s, b) in self.sum.iter_mut().zip(buf) {
                    *s += t.alpha * b;
                }
            }
        }
        let d = &mut dst[prev_dy * dw..(prev_dy + 1) * dw];
        for (o, s) in d.iter_mut().zip(&self.sum) {
            *o = saturate_u8(*s);
        }
        Ok(())
    }
}

/// OpenCV's `saturate_cast<uchar>(float)`: `cvRound` (round half to even) then clamp to 0..=255.
#[inline]
fn saturate_u8(v: f32) -> u8 {
    v.round_ties_even().clamp(0.0, 255.0) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_match_opencv_weights() {
        // 160 -> 84: scale 1.9047..., first cell covers source columns 0 (weight 1/1.90) and 1 (0.90/1.90).
        let t = area_tab(160, 84, 1.0 / (84.0 / 160.0));
        assert_eq!((t[0].di, t[0].si), (0, 0));
        assert!((t[0].alpha - (1.0 / 1.904_761_904_761_904_7) as f32).abs() < 1e-7);
        assert_eq!((t[1].di, t[1].si), (0, 1));
        assert!((t[1].alpha - (0.904_761_904_761_904_7 / 1.904_761_904_761_904_7) as f32).abs() < 1e-6);
        // Weights of every output cell sum to 1.
        let mut sums = vec![0.0f64; 84];
        for a in &t {
            sums[a.di] += a.alpha as f64;
        }
        assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5), "{sums:?}");
    }

    #[test]
    fn mean_of_cells_and_rounding() {
        // 5x4 -> 2x2 (scale 2.5 vertically, 2 horizontally): the first output is the area mean of rows
        // 0, 1 and half of row 2 over columns 0..2.
        let src: Vec<u8> = (0..20).map(|i| (i * 10) as u8).collect();
        let mut r = AreaResizer::new(5, 4, 2, 2).unwrap();
        let mut dst = [0u8; 4];
        r.resize(&src, &mut dst).unwrap();
        // Row means over columns 0..2: rows 0..5 -> 5, 45, 85, 125, 165; (5 + 45 + 0.5 * 85) / 2.5 = 37.
        assert_eq!(dst[0], 37);
        // (0.5 * 85 + 125 + 165) / 2.5 = 133.
        assert_eq!(dst[2], 133);
        assert_eq!(saturate_u8(2.5), 2);
        assert_eq!(saturate_u8(3.5), 4);
        assert_eq!(saturate_u8(300.0), 255);
    }

    #[test]
    fn rejects_bad_sizes() {
        assert!(AreaResizer::new(210, 160, 0, 84).is_err());
        assert!(AreaResizer::new(210, 160, 420, 84).is_err());
        let e = AreaResizer::new(210, 160, 105, 80).unwrap_err().to_string();
        assert!(e.contains("105x80"), "{e}");
        let mut r = AreaResizer::new(210, 160, 84, 84).unwrap();
        assert!(r.resize(&[0; 10], &mut [0; 7056]).is_err());
    }
}
