//! TD targets and the DQN loss.
//!
//! For a sampled transition `(s, a, R, s', terminated, d)` where `R` is the (n-step) discounted reward and
//! `d = gamma^m` the discount of the bootstrapped value (both from the replay crate), the target is
//!
//! `y = R + d * (1 - terminated) * Q_target(s', a*)`, with `a* = argmax_a Q_target(s', a)` (DQN, Mnih et al.
//! 2015) or `a* = argmax_a Q_online(s', a)` (Double DQN, van Hasselt et al. 2016).
//!
//! Only `terminated` stops the bootstrap: a `truncated` transition (time limit) bootstraps from `s'`, which is a
//! real state (Pardo et al. 2018, "Time Limits in Reinforcement Learning"; Gymnasium's `terminated`/`truncated`).
use candle_core::{D, DType, Tensor};
use serde::{Deserialize, Serialize};

/// The regression loss on TD errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LossKind {
    /// Huber loss with delta 1 (PyTorch's `smooth_l1_loss`, SB3's DQN loss; the Nature DQN's error clipping).
    #[default]
    Huber,
    /// Squared error (CleanRL's `mse_loss`).
    Mse,
}

/// Bootstrap factor of each row: `discount` (`gamma^m`) when the episode goes on or was truncated, 0 when it
/// terminated.
///
/// ```
/// use bellman_agents::dqn::loss::bootstrap_factors;
/// let mut out = vec![0.0; 3];
/// bootstrap_factors(&[0.99, 0.99, 0.9801], &[false, true, false], &mut out);
/// assert_eq!(out, [0.99, 0.0, 0.9801]);
/// ```
pub fn bootstrap_factors(discounts: &[f32], terminated: &[bool], out: &mut [f32]) {
    for ((o, d), t) in out.iter_mut().zip(discounts).zip(terminated) {
        *o = if *t { 0.0 } else { *d };
    }
}

/// Targets `y = rewards + factors * Q_target(s', a*)`, `[B]`, detached from the graph. `next_q_target` and
/// `next_q_online` are `[B, A]`; pass `next_q_online` for Double DQN.
pub fn td_targets(
    rewards: &Tensor,
    factors: &Tensor,
    next_q_target: &Tensor,
    next_q_online: Option<&Tensor>,
) -> candle_core::Result<Tensor> {
    let next_v = match next_q_online {
        Some(online) => {
            let a = online.argmax_keepdim(D::Minus1)?;
            next_q_target.gather(&a, D::Minus1)?.squeeze(D::Minus1)?
        }
        None => next_q_target.max(D::Minus1)?,
    };
    Ok((rewards + (factors * next_v)?)?.detach())
}

/// The loss `mean_i w_i * l(q_i - y_i)` (weights `None` = all 1) and the Q-values of the taken actions `[B]`.
/// `q` is `[B, A]`, `actions` `[B]` (`u32`), `targets` `[B]`.
pub fn td_loss(
    q: &Tensor,
    actions: &Tensor,
    targets: &Tensor,
    weights: Option<&Tensor>,
    kind: LossKind,
) -> candle_core::Result<(Tensor, Tensor)> {
    let q_taken = q.gather(&actions.unsqueeze(1)?, D::Minus1)?.squeeze(D::Minus1)?;
    let diff = (&q_taken - targets)?;
    let per = match kind {
        LossKind::Mse => diff.sqr()?,
        LossKind::Huber => {
            // smooth_l1(beta=1): 0.5 x^2 for |x| < 1, |x| - 0.5 otherwise.
            let a = diff.abs()?;
            let quad = (diff.sqr()? * 0.5)?;
            let lin = (&a - 0.5)?;
            a.lt(1.0)?.where_cond(&quad, &lin)?
        }
    };
    let per = match weights {
        Some(w) => (per * w)?,
        None => per,
    };
    Ok((per.mean_all()?, q_taken))
}

/// Converts `i64` actions to the `u32` indices `gather` wants (0 for a negative value, which never occurs for
/// actions DQN chose).
pub fn action_indices(actions: &[i64], out: &mut [u32]) {
    for (o, a) in out.iter_mut().zip(actions) {
        *o = (*a).max(0) as u32;
    }
}

