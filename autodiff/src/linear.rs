//! A linear layer `y = x · Wᵀ + b` whose sizes are known only at run time.

use dfdx::prelude::*;

use crate::{Element, Error};

/// A linear head with weight `W` of shape `[outputs, inputs]` (PyTorch's `nn.Linear` layout,
/// row-major: `W[c, d]` at `c · inputs + d`) and bias `b` of shape `[outputs]`, on run-time dims.
/// dfdx's own `Linear` needs compile-time sizes; this one takes them from the data.
#[derive(Clone, Debug)]
pub struct RuntimeLinear<E: Element> {
    /// `W`, `[outputs, inputs]`.
    pub weight: Tensor<(usize, usize), E, Cpu>,
    /// `b`, `[outputs]`.
    pub bias: Tensor<(usize,), E, Cpu>,
}

/// SplitMix64 (Steele, Lea & Flood 2014): a tiny, fully specified generator, so that a seed gives
/// the same initial head on every platform and dfdx version.
fn split_mix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl<E: Element> RuntimeLinear<E>
where
    Cpu: Device<E>,
{
    /// PyTorch's default initialisation: `W` and `b` uniform in `[−1/√inputs, 1/√inputs]`, drawn
    /// from `seed`. Errors when a size is zero.
    pub fn new(device: &Cpu, inputs: usize, outputs: usize, seed: u64) -> Result<Self, Error> {
        if inputs == 0 || outputs == 0 {
            return Err(difftopk_core::Error::Empty {
                what: if inputs == 0 {
                    "linear layer inputs"
                } else {
                    "linear layer outputs"
                },
            }
            .into());
        }
        let bound = 1.0 / (inputs as f64).sqrt();
        let mut state = seed;
        let mut draw = |count: usize| -> Vec<E> {
            (0..count)
                .map(|_| {
                    let unit = (split_mix(&mut state) >> 11) as f64 / (1u64 << 53) as f64;
                    E::of((2.0 * unit - 1.0) * bound)
                })
                .collect()
        };
        let weight = draw(outputs * inputs);
        let bias = draw(outputs);
        Self::from_parts(device, inputs, outputs, weight, bias)
    }

    /// A layer from its parameters (`weight` row-major `[outputs, inputs]`, `bias` `[outputs]`).
    pub fn from_parts(
        device: &Cpu,
        inputs: usize,
        outputs: usize,
        weight: Vec<E>,
        bias: Vec<E>,
    ) -> Result<Self, Error> {
        // (saturating: a wrapped product on a 32-bit target would let a short buffer pass)
        difftopk_core::Error::check_length("weight", inputs.saturating_mul(outputs), weight.len())?;
        difftopk_core::Error::check_length("bias", outputs, bias.len())?;
        Ok(RuntimeLinear {
            weight: device.try_tensor_from_vec(weight, (outputs, inputs))?,
            bias: device.try_tensor_from_vec(bias, (outputs,))?,
        })
    }

    /// Input size D.
    pub fn inputs(&self) -> usize {
        self.weight.shape().1
    }

    /// Output size C.
    pub fn outputs(&self) -> usize {
        self.weight.shape().0
    }

    /// `y = x · Wᵀ + b` for `x` of shape `(B, inputs)`, carrying `x`'s tape (trace `x` to train).
    /// Errors when `x` has the wrong number of columns.
    pub fn forward<T: Tape<E, Cpu>>(
        &self,
        x: Tensor<(usize, usize), E, Cpu, T>,
    ) -> Result<Tensor<(usize, usize), E, Cpu, T>, Error> {
        let (rows, columns) = *x.shape();
        difftopk_core::Error::check_length("input columns", self.inputs(), columns)?;
        let weight_t = self.weight.retaped::<T>().try_permute::<_, Axes2<1, 0>>()?;
        let product = x.try_matmul(weight_t)?;
        let bias = self
            .bias
            .retaped::<T>()
            .try_broadcast_like::<_, Axis<0>>(&(rows, self.outputs()))?;
        Ok(product.try_add(bias)?)
    }

    /// A fresh gradient store holding zeroed gradients for `W` and `b`; trace the input with it.
    pub fn alloc_grads(&self) -> Result<Gradients<E, Cpu>, Error> {
        let mut gradients = Gradients::leaky();
        gradients.try_alloc_for(&self.weight)?;
        gradients.try_alloc_for(&self.bias)?;
        Ok(gradients)
    }

    /// Gradients of `W` and `b` (row-major), zeros where none was recorded.
    pub fn parameter_gradients(
        &self,
        gradients: &mut Gradients<E, Cpu>,
    ) -> Result<(Vec<E>, Vec<E>), Error> {
        let weight = E::buffer_mut(gradients.get_or_alloc_mut(&self.weight)?).to_vec();
        let bias = E::buffer_mut(gradients.get_or_alloc_mut(&self.bias)?).to_vec();
        Ok((weight, bias))
    }
}
