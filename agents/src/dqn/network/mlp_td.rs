//! The DQN loss and its gradient for an MLP [`QNetwork`] on the CPU, in one pass over preallocated buffers.
//!
//! The candle path builds a graph of some sixty tensors per update (gather, Huber's branches, the mean, their
//! backward ops), each an allocation and a dispatch: on CartPole's 4-64-64-2 network those fixed costs were
//! about 40% of an update (perf: tensor creation, `Arc` drops, the allocator, candle's backprop hash map). Here
//! the same mathematics runs on slices: the target network's forward pass on `s'` (and the online network's for
//! Double DQN's action choice), the online forward pass on `s` keeping each layer's output, the Huber or squared
//! TD loss of the taken actions (importance-weighted for PER), and the backward pass, with the GEMMs of
//! `conv::matmul`. Parameters are read in place from the networks' variables; nothing is allocated once the
//! buffers have grown to the batch.
//!
//! The loss of a part of a minibatch is its rows' sum divided by the whole minibatch's size, so the gradients of
//! the parts of a split minibatch add up to the whole minibatch's (tested). Splitting an update across threads
//! this way was measured and not kept: on the dev box two parts of CartPole's 64x64 update took 21.8 and 23.8 us
//! at the same time (15.9 us alone; two threads on separate networks slow each other by 18%), so the update was
//! no faster (34.2 against 33.1 us); the 256x256 network's was 1.23x faster (docs/BENCHMARKS.md, "DQN").
//!
//! Tested against the candle path (`tests` below): loss, Q-values, targets and every gradient, for ReLU and tanh,
//! plain and dueling heads, Huber and squared loss, with and without weights and Double DQN.
use std::ops::Deref;

use candle_core::Storage;
use gemm::Parallelism;

use super::conv::{View, matmul};
use super::{Activation, Arch, QNetwork, terr};
use crate::dqn::loss::LossKind;
use crate::error::{AgentError, Result};

/// What the loss needs of the config.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct TdSettings {
    /// Double DQN: the online network picks the bootstrap action.
    pub(crate) double_dqn: bool,
    /// Huber or squared error.
    pub(crate) loss: LossKind,
}

/// The rows of (part of) a minibatch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TdRows<'a> {
    /// Observations, `rows * obs_dim`.
    pub(crate) obs: &'a [f32],
    /// Next observations, `rows * obs_dim`.
    pub(crate) next_obs: &'a [f32],
    /// Action indices.
    pub(crate) actions: &'a [u32],
    /// (n-step) rewards.
    pub(crate) rewards: &'a [f32],
    /// Bootstrap factors: `gamma^m`, 0 where the episode terminated.
    pub(crate) factors: &'a [f32],
    /// Importance weights (PER), or `None` for 1.
    pub(crate) weights: Option<&'a [f32]>,
}

/// Buffers and results of one pass (reused from update to update).
#[derive(Debug, Default)]
pub(crate) struct MlpTd {
    /// Output of each hidden layer of the online network on `s`, `rows * width` each.
    hidden: Vec<Vec<f32>>,
    /// Ping-pong buffers of the forward passes on `s'`.
    tmp: [Vec<f32>; 2],
    q: Vec<f32>,
    q_next: Vec<f32>,
    q_next_online: Vec<f32>,
    adv: Vec<f32>,
    value: Vec<f32>,
    dq: Vec<f32>,
    dv: Vec<f32>,
    dh: [Vec<f32>; 2],
    /// Gradient of each parameter, in [`QNetwork::named_params`] order.
    pub(crate) grads: Vec<Vec<f32>>,
    /// Q-values of the taken actions.
    pub(crate) q_taken: Vec<f32>,
    /// TD targets.
    pub(crate) targets: Vec<f32>,
    /// This part's loss: the sum of its rows' (weighted) losses divided by the minibatch size.
    pub(crate) loss: f64,
}

/// The parameters of an MLP as slices (weights `[out, in]` row-major, as PyTorch's `nn.Linear`).
struct Params<'a> {
    /// `(w, b, n_in, n_out)` of each hidden layer, then of each head (`q`, or `value` and `advantage`).
    layers: Vec<(&'a [f32], &'a [f32], usize, usize)>,
    n_hidden: usize,
}

