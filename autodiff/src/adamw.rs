//! Adam with decoupled weight decay (Loshchilov & Hutter 2019), as PyTorch's `torch.optim.AdamW`.

use dfdx::prelude::*;

use crate::{Element, Error, RuntimeLinear};

/// Hyper-parameters of [`AdamW`]. Defaults are PyTorch's: lr 1e-3, β = (0.9, 0.999), ε = 1e-8,
/// weight decay 1e-2.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWConfig {
    /// Step size η.
    pub learning_rate: f64,
    /// Decay rates (β₁, β₂) of the first and second moment estimates.
    pub betas: [f64; 2],
    /// ε added to `√v̂`.
    pub epsilon: f64,
    /// Decoupled weight decay λ: `θ ← θ − η λ θ` before the Adam step (weights only, not biases).
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            learning_rate: 1e-3,
            betas: [0.9, 0.999],
            epsilon: 1e-8,
            weight_decay: 1e-2,
        }
    }
}

/// The per-step scalars of AdamW in the element type (see [`AdamW::coefficients`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamCoefficients<E> {
    /// η / (1 − β₁ᵗ).
    pub step_size: E,
    /// 1 / √(1 − β₂ᵗ).
    pub inverse_root_correction: E,
    /// 1 − ηλ for decayed slots, 1 otherwise.
    pub keep: E,
    /// β₁.
    pub beta1: E,
    /// β₂.
    pub beta2: E,
    /// 1 − β₁ (computed in the element type).
    pub one_minus_beta1: E,
    /// 1 − β₂ (computed in the element type).
    pub one_minus_beta2: E,
    /// ε.
    pub epsilon: E,
}

/// AdamW state for a fixed list of parameter tensors (slots), updated in place.
///
/// One step t (1-based) for a parameter θ with gradient g:
/// `θ ← θ(1 − ηλ)` (decayed slots only); `m ← β₁m + (1−β₁)g`; `v ← β₂v + (1−β₂)g²`;
/// `θ ← θ − η · (m / (1−β₁ᵗ)) / (√(v / (1−β₂ᵗ)) + ε)`.
#[derive(Clone, Debug)]
pub struct AdamW<E> {
    config: AdamWConfig,
    step: u64,
    moments: Vec<(Vec<E>, Vec<E>)>,
}

/// η finite and > 0.
fn check_learning_rate(learning_rate: f64) -> Result<(), Error> {
    if learning_rate.is_finite() && learning_rate > 0.0 {
        Ok(())
    } else {
        Err(Error::InvalidHyperParameter {
            name: "learning rate (it must be finite and > 0)",
            value: learning_rate,
        })
    }
}

