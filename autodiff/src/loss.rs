//! The top-k cross-entropy loss as one differentiable dfdx op.

use std::borrow::Cow;

use dfdx::prelude::*;
use difftopk_core::{TopkLoss, TopkLossConfig};

use crate::tape::register_vjp;
use crate::{Element, Error, Labels};

/// A loss definition: a validated config (the network is built on each call) or a
/// [`TopkLoss`] whose network was built once (preferred in a training loop).
pub trait LossDefinition {
    /// The loss with its network.
    fn topk_loss(&self) -> Result<Cow<'_, TopkLoss>, difftopk_core::Error>;
}

impl LossDefinition for TopkLossConfig {
    fn topk_loss(&self) -> Result<Cow<'_, TopkLoss>, difftopk_core::Error> {
        TopkLoss::new(*self).map(Cow::Owned)
    }
}

impl LossDefinition for TopkLoss {
    fn topk_loss(&self) -> Result<Cow<'_, TopkLoss>, difftopk_core::Error> {
        Ok(Cow::Borrowed(self))
    }
}

/// The top-k cross-entropy loss of Petersen et al. (2022), mean over the batch, as dfdx's
/// `cross_entropy_with_logits_loss` is used: `logits` is `(B, C)` (compile-time or run-time
/// dims), `labels` holds `B` class indices, the result is a scalar carrying `logits`' tape.
///
/// The value and `∂loss/∂logits` are computed together by the core's hand-written sweep (spec
/// section 12) in the forward pass when the tape is an `OwnedTape`; the backward op multiplies
/// that gradient by the upstream gradient of the loss, so `loss * 3.0`, or a sum with other
/// losses, back-propagates correctly. With a `NoneTape` no gradient is computed and nothing is
/// registered. Rows are processed on rayon's pool; the result is bit-identical to one thread.
///
/// Errors: the classes of `config` differ from `C`, a label count other than `B`, a label
/// `≥ C`, non-finite logits (the core's error names row and column), or a device error.
pub fn topk_cross_entropy<B, C, E, T, L>(
    logits: Tensor<(B, C), E, Cpu, T>,
    labels: &L,
    config: &impl LossDefinition,
) -> Result<Tensor<Rank0, E, Cpu, T>, Error>
where
    B: Dim,
    C: Dim,
    E: Element,
    Cpu: Device<E>,
    T: Tape<E, Cpu>,
    L: Labels + ?Sized,
{
    let loss = config.topk_loss()?;
    let (batch, classes) = (logits.shape().0.size(), logits.shape().1.size());
    difftopk_core::Error::check_length("logits columns", loss.config().classes(), classes)?;
    let labels = labels.as_labels();
    difftopk_core::Error::check_length("labels", batch, labels.len())?;
    scalar_loss(logits, |values, gradient| {
        loss.forward_backward_parallel(values, &labels, gradient)
    })
}

/// Plain softmax cross-entropy, mean over the batch, `−mean_b log softmax(s_b)[y_b]`, with the
/// core's hand-written gradient `(softmax(s_b) − e_{y_b}) / B` registered as one backward op: the
/// paper's baseline, taking class indices (dfdx's `cross_entropy_with_logits_loss` takes a
/// `(B, C)` probability tensor instead). Same errors as [`topk_cross_entropy`].
pub fn softmax_cross_entropy<B, C, E, T, L>(
    logits: Tensor<(B, C), E, Cpu, T>,
    labels: &L,
) -> Result<Tensor<Rank0, E, Cpu, T>, Error>
where
    B: Dim,
    C: Dim,
    E: Element,
    Cpu: Device<E>,
    T: Tape<E, Cpu>,
    L: Labels + ?Sized,
{
    let (batch, classes) = (logits.shape().0.size(), logits.shape().1.size());
    let labels = labels.as_labels();
    difftopk_core::Error::check_length("labels", batch, labels.len())?;
    scalar_loss(logits, |values, gradient| {
        difftopk_core::softmax_cross_entropy(values, &labels, classes, gradient)
    })
}

/// The shared body of the two losses: `compute(values, gradient)` returns the mean loss of the
/// contiguous `(B, C)` logits and, when given a buffer (only with an `OwnedTape`), writes
/// ∂loss/∂logits; the backward op then adds `upstream · gradient` to the logits' gradient.
fn scalar_loss<B, C, E, T>(
    logits: Tensor<(B, C), E, Cpu, T>,
    compute: impl FnOnce(&[E], Option<&mut [E]>) -> Result<E, difftopk_core::Error>,
) -> Result<Tensor<Rank0, E, Cpu, T>, Error>
where
    B: Dim,
    C: Dim,
    E: Element,
    Cpu: Device<E>,
    T: Tape<E, Cpu>,
{
    let (logits, mut tape) = logits.try_contiguous()?.split_tape();
    let values = logits.as_vec();
    let mut gradient = T::OWNS_TAPE.then(|| vec![E::zero(); values.len()]);
    let value = compute(&values, gradient.as_deref_mut())?;
    let output = logits.device().try_tensor_from_vec(vec![value], ())?;
    if let Some(gradient) = gradient {
        register_vjp(
            &mut tape,
            &logits,
            &output,
            move |upstream, input_gradient| {
                difftopk_core::Error::check_length(
                    "gradient",
                    gradient.len(),
                    input_gradient.len(),
                )?;
                let scale = upstream[0];
                for (target, &g) in input_gradient.iter_mut().zip(&gradient) {
                    *target += scale * g;
                }
                Ok(())
            },
        );
    }
    Ok(output.put_tape(tape))
}