/// Read guards on every parameter's storage (held while the slices are used).
fn guards(net: &QNetwork) -> Vec<(impl Deref<Target = Storage> + '_, usize, usize)> {
    net.named
        .iter()
        .map(|(_, v)| {
            let t = v.as_tensor();
            let (g, l) = t.storage_and_layout();
            let (a, b) = l.contiguous_offsets().unwrap_or((usize::MAX, 0));
            (g, a, b)
        })
        .collect()
}

fn params<'a, G: Deref<Target = Storage>>(net: &QNetwork, g: &'a [(G, usize, usize)]) -> Result<Params<'a>> {
    let slice = |(st, a, b): &'a (G, usize, usize), name: &str| -> Result<&'a [f32]> {
        let Storage::Cpu(c) = &**st else {
            return Err(AgentError::Unsupported(format!("parameter {name} is not on the CPU")));
        };
        if *a == usize::MAX {
            return Err(AgentError::Tensor(format!("parameter {name} is not contiguous")));
        }
        Ok(&c.as_slice::<f32>().map_err(terr)?[*a..*b])
    };
    let mut layers = Vec::with_capacity(g.len() / 2);
    let layer_params = g.chunks_exact(2).zip(net.named.chunks_exact(2));
    for (l, (pair, names)) in net.body.iter().chain(&net.heads).zip(layer_params) {
        let d = l.w.dims();
        layers.push((slice(&pair[0], &names[0].0)?, slice(&pair[1], &names[1].0)?, d[1], d[0]));
    }
    Ok(Params { layers, n_hidden: net.body.len() })
}

fn grow(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    if v.len() < n {
        v.resize(n, 0.0);
    }
    &mut v[..n]
}

/// `y[rows, out] = x[rows, in] . w^T + b`.
fn linear(x: &[f32], (w, b, n_in, n_out): (&[f32], &[f32], usize, usize), rows: usize, y: &mut [f32]) -> Result<()> {
    let (lhs, rhs) = (View { data: x, rs: n_in, cs: 1 }, View { data: w, rs: 1, cs: n_in });
    matmul(rows, n_out, n_in, y, n_out, false, lhs, rhs, Parallelism::None).map_err(terr)?;
    for row in y.chunks_exact_mut(n_out) {
        for (v, bb) in row.iter_mut().zip(b) {
            *v += bb;
        }
    }
    Ok(())
}

fn activate(act: Activation, y: &mut [f32]) {
    match act {
        // NaN stays NaN (as torch.relu), so a diverged network still shows in the loss.
        Activation::Relu => y.iter_mut().for_each(|v| *v = if *v < 0.0 { 0.0 } else { *v }),
        Activation::Tanh => y.iter_mut().for_each(|v| *v = v.tanh()),
    }
}

impl MlpTd {
    /// Whether `net` can use this path: an MLP on the CPU.
    pub(crate) fn supports(net: &QNetwork) -> bool {
        net.spec.arch == Arch::Mlp && net.device.is_cpu()
    }

