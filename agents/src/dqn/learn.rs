//! The DQN update shared by every observation type: a sampled [`Batch`] (`f32` vectors or `u8` frame stacks) to
//! tensors, TD targets (plain or Double DQN), loss, backward pass, gradient clipping and the optimiser step.
//! MLPs on the CPU (with Adam) take the fused path of `network::mlp_td` instead of candle's graph: the same
//! loss and gradients to float rounding, about twice as fast on CartPole's network.
//!
//! Used by `DqnTrainer` (flat `f32` observations) and `pixels::PixelDqnTrainer` (Atari frame
//! stacks), so both learn with exactly the same code.
use bellman_replay::Batch;
use candle_core::{Device, Tensor, Var, WithDType};

use super::config::DqnConfig;
use super::loss::{self, bootstrap_factors, td_loss, td_targets};
use super::network::mlp_td::{MlpTd, TdRows, TdSettings};
use super::network::{QNetwork, terr};
use super::optim::Optim;
use crate::error::{AgentError, Result};

/// Host-side scratch of one update (reused: no allocation once sized).
#[derive(Debug, Default)]
pub(crate) struct UpdateScratch {
    pub(crate) actions: Vec<u32>,
    pub(crate) factors: Vec<f32>,
    /// Buffers of the fused CPU path of MLPs.
    fused: MlpTd,
}

impl UpdateScratch {
    /// Action indices and bootstrap factors of `rows` into the scratch; returns the number of rows.
    fn prepare(&mut self, rows: &Rows<'_>) -> usize {
        let b = rows.rewards.len();
        self.actions.resize(b, 0);
        loss::action_indices(rows.actions, &mut self.actions);
        self.factors.resize(b, 0.0);
        bootstrap_factors(rows.discounts, rows.terminated, &mut self.factors);
        b
    }
}

/// What one update leaves for metrics and priorities: the loss (scalar), the Q-values of the taken actions and
/// the targets (both `[B]`), all on the device.
pub(crate) struct UpdateOut {
    pub(crate) loss: Tensor,
    pub(crate) q_taken: Tensor,
    pub(crate) targets: Tensor,
}

/// One gradient update of `online` on `batch` against `target`, with importance weights when `weighted` (PER).
/// Observations go to the device in their own dtype (`u8` frames stay bytes until the network scales them).
/// `step` and `update` only label a divergence error.
#[allow(clippy::too_many_arguments)]
pub(crate) fn td_update<O: WithDType + bellman_replay::Element>(
    cfg: &DqnConfig,
    online: &QNetwork,
    target: &QNetwork,
    optim: &mut Optim,
    vars: &[Var],
    batch: &Batch<O, i64>,
    weighted: bool,
    scratch: &mut UpdateScratch,
    device: &Device,
    step_update: (u64, u64),
) -> Result<UpdateOut> {
    let rows = Rows {
        actions: &batch.actions,
        rewards: &batch.rewards,
        terminated: &batch.terminated,
        discounts: &batch.discounts,
        weights: weighted.then_some(batch.weights.as_slice()),
    };
    // MLPs on the CPU with the fused Adam: the whole update on slices (`network::mlp_td`).
    if let (Some(obs), Some(next_obs), Optim::CpuAdam(_)) = (as_f32(&batch.obs), as_f32(&batch.next_obs), &*optim)
        && online.cpu_kernels()
        && MlpTd::supports(online)
    {
        return fused_update(cfg, (online, target), optim, (obs, next_obs), &rows, scratch, device, step_update);
    }
    let mut shape = vec![batch.len()];
    shape.extend_from_slice(&online.spec().obs_shape);
    let obs = Tensor::from_slice(&batch.obs, shape.as_slice(), device).map_err(terr)?;
    let next_obs = Tensor::from_slice(&batch.next_obs, shape.as_slice(), device).map_err(terr)?;
    td_update_tensors(cfg, (online, target), optim, vars, (&obs, &next_obs), &rows, scratch, device, step_update)
}