/// The dtype of action indices given to [`td_loss`].
pub const ACTION_DTYPE: DType = DType::U32;

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn t1(v: &[f32]) -> Tensor {
        Tensor::from_slice(v, v.len(), &Device::Cpu).unwrap()
    }
    fn t2(v: &[f32], cols: usize) -> Tensor {
        Tensor::from_slice(v, (v.len() / cols, cols), &Device::Cpu).unwrap()
    }
    fn close(a: &Tensor, b: &[f32]) {
        let a = a.to_vec1::<f32>().unwrap();
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
        }
    }

    /// A hand-computed batch of four rows, gamma = 0.9:
    /// 0: plain 1-step, not done          y = 1 + 0.9 * max(2, 5)           = 5.5
    /// 1: terminated                      y = 1 + 0                          = 1
    /// 2: truncated (time limit)          y = 1 + 0.9 * max(3, -1)          = 3.7
    /// 3: 3-step return R = 1 + .9 + .81, d = 0.729, y = 2.71 + .729 * max(0, 4) = 5.626
    /// Double DQN picks a* from the online net: online argmax = [0, 1, 1, 0] -> target values [2, 0, -1, 0]:
    /// y = [1 + 1.8, 1, 1 - 0.9, 2.71] = [2.8, 1, 0.1, 2.71].
    #[test]
    fn targets_terminated_truncated_nstep_double() {
        let discounts = [0.9f32, 0.9, 0.9, 0.729];
        let terminated = [false, true, false, false];
        let _truncated = [false, false, true, false]; // has no effect on the target, by design
        let mut f = [0.0f32; 4];
        bootstrap_factors(&discounts, &terminated, &mut f);
        assert_eq!(f, [0.9, 0.0, 0.9, 0.729]);
        let r = t1(&[1.0, 1.0, 1.0, 2.71]);
        let nt = t2(&[2.0, 5.0, 0.0, 7.0, 3.0, -1.0, 0.0, 4.0], 2);
        let y = td_targets(&r, &t1(&f), &nt, None).unwrap();
        close(&y, &[5.5, 1.0, 3.7, 5.626]);
        let no = t2(&[9.0, 1.0, 0.0, 1.0, 0.0, 2.0, 1.0, 0.5], 2);
        let yd = td_targets(&r, &t1(&f), &nt, Some(&no)).unwrap();
        close(&yd, &[2.8, 1.0, 0.1, 2.71]);
    }

    /// q_taken = [1, 4, 0.5], y = [1.5, 1, 0.5]: errors [-0.5, 3, 0].
    /// Huber: [0.125, 2.5, 0] -> mean 0.875; MSE: [0.25, 9, 0] -> mean 3.083333;
    /// weighted Huber with w = [2, 0.5, 1]: [0.25, 1.25, 0] -> mean 0.5.
    #[test]
    fn huber_mse_weighted_by_hand() {
        let q = t2(&[1.0, 9.0, 2.0, 4.0, 0.5, 0.0], 2);
        let a = Tensor::from_slice(&[0u32, 1, 0], 3, &Device::Cpu).unwrap();
        let y = t1(&[1.5, 1.0, 0.5]);
        let (l, qt) = td_loss(&q, &a, &y, None, LossKind::Huber).unwrap();
        close(&qt, &[1.0, 4.0, 0.5]);
        assert!((l.to_scalar::<f32>().unwrap() - 0.875).abs() < 1e-6);
        let (l, _) = td_loss(&q, &a, &y, None, LossKind::Mse).unwrap();
        assert!((l.to_scalar::<f32>().unwrap() - 37.0 / 12.0).abs() < 1e-5);
        let w = t1(&[2.0, 0.5, 1.0]);
        let (l, _) = td_loss(&q, &a, &y, Some(&w), LossKind::Huber).unwrap();
        assert!((l.to_scalar::<f32>().unwrap() - 0.5).abs() < 1e-6);
    }

    #[test]
    fn huber_gradient_is_clipped_error() {
        // d/dq of smooth_l1 is clamp(q - y, -1, 1) / B.
        let qv = candle_core::Var::from_slice(&[3.0f32, 0.2], (2, 1), &Device::Cpu).unwrap();
        let a = Tensor::from_slice(&[0u32, 0], 2, &Device::Cpu).unwrap();
        let (l, _) = td_loss(qv.as_tensor(), &a, &t1(&[0.0, 0.0]), None, LossKind::Huber).unwrap();
        let g = l.backward().unwrap();
        let g = g.get(&qv).unwrap().flatten_all().unwrap();
        close(&g, &[0.5, 0.1]);
    }
}