    /// Q-values `[rows, A]` of `x` into `out`, the hidden outputs into `keep` (one buffer per layer) when given,
    /// else through the ping-pong buffers.
    #[allow(clippy::too_many_arguments)]
    fn forward(
        p: &Params<'_>,
        net: &QNetwork,
        x: &[f32],
        rows: usize,
        mut keep: Option<&mut Vec<Vec<f32>>>,
        tmp: &mut [Vec<f32>; 2],
        heads: (&mut Vec<f32>, &mut Vec<f32>),
        out: &mut Vec<f32>,
    ) -> Result<()> {
        let act = net.spec.activation;
        let n_actions = net.spec.n_actions;
        if let Some(k) = keep.as_deref_mut() {
            k.resize_with(p.n_hidden, Vec::new);
        }
        let mut flip = 0usize;
        for li in 0..p.n_hidden {
            let l = p.layers[li];
            let rows_in = rows * l.2;
            match keep.as_deref_mut() {
                Some(k) => {
                    let (prev, rest) = k.split_at_mut(li);
                    let input = if li == 0 { x } else { &prev[li - 1][..rows_in] };
                    let ys = grow(&mut rest[0], rows * l.3);
                    linear(input, l, rows, ys)?;
                    activate(act, ys);
                }
                None => {
                    // Write tmp[flip], read tmp[flip ^ 1].
                    let (a, b) = tmp.split_at_mut(1);
                    let (dst, src) = if flip == 0 { (&mut a[0], &b[0]) } else { (&mut b[0], &a[0]) };
                    let input = if li == 0 { x } else { &src[..rows_in] };
                    let ys = grow(dst, rows * l.3);
                    linear(input, l, rows, ys)?;
                    activate(act, ys);
                    flip ^= 1;
                }
            }
        }
        let width = p.layers[p.n_hidden].2;
        let feat: &[f32] = if p.n_hidden == 0 {
            x
        } else if let Some(k) = keep.as_deref() {
            &k[p.n_hidden - 1][..rows * width]
        } else {
            &tmp[flip ^ 1][..rows * width]
        };
        let q = grow(out, rows * n_actions);
        if net.spec.dueling {
            let (value, adv) = heads;
            let v = grow(value, rows);
            linear(feat, p.layers[p.n_hidden], rows, v)?;
            let a = grow(adv, rows * n_actions);
            linear(feat, p.layers[p.n_hidden + 1], rows, a)?;
            for ((qr, ar), vv) in q.chunks_exact_mut(n_actions).zip(a.chunks_exact(n_actions)).zip(v.iter()) {
                let mean = ar.iter().sum::<f32>() / n_actions as f32;
                for (qq, aa) in qr.iter_mut().zip(ar) {
                    *qq = aa - mean + vv;
                }
            }
        } else {
            linear(feat, p.layers[p.n_hidden], rows, q)?;
        }
        Ok(())
    }