/// [`td_update`] of an MLP on the CPU with [`CpuAdam`](super::optim::CpuAdam), on slices
/// ([`MlpTd`]): the same loss, gradients and step as the candle path to float rounding, without its graph.
#[allow(clippy::too_many_arguments)]
fn fused_update(
    cfg: &DqnConfig,
    nets: (&QNetwork, &QNetwork),
    optim: &mut Optim,
    (obs, next_obs): (&[f32], &[f32]),
    rows: &Rows<'_>,
    scratch: &mut UpdateScratch,
    device: &Device,
    (step, update): (u64, u64),
) -> Result<UpdateOut> {
    // Denormal moments of dead units would slow the optimiser step many times over (see `denormals`).
    let _ftz = super::denormals::FlushDenormals::new();
    let b = scratch.prepare(rows);
    let set = TdSettings { double_dqn: cfg.double_dqn, loss: cfg.loss };
    let part = TdRows {
        obs,
        next_obs,
        actions: &scratch.actions,
        rewards: rows.rewards,
        factors: &scratch.factors,
        weights: rows.weights,
    };
    let f = &mut scratch.fused;
    f.run(set, nets, &part, b)?;
    let Optim::CpuAdam(adam) = optim else {
        return Err(AgentError::Unsupported("the fused MLP update steps with CpuAdam only".into()));
    };
    let max_norm = if cfg.max_grad_norm > 0.0 { cfg.max_grad_norm } else { f64::INFINITY };
    adam.step_clipped_slices(&f.grads, max_norm).map_err(|e| diverged(e, step, update))?;
    let loss = Tensor::new(f.loss as f32, device).map_err(terr)?;
    let q_taken = Tensor::from_slice(&f.q_taken, b, device).map_err(terr)?;
    let targets = Tensor::from_slice(&f.targets, b, device).map_err(terr)?;
    Ok(UpdateOut { loss, q_taken, targets })
}

/// `v` as `f32` values when `O` is `f32` (flat observations), else `None`.
#[allow(clippy::ptr_arg)] // `Any` needs a sized type: the Vec, not its slice.
fn as_f32<O: 'static>(v: &Vec<O>) -> Option<&[f32]> {
    (v as &dyn std::any::Any).downcast_ref::<Vec<f32>>().map(Vec::as_slice)
}

/// A divergence error with where it happened and what to change.
fn diverged(e: AgentError, step: u64, update: u64) -> AgentError {
    match e {
        AgentError::Diverged(m) => AgentError::Diverged(format!(
            "{m} at step {step} (update {update}): lower learning_rate or enable max_grad_norm; the weights are \
             those of the last good update"
        )),
        other => other,
    }
}

/// The per-row fields of a sampled batch that the update reads besides the observations.
pub(crate) struct Rows<'a> {
    pub(crate) actions: &'a [i64],
    pub(crate) rewards: &'a [f32],
    pub(crate) terminated: &'a [bool],
    pub(crate) discounts: &'a [f32],
    /// Importance weights (PER), or `None` for an unweighted loss.
    pub(crate) weights: Option<&'a [f32]>,
}

/// [`td_update`] with the observations already on the device (`[B, ...]` each; the pixel path passes two views
/// of one uploaded frame window).
#[allow(clippy::too_many_arguments)]
pub(crate) fn td_update_tensors(
    cfg: &DqnConfig,
    (online, target): (&QNetwork, &QNetwork),
    optim: &mut Optim,
    vars: &[Var],
    (obs, next_obs): (&Tensor, &Tensor),
    rows: &Rows<'_>,
    scratch: &mut UpdateScratch,
    device: &Device,
    (step, update): (u64, u64),
) -> Result<UpdateOut> {
    // Denormal moments of dead units would slow the optimiser step many times over (see `denormals`).
    let _ftz = super::denormals::FlushDenormals::new();
    let b = scratch.prepare(rows);
    let actions = Tensor::from_slice(&scratch.actions, b, device).map_err(terr)?;
    let rewards = Tensor::from_slice(rows.rewards, b, device).map_err(terr)?;
    let factors = Tensor::from_slice(&scratch.factors, b, device).map_err(terr)?;
    let next_q_target = target.forward(next_obs).map_err(terr)?.detach();
    let next_q_online = if cfg.double_dqn { Some(online.forward(next_obs).map_err(terr)?.detach()) } else { None };
    let targets = td_targets(&rewards, &factors, &next_q_target, next_q_online.as_ref()).map_err(terr)?;
    let q = online.forward(obs).map_err(terr)?;
    let weights = match rows.weights {
        Some(w) => Some(Tensor::from_slice(w, b, device).map_err(terr)?),
        None => None,
    };
    let (loss, q_taken) = td_loss(&q, &actions, &targets, weights.as_ref(), cfg.loss).map_err(terr)?;
    let mut grads = loss.backward().map_err(terr)?;
    let max_norm = if cfg.max_grad_norm > 0.0 { cfg.max_grad_norm } else { f64::INFINITY };
    // The norm is always computed: a non-finite gradient stops training before it reaches the weights.
    optim.clip_and_step(&mut grads, vars, max_norm).map_err(|e| diverged(e, step, update))?;
    Ok(UpdateOut { loss, q_taken, targets })
}
