//! Registering a hand-written vector-Jacobian product on a dfdx tape.

use dfdx::shapes::Shape;
use dfdx::tensor::{Cpu, CpuError, Tape, Tensor};

use crate::Element;

/// Registers `∂L/∂input += vjp(∂L/∂output)` on `tape` (nothing when the tape is a `NoneTape`).
///
/// `input` must be contiguous (its gradient buffer is then in row-major logical order) and
/// `output` is the freshly made, contiguous output. `vjp` receives the upstream gradient of
/// `output` (as [`Gradients::get`](dfdx::tensor::Gradients::get) reads it, so a scaled loss or a
/// sum of losses works) and adds its contribution to the input's gradient. The forward pass has
/// validated every input, so `vjp` does not fail on data; a length mismatch would be a bug and is
/// reported as [`CpuError::WrongNumElements`] rather than a panic.
pub(crate) fn register_vjp<SIn, SOut, E, T, V>(
    tape: &mut T,
    input: &Tensor<SIn, E, Cpu>,
    output: &Tensor<SOut, E, Cpu>,
    vjp: V,
) where
    SIn: Shape,
    SOut: Shape,
    E: Element,
    T: Tape<E, Cpu>,
    Cpu: dfdx::tensor_ops::Device<E>,
    V: 'static + FnOnce(&[E], &mut [E]) -> Result<(), difftopk_core::Error>,
{
    if !T::OWNS_TAPE {
        return;
    }
    let input = input.ghost();
    let output = output.clone();
    tape.add_backward_op(move |grads| {
        grads.try_alloc_for(&input)?;
        grads.try_alloc_for(&output)?;
        let upstream = grads.get(&output).as_vec();
        let gradient = E::buffer_mut(grads.get_or_alloc_mut(&input)?);
        vjp(&upstream, gradient).map_err(|_| CpuError::WrongNumElements)
    });
}