    /// The loss, Q-values of the taken actions, targets and gradients of `rows` (part of a minibatch of
    /// `batch_size` rows) for `online` against `target`.
    pub(crate) fn run(
        &mut self,
        set: TdSettings,
        (online, target): (&QNetwork, &QNetwork),
        r: &TdRows<'_>,
        batch_size: usize,
    ) -> Result<()> {
        let n = r.rewards.len();
        let spec = &online.spec;
        let (d, n_actions) = (spec.obs_dim(), spec.n_actions);
        if r.obs.len() != n * d || r.next_obs.len() != n * d || r.actions.len() != n || r.factors.len() != n {
            return Err(AgentError::Tensor(format!(
                "a minibatch part of {n} rows needs {} observation values, {n} actions and factors",
                n * d
            )));
        }
        let (go, gt) = (guards(online), guards(target));
        let (po, pt) = (params(online, &go)?, params(target, &gt)?);
        let MlpTd { hidden, tmp, q, q_next, q_next_online, adv, value, dq, dv, dh, grads, q_taken, targets, loss } =
            self;
        // Targets: y = r + factor * Q_target(s', a*), a* by the target (DQN) or online network (Double DQN).
        Self::forward(&pt, target, r.next_obs, n, None, tmp, (value, adv), q_next)?;
        if set.double_dqn {
            Self::forward(&po, online, r.next_obs, n, None, tmp, (value, adv), q_next_online)?;
        }
        targets.clear();
        for i in 0..n {
            let row = &q_next[i * n_actions..(i + 1) * n_actions];
            let next_v = if set.double_dqn {
                row[super::argmax(&q_next_online[i * n_actions..(i + 1) * n_actions])]
            } else {
                // max over actions (NaN propagates, as torch.max).
                row.iter().copied().fold(f32::NEG_INFINITY, |m, v| if v > m || v.is_nan() { v } else { m })
            };
            targets.push(r.rewards[i] + r.factors[i] * next_v);
        }
        // Online forward on s, keeping the hidden outputs.
        Self::forward(&po, online, r.obs, n, Some(hidden), tmp, (value, adv), q)?;
        // Loss and dL/dq of the taken actions.
        let dqs = grow(dq, n * n_actions);
        dqs.fill(0.0);
        q_taken.clear();
        let inv_b = 1.0 / batch_size as f32;
        let mut sum = 0.0f64;
        for i in 0..n {
            let a = r.actions[i] as usize;
            if a >= n_actions {
                return Err(AgentError::Tensor(format!("action {a} out of range for {n_actions} actions")));
            }
            let qa = q[i * n_actions + a];
            q_taken.push(qa);
            let diff = qa - targets[i];
            let w = r.weights.map_or(1.0, |w| w[i]);
            let (l, g) = match set.loss {
                LossKind::Mse => (diff * diff, 2.0 * diff),
                // smooth_l1(beta=1): 0.5 x^2 for |x| < 1, |x| - 0.5 otherwise.
                LossKind::Huber if diff.abs() < 1.0 => (0.5 * diff * diff, diff),
                LossKind::Huber => (diff.abs() - 0.5, if diff > 0.0 { 1.0 } else { -1.0 }),
            };
            sum += (w * l) as f64;
            dqs[i * n_actions + a] = w * g * inv_b;
        }
        *loss = sum / batch_size as f64;
        // Backward.
        grads.resize_with(po.layers.len() * 2, Vec::new);
        let nh = po.n_hidden;
        let width = po.layers[nh].2;
        let feat: &[f32] = if nh == 0 { r.obs } else { &hidden[nh - 1][..n * width] };
        let dfeat = grow(&mut dh[0], n * width);
        let wgrad = |gw: &mut Vec<f32>, gb: &mut Vec<f32>, dz: &[f32], x: &[f32], n_in: usize, n_out: usize| {
            // dW[out, in] = dz^T . x; db = column sums of dz.
            let gw = grow(gw, n_out * n_in);
            let (lhs, rhs) = (View { data: dz, rs: 1, cs: n_out }, View { data: x, rs: n_in, cs: 1 });
            matmul(n_out, n_in, n, gw, n_in, false, lhs, rhs, Parallelism::None).map_err(terr)?;
            let gb = grow(gb, n_out);
            gb.fill(0.0);
            for row in dz.chunks_exact(n_out) {
                for (g, v) in gb.iter_mut().zip(row) {
                    *g += v;
                }
            }
            Ok::<(), AgentError>(())
        };
        // dx[rows, in] (+)= dz . W
        let input_grad = |dx: &mut [f32], dz: &[f32], w: &[f32], n_in: usize, n_out: usize, acc: bool| {
            let (lhs, rhs) = (View { data: dz, rs: n_out, cs: 1 }, View { data: w, rs: n_in, cs: 1 });
            matmul(n, n_in, n_out, dx, n_in, acc, lhs, rhs, Parallelism::None).map_err(terr)
        };
        let (gh, gheads) = grads.split_at_mut(nh * 2);
        if spec.dueling {
            // Q = V + A - mean(A): dV = sum_a dQ, dA = dQ - mean_a dQ.
            let dvs = grow(dv, n);
            for (v, row) in dvs.iter_mut().zip(dqs.chunks_exact(n_actions)) {
                *v = row.iter().sum();
            }
            for (row, v) in dqs.chunks_exact_mut(n_actions).zip(dvs.iter()) {
                let m = v / n_actions as f32;
                row.iter_mut().for_each(|x| *x -= m);
            }
            let (vl, al) = (po.layers[nh], po.layers[nh + 1]);
            let (gv, ga) = gheads.split_at_mut(2);
            let [gvw, gvb] = gv else { unreachable!("two value-head gradients") };
            wgrad(gvw, gvb, dvs, feat, vl.2, vl.3)?;
            let [gaw, gab] = ga else { unreachable!("two advantage-head gradients") };
            wgrad(gaw, gab, dqs, feat, al.2, al.3)?;
            if nh > 0 {
                input_grad(dfeat, dvs, vl.0, vl.2, vl.3, false)?;
                input_grad(dfeat, dqs, al.0, al.2, al.3, true)?;
            }
        } else {
            let ql = po.layers[nh];
            let [gqw, gqb] = gheads else { unreachable!("two q-head gradients") };
            wgrad(gqw, gqb, dqs, feat, ql.2, ql.3)?;
            if nh > 0 {
                input_grad(dfeat, dqs, ql.0, ql.2, ql.3, false)?;
            }
        }
        // Hidden layers, last to first: dz = dh * act'(h), then the weight and input gradients.
        let act = spec.activation;
        let mut cur = 0usize;
        for li in (0..nh).rev() {
            let l = po.layers[li];
            let (n_in, n_out) = (l.2, l.3);
            let h = &hidden[li][..n * n_out];
            let (a, b) = dh.split_at_mut(1);
            let (dz, next) = if cur == 0 { (&mut a[0], &mut b[0]) } else { (&mut b[0], &mut a[0]) };
            let dz = &mut dz[..n * n_out];
            match act {
                Activation::Relu => {
                    // torch's threshold_backward passes the gradient where the output is > 0.
                    for (g, hv) in dz.iter_mut().zip(h) {
                        if *hv <= 0.0 {
                            *g = 0.0;
                        }
                    }
                }
                Activation::Tanh => {
                    for (g, hv) in dz.iter_mut().zip(h) {
                        *g *= 1.0 - hv * hv;
                    }
                }
            }
            let x: &[f32] = if li == 0 { r.obs } else { &hidden[li - 1][..n * n_in] };
            let (gw, gb) = gh[li * 2..li * 2 + 2].split_at_mut(1);
            wgrad(&mut gw[0], &mut gb[0], dz, x, n_in, n_out)?;
            if li > 0 {
                let dx = grow(next, n * n_in);
                input_grad(dx, dz, l.0, n_in, n_out, false)?;
                cur ^= 1;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::dqn::loss::{td_loss, td_targets};
    use crate::dqn::network::{Init, NetSpec};

    fn mlp(obs: usize, hidden: &[usize], activation: Activation, dueling: bool, n_actions: usize) -> NetSpec {
        NetSpec {
            arch: Arch::Mlp,
            obs_shape: vec![obs],
            hidden: hidden.to_vec(),
            activation,
            dueling,
            n_actions,
            init: Init::Torch,
        }
    }

    fn close(what: &str, a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        let scale = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= 2e-5 * scale + 1e-6, "{what}[{i}]: fused {x} vs candle {y} (scale {scale})");
        }
    }

    /// The fused pass against candle's graph (the trainers' path before it) on one random minibatch.
    fn check(
        activation: Activation,
        dueling: bool,
        loss: LossKind,
        weighted: bool,
        double_dqn: bool,
        hidden: &[usize],
    ) {
        let spec = mlp(5, hidden, activation, dueling, 3);
        let dev = Device::Cpu;
        let mut rng = rand_pcg::Pcg64::seed_from_u64(7);
        let online = QNetwork::new(&spec, &mut rng, &dev).unwrap();
        let target = QNetwork::new(&spec, &mut rng, &dev).unwrap();
        let b = 37;
        let mut u = |n: usize, s: f32| (0..n).map(|_| rng.random_range(-s..s)).collect::<Vec<f32>>();
        // Large rewards put some TD errors past Huber's kink, so both branches are checked.
        let (obs, next_obs, rewards) = (u(b * 5, 2.0), u(b * 5, 2.0), u(b, 3.0));
        let weights: Vec<f32> = u(b, 1.0).iter().map(|w| 0.2 + w.abs()).collect();
        let factors: Vec<f32> = (0..b).map(|i| if i % 5 == 0 { 0.0 } else { 0.99 }).collect();
        let actions: Vec<u32> = (0..b).map(|i| (i * 7 % 3) as u32).collect();
        let set = TdSettings { double_dqn, loss };
        let rows = TdRows {
            obs: &obs,
            next_obs: &next_obs,
            actions: &actions,
            rewards: &rewards,
            factors: &factors,
            weights: weighted.then_some(weights.as_slice()),
        };
        let mut f = MlpTd::default();
        f.run(set, (&online, &target), &rows, b).unwrap();
        // Twice: reused buffers give the same result.
        let first = (f.loss, f.grads.clone());
        f.run(set, (&online, &target), &rows, b).unwrap();
        assert_eq!(first, (f.loss, f.grads.clone()));

        let t = |v: &[f32], shape: &[usize]| Tensor::from_slice(v, shape, &dev).unwrap();
        let (o, no) = (t(&obs, &[b, 5]), t(&next_obs, &[b, 5]));
        let next_t = target.forward(&no).unwrap().detach();
        let next_o = double_dqn.then(|| online.forward(&no).unwrap().detach());
        let y = td_targets(&t(&rewards, &[b]), &t(&factors, &[b]), &next_t, next_o.as_ref()).unwrap();
        let q = online.forward(&o).unwrap();
        let acts = Tensor::from_slice(&actions, b, &dev).unwrap();
        let w = weighted.then(|| t(&weights, &[b]));
        let (l, q_taken) = td_loss(&q, &acts, &y, w.as_ref(), loss).unwrap();
        let grads = l.backward().unwrap();
        let tag = format!("{activation:?} dueling={dueling} {loss:?} weighted={weighted} double={double_dqn}");
        close(&format!("{tag} targets"), &f.targets, &y.to_vec1::<f32>().unwrap());
        close(&format!("{tag} q_taken"), &f.q_taken, &q_taken.to_vec1::<f32>().unwrap());
        close(&format!("{tag} loss"), &[f.loss as f32], &[l.to_scalar::<f32>().unwrap()]);
        for ((name, var), g) in online.named_params().iter().zip(&f.grads) {
            let want = grads.get(var).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            close(&format!("{tag} grad {name}"), g, &want);
        }
    }

    #[test]
    fn loss_targets_and_gradients_equal_the_candle_graph() {
        for activation in [Activation::Relu, Activation::Tanh] {
            for dueling in [false, true] {
                for loss in [LossKind::Huber, LossKind::Mse] {
                    for (weighted, double_dqn) in [(false, false), (true, true), (true, false)] {
                        check(activation, dueling, loss, weighted, double_dqn, &[16, 8]);
                    }
                }
            }
        }
        // One hidden layer, and none (a linear Q-function).
        check(Activation::Relu, false, LossKind::Huber, false, false, &[11]);
        check(Activation::Relu, true, LossKind::Huber, true, true, &[]);
    }

    #[test]
    fn a_split_minibatch_sums_to_the_whole() {
        // Two parts, each scaled by the whole minibatch's size, add up to the whole.
        let spec = mlp(4, &[8, 8], Activation::Relu, false, 2);
        let dev = Device::Cpu;
        let mut rng = rand_pcg::Pcg64::seed_from_u64(3);
        let online = QNetwork::new(&spec, &mut rng, &dev).unwrap();
        let target = QNetwork::new(&spec, &mut rng, &dev).unwrap();
        let b = 10;
        let obs: Vec<f32> = (0..b * 4).map(|_| rng.random_range(-1.0..1.0)).collect();
        let next: Vec<f32> = (0..b * 4).map(|_| rng.random_range(-1.0..1.0)).collect();
        let (acts, rew, fac) = (vec![1u32; b], vec![1.5f32; b], vec![0.99f32; b]);
        let set = TdSettings { double_dqn: false, loss: LossKind::Huber };
        let rows = |r: std::ops::Range<usize>| TdRows {
            obs: &obs[r.start * 4..r.end * 4],
            next_obs: &next[r.start * 4..r.end * 4],
            actions: &acts[r.clone()],
            rewards: &rew[r.clone()],
            factors: &fac[r],
            weights: None,
        };
        let (mut whole, mut p0, mut p1) = (MlpTd::default(), MlpTd::default(), MlpTd::default());
        whole.run(set, (&online, &target), &rows(0..b), b).unwrap();
        p0.run(set, (&online, &target), &rows(0..4), b).unwrap();
        p1.run(set, (&online, &target), &rows(4..b), b).unwrap();
        assert!((whole.loss - (p0.loss + p1.loss)).abs() < 1e-6);
        for (i, g) in whole.grads.iter().enumerate() {
            let sum: Vec<f32> = p0.grads[i].iter().zip(&p1.grads[i]).map(|(a, b)| a + b).collect();
            close(&format!("param {i}"), &sum, g);
        }
    }

    #[test]
    fn bad_rows_are_errors() {
        let spec = mlp(4, &[8], Activation::Relu, false, 2);
        let net = QNetwork::new(&spec, &mut rand_pcg::Pcg64::seed_from_u64(0), &Device::Cpu).unwrap();
        let set = TdSettings { double_dqn: false, loss: LossKind::Huber };
        let obs = vec![0.0f32; 8];
        let mut rows = TdRows {
            obs: &obs,
            next_obs: &obs,
            actions: &[0, 2],
            rewards: &[0.0; 2],
            factors: &[1.0; 2],
            weights: None,
        };
        let e = MlpTd::default().run(set, (&net, &net), &rows, 2).unwrap_err().to_string();
        assert!(e.contains("action 2 out of range"), "{e}");
        rows.obs = &obs[..6];
        assert!(MlpTd::default().run(set, (&net, &net), &rows, 2).is_err());
    }
}