impl<E: Element> AdamW<E>
where
    Cpu: Device<E>,
{
    /// Validates the hyper-parameters: η > 0, 0 ≤ β < 1, ε > 0, λ ≥ 0, all finite; a bad one is
    /// [`Error::InvalidHyperParameter`] naming it and its value.
    pub fn new(config: AdamWConfig) -> Result<Self, Error> {
        check_learning_rate(config.learning_rate)?;
        let [beta1, beta2] = config.betas;
        for (name, value) in [
            ("beta1 (it must be in [0, 1))", beta1),
            ("beta2 (it must be in [0, 1))", beta2),
        ] {
            if !(0.0..1.0).contains(&value) {
                return Err(Error::InvalidHyperParameter { name, value });
            }
        }
        if !(config.epsilon.is_finite() && config.epsilon > 0.0) {
            return Err(Error::InvalidHyperParameter {
                name: "epsilon (it must be finite and > 0)",
                value: config.epsilon,
            });
        }
        if !(config.weight_decay.is_finite() && config.weight_decay >= 0.0) {
            return Err(Error::InvalidHyperParameter {
                name: "weight decay (it must be finite and >= 0)",
                value: config.weight_decay,
            });
        }
        Ok(AdamW {
            config,
            step: 0,
            moments: Vec::new(),
        })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &AdamWConfig {
        &self.config
    }

    /// Changes η (for a schedule): finite and ≥ 0 (0, where a schedule ends, leaves the
    /// parameters as they are: the decay is η·λ too), else [`Error::InvalidHyperParameter`].
    pub fn set_learning_rate(&mut self, learning_rate: f64) -> Result<(), Error> {
        if !(learning_rate.is_finite() && learning_rate >= 0.0) {
            return Err(Error::InvalidHyperParameter {
                name: "learning rate (it must be finite and >= 0)",
                value: learning_rate,
            });
        }
        self.config.learning_rate = learning_rate;
        Ok(())
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// The moment estimates `(m, v)` of every slot (for checkpoints).
    pub fn moments(&self) -> &[(Vec<E>, Vec<E>)] {
        &self.moments
    }

    /// Restores a checkpointed state.
    pub fn restore(&mut self, step: u64, moments: Vec<(Vec<E>, Vec<E>)>) {
        self.step = step;
        self.moments = moments;
    }

    /// Starts step t + 1; call once per step before [`AdamW::update_slice`].
    pub fn begin_step(&mut self) {
        self.step += 1;
    }

    /// The scalars of the current step (after [`AdamW::begin_step`]) for a slot with or without
    /// decay: every element then updates as
    /// `m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²; θ ← θ·keep − step_size·m / (√v·inverse_root_correction + ε)`
    /// (what [`AdamW::update_slice`] does, and what a device kernel must do to agree with it).
    pub fn coefficients(&self, decay: bool) -> AdamCoefficients<E> {
        // (powi takes an i32: a step count beyond it saturates, where β^t is 0 anyway.)
        let t = self.step.clamp(1, i32::MAX as u64) as i32;
        let [beta1, beta2] = self.config.betas;
        let lr = self.config.learning_rate;
        let (b1, b2) = (E::of(beta1), E::of(beta2));
        AdamCoefficients {
            step_size: E::of(lr / (1.0 - beta1.powi(t))),
            inverse_root_correction: E::of(1.0 / (1.0 - beta2.powi(t)).sqrt()),
            keep: E::of(if decay {
                1.0 - lr * self.config.weight_decay
            } else {
                1.0
            }),
            beta1: b1,
            beta2: b2,
            one_minus_beta1: E::one() - b1,
            one_minus_beta2: E::one() - b2,
            epsilon: E::of(self.config.epsilon),
        }
    }

    /// Updates one parameter slot in place (`values` and `gradient` of equal length; a slot keeps
    /// its length from its first update).
    pub fn update_slice(
        &mut self,
        slot: usize,
        values: &mut [E],
        gradient: &[E],
        decay: bool,
    ) -> Result<(), Error> {
        difftopk_core::Error::check_length("gradient", values.len(), gradient.len())?;
        let AdamCoefficients {
            step_size,
            inverse_root_correction,
            keep,
            beta1: b1,
            beta2: b2,
            one_minus_beta1: c1,
            one_minus_beta2: c2,
            epsilon,
        } = self.coefficients(decay);
        while self.moments.len() <= slot {
            self.moments.push((Vec::new(), Vec::new()));
        }
        let (m, v) = &mut self.moments[slot];
        if m.is_empty() {
            *m = vec![E::zero(); values.len()];
            *v = vec![E::zero(); values.len()];
        }
        difftopk_core::Error::check_length("optimiser slot", m.len(), values.len())?;
        for (((theta, &g), m), v) in values
            .iter_mut()
            .zip(gradient)
            .zip(m.iter_mut())
            .zip(v.iter_mut())
        {
            *m = b1 * *m + c1 * g;
            *v = b2 * *v + c2 * g * g;
            let denominator = v.sqrt() * inverse_root_correction + epsilon;
            *theta = *theta * keep - step_size * *m / denominator;
        }
        Ok(())
    }

    /// One AdamW step on a [`RuntimeLinear`] (slot 0: weight, decayed; slot 1: bias, not decayed)
    /// from the gradients a `backward()` returned.
    pub fn update_linear(
        &mut self,
        linear: &mut RuntimeLinear<E>,
        gradients: &mut Gradients<E, Cpu>,
    ) -> Result<(), Error> {
        let (weight_gradient, bias_gradient) = linear.parameter_gradients(gradients)?;
        self.begin_step();
        let mut weight = linear.weight.as_vec();
        self.update_slice(0, &mut weight, &weight_gradient, true)?;
        linear.weight.copy_from(&weight);
        let mut bias = linear.bias.as_vec();
        self.update_slice(1, &mut bias, &bias_gradient, false)?;
        linear.bias.copy_from(&bias);
        Ok(())
    }
}
