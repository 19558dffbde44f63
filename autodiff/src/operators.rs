//! The relaxed sorting operators as differentiable dfdx ops over a batch of rows.
//!
//! Convention (the core's, spec section 0): for one row `x` of n values, `sorted = x · P`, where
//! `P[i, j]` is the weight of input i at ascending output position j; the top-k matrix is
//! `P_topk[i, r] = P[i, n − k + r]`, column k − 1 being rank 1 (the largest). Outputs are
//! `(B, n)` sorted values, `(B, n, n)` matrices P and `(B, n, k)` matrices P_topk.

#![allow(clippy::type_complexity)] // dfdx tensor types with four parameters are long by nature.

use dfdx::prelude::*;
use difftopk_core::{operators, NetworkRef, Relaxation, SortingNetwork};
use rayon::prelude::*;

use crate::tape::register_vjp;
use crate::{Element, Error};

type CoreError = difftopk_core::Error;

/// Checks every value is finite and within ±`MAX_LOGIT` (as the core's operators), naming the
/// first bad (row, column).
fn check_finite<E: Element>(values: &[E], n: usize) -> Result<(), CoreError> {
    if let Some(index) = values.iter().position(|v| !v.is_finite()) {
        return Err(CoreError::NonFiniteInput {
            row: index / n,
            column: index % n,
        });
    }
    let bound = E::of(difftopk_core::loss::MAX_LOGIT);
    match values.iter().position(|v| v.abs() > bound) {
        Some(index) => Err(CoreError::LogitTooLarge {
            row: index / n,
            column: index % n,
        }),
        None => Ok(()),
    }
}

fn check_beta(beta: f64) -> Result<(), CoreError> {
    difftopk_core::relaxation::check_inverse_temperature(beta)
}

fn check_k(k: usize, n: usize) -> Result<(), CoreError> {
    if k == 0 || k > n {
        Err(CoreError::TopkLargerThanInputs { k, inputs: n })
    } else {
        Ok(())
    }
}

/// Runs `row_op(row_input, row_output, scratch)` over the rows of a batch in parallel, one
/// scratch buffer per rayon task.
fn for_each_row<E: Element, Op>(
    input: &[E],
    input_width: usize,
    output: &mut [E],
    output_width: usize,
    scratch_len: usize,
    row_op: Op,
) -> Result<(), CoreError>
where
    Op: Fn(usize, &[E], &mut [E], &mut [E]) -> Result<(), CoreError> + Sync,
{
    input
        .par_chunks(input_width)
        .zip(output.par_chunks_mut(output_width))
        .enumerate()
        .try_for_each_init(
            || vec![E::zero(); scratch_len],
            |scratch, (row, (x, y))| row_op(row, x, y, scratch),
        )
}

/// A sorting network with its relaxation and inverse temperature β: diffsort's `DiffSortNet`
/// and difftopk's `DiffTopkNet` as dfdx ops.
#[derive(Clone, Debug)]
pub struct RelaxedSortingNetwork {
    network: SortingNetwork,
    relaxation: Relaxation,
    inverse_temperature: f64,
}

impl RelaxedSortingNetwork {
    /// Validates the relaxation and β together (`Relaxation::validate_with`: β finite and in
    /// range, λ in range, logistic_phi's slope at ties within `f32`).
    pub fn new(
        network: SortingNetwork,
        relaxation: Relaxation,
        inverse_temperature: f64,
    ) -> Result<Self, Error> {
        relaxation.validate_with(inverse_temperature)?;
        Ok(RelaxedSortingNetwork {
            network,
            relaxation,
            inverse_temperature,
        })
    }

    /// The network.
    pub fn network(&self) -> &SortingNetwork {
        &self.network
    }

    fn prepare<B: Dim, N: Dim, E: Element, T: Tape<E, Cpu>>(
        &self,
        x: Tensor<(B, N), E, Cpu, T>,
    ) -> Result<(Tensor<(B, N), E, Cpu>, T, Vec<E>), Error>
    where
        Cpu: Device<E>,
    {
        let n = x.shape().1.size();
        CoreError::check_length("columns", self.network.inputs(), n)?;
        let (x, tape) = x.try_contiguous()?.split_tape();
        let values = x.as_vec();
        check_finite(&values, n)?;
        Ok((x, tape, values))
    }

    /// The relaxed permutation matrices: `(B, n)` → `(B, n, n)`, `P[b, i, j]` the weight of input
    /// i at ascending position j of row b. Doubly stochastic. O(n · comparators) per row.
    pub fn permutation<B: Dim, N: Dim, E: Element, T: Tape<E, Cpu>>(
        &self,
        x: Tensor<(B, N), E, Cpu, T>,
    ) -> Result<Tensor<(B, N, N), E, Cpu, T>, Error>
    where
        Cpu: Device<E>,
    {
        let shape = *x.shape();
        let n = shape.1.size();
        let (x, mut tape, values) = self.prepare(x)?;
        let network = self.network.as_ref();
        let (relaxation, beta) = (self.relaxation, E::of(self.inverse_temperature));
        let scratch_len = operators::relaxed_sort_scratch_len(&network);
        let mut p = vec![E::zero(); values.len() * n];
        for_each_row(
            &values,
            n,
            &mut p,
            n * n,
            scratch_len + n,
            |_, x, p, scratch| {
                let (sorted, scratch) = scratch.split_at_mut(n);
                operators::relaxed_sort(&network, relaxation, beta, x, sorted, Some(p), scratch)
            },
        )?;
        let output = x
            .device()
            .try_tensor_from_vec(p, (shape.0, shape.1, shape.1))?;
        let network = self.network.clone();
        register_vjp(&mut tape, &x, &output, move |upstream, gradient| {
            let network = network.as_ref();
            // (the core's VJPs add to their gradient row, as the tape wants. A row's error
            // would leave the rows before it added: the forward pass validated every input, so
            // only a bug gets there.)
            CoreError::check_length("gradient", values.len(), gradient.len())?;
            for_each_row(
                &values,
                n,
                gradient,
                n,
                operators::relaxed_sort_scratch_len(&network),
                |row, x, grad_x, scratch| {
                    let grad_p = &upstream[row * n * n..(row + 1) * n * n];
                    operators::relaxed_sort_backward(
                        &network,
                        relaxation,
                        beta,
                        x,
                        None,
                        Some(grad_p),
                        grad_x,
                        scratch,
                    )
                },
            )
        });
        Ok(output.put_tape(tape))
    }

    /// Relaxed sort of each row, ascending: `(B, n)` → `(B, n)`, `sorted = x · P`.
    /// O(comparators) per row.
    pub fn sort<B: Dim, N: Dim, E: Element, T: Tape<E, Cpu>>(
        &self,
        x: Tensor<(B, N), E, Cpu, T>,
    ) -> Result<Tensor<(B, N), E, Cpu, T>, Error>
    where
        Cpu: Device<E>,
    {
        let shape = *x.shape();
        let n = shape.1.size();
        let (x, mut tape, values) = self.prepare(x)?;
        let network = self.network.as_ref();
        let (relaxation, beta) = (self.relaxation, E::of(self.inverse_temperature));
        let scratch_len = operators::relaxed_sort_scratch_len(&network);
        let mut sorted = vec![E::zero(); values.len()];
        for_each_row(
            &values,
            n,
            &mut sorted,
            n,
            scratch_len,
            |_, x, y, scratch| {
                operators::relaxed_sort(&network, relaxation, beta, x, y, None, scratch)
            },
        )?;
        let output = x.device().try_tensor_from_vec(sorted, shape)?;
        let network = self.network.clone();
        register_vjp(&mut tape, &x, &output, move |upstream, gradient| {
            let network: NetworkRef<'_> = network.as_ref();
            // (the core's VJPs add to their gradient row, as the tape wants. A row's error
            // would leave the rows before it added: the forward pass validated every input, so
            // only a bug gets there.)
            CoreError::check_length("gradient", values.len(), gradient.len())?;
            for_each_row(
                &values,
                n,
                gradient,
                n,
                operators::relaxed_sort_scratch_len(&network),
                |row, x, grad_x, scratch| {
                    let grad_sorted = &upstream[row * n..(row + 1) * n];
                    operators::relaxed_sort_backward(
                        &network,
                        relaxation,
                        beta,
                        x,
                        Some(grad_sorted),
                        None,
                        grad_x,
                        scratch,
                    )
                },
            )
        });
        Ok(output.put_tape(tape))
    }

    /// The relaxed top-k matrices: `(B, n)` → `(B, n, k)`, `P_topk[b, i, r] = P[b, i, n − k + r]`
    /// (column k − 1 is rank 1). This is difftopk's `DiffTopkNet` and what users ask for as
    /// "differentiable top-k indices". O(k · comparators) per row.
    pub fn topk_matrix<B: Dim, N: Dim, K: Dim, E: Element, T: Tape<E, Cpu>>(
        &self,
        x: Tensor<(B, N), E, Cpu, T>,
        k: K,
    ) -> Result<Tensor<(B, N, K), E, Cpu, T>, Error>
    where
        Cpu: Device<E>,
    {
        let shape = *x.shape();
        let (n, kk) = (shape.1.size(), k.size());
        check_k(kk, n)?;
        let (x, mut tape, values) = self.prepare(x)?;
        let network = self.network.as_ref();
        let (relaxation, beta) = (self.relaxation, E::of(self.inverse_temperature));
        let scratch_len = operators::relaxed_topk_scratch_len(&network, kk);
        let mut p = vec![E::zero(); values.len() * kk];
        for_each_row(
            &values,
            n,
            &mut p,
            n * kk,
            scratch_len,
            |_, x, p, scratch| {
                operators::relaxed_topk(&network, relaxation, beta, kk, x, p, scratch)
            },
        )?;
        let output = x.device().try_tensor_from_vec(p, (shape.0, shape.1, k))?;
        let network = self.network.clone();
        register_vjp(&mut tape, &x, &output, move |upstream, gradient| {
            let network = network.as_ref();
            // (the core's VJPs add to their gradient row, as the tape wants. A row's error
            // would leave the rows before it added: the forward pass validated every input, so
            // only a bug gets there.)
            CoreError::check_length("gradient", values.len(), gradient.len())?;
            for_each_row(
                &values,
                n,
                gradient,
                n,
                operators::relaxed_topk_scratch_len(&network, kk),
                |row, x, grad_x, scratch| {
                    let grad_p = &upstream[row * n * kk..(row + 1) * n * kk];
                    operators::relaxed_topk_backward(
                        &network, relaxation, beta, kk, x, grad_p, grad_x, scratch,
                    )
                },
            )
        });
        Ok(output.put_tape(tape))
    }
}

/// Which of the two softmax-based relaxations of spec section 4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    NeuralSort,
    SoftSort,
}

fn soft_topk_matrix<B: Dim, N: Dim, K: Dim, E: Element, T: Tape<E, Cpu>>(
    family: Family,
    x: Tensor<(B, N), E, Cpu, T>,
    k: K,
    inverse_temperature: f64,
) -> Result<Tensor<(B, N, K), E, Cpu, T>, Error>
where
    Cpu: Device<E>,
{
    let shape = *x.shape();
    let (n, kk) = (shape.1.size(), k.size());
    check_k(kk, n)?;
    check_beta(inverse_temperature)?;
    let (x, mut tape) = x.try_contiguous()?.split_tape();
    let values = x.as_vec();
    check_finite(&values, n)?;
    let beta = E::of(inverse_temperature);
    let mut p = vec![E::zero(); values.len() * kk];
    // Scratch per row: k·n rows, k·n adjoint, n reals, then n indices stored as reals' count.
    let scratch_len = 2 * kk * n + n;
    p.par_chunks_mut(n * kk)
        .zip(values.par_chunks(n))
        .try_for_each_init(
            || (vec![E::zero(); scratch_len], vec![0u32; n]),
            |(reals, order), (p, x)| {
                let (rows, rest) = reals.split_at_mut(kk * n);
                match family {
                    Family::NeuralSort => difftopk_core::neuralsort::neuralsort_topk(
                        x,
                        kk,
                        beta,
                        p,
                        rows,
                        &mut rest[..n],
                        order,
                    ),
                    Family::SoftSort => difftopk_core::softsort::softsort_topk(
                        x,
                        kk,
                        beta,
                        p,
                        rows,
                        &mut order[..kk],
                    ),
                }
            },
        )?;
    let output = x
        .device()
        .try_tensor_from_vec(p.clone(), (shape.0, shape.1, k))?;
    register_vjp(&mut tape, &x, &output, move |upstream, gradient| {
        CoreError::check_length("gradient", values.len(), gradient.len())?;
        CoreError::check_length("upstream", p.len(), upstream.len())?;
        gradient
            .par_chunks_mut(n)
            .zip(values.par_chunks(n))
            .zip(p.par_chunks(n * kk).zip(upstream.par_chunks(n * kk)))
            .try_for_each_init(
                || (vec![E::zero(); scratch_len], vec![0u32; n]),
                |(reals, order), ((g, x), (p, up))| {
                    let (rows, rest) = reals.split_at_mut(kk * n);
                    let (adjoint, c_bar) = rest.split_at_mut(kk * n);
                    match family {
                        Family::NeuralSort => difftopk_core::neuralsort::neuralsort_topk_backward(
                            x, kk, beta, p, up, g, rows, adjoint, c_bar, order,
                        ),
                        Family::SoftSort => difftopk_core::softsort::softsort_topk_backward(
                            x,
                            kk,
                            beta,
                            p,
                            up,
                            g,
                            rows,
                            adjoint,
                            &mut order[..kk],
                        ),
                    }
                },
            )?;
        Ok(())
    });
    Ok(output.put_tape(tape))
}

/// NeuralSort's relaxed top-k matrices (Grover et al. 2019), `(B, n)` → `(B, n, k)`, at inverse
/// temperature β = 1/τ; same column convention as [`RelaxedSortingNetwork::topk_matrix`].
/// O(k · n) per row after an O(n log n) sort.
pub fn neuralsort_topk_matrix<B: Dim, N: Dim, K: Dim, E: Element, T: Tape<E, Cpu>>(
    x: Tensor<(B, N), E, Cpu, T>,
    k: K,
    inverse_temperature: f64,
) -> Result<Tensor<(B, N, K), E, Cpu, T>, Error>
where
    Cpu: Device<E>,
{
    soft_topk_matrix(Family::NeuralSort, x, k, inverse_temperature)
}

/// SoftSort's relaxed top-k matrices (Prillo & Eisenschlos 2020), `(B, n)` → `(B, n, k)`, at
/// inverse temperature β = 1/τ; same column convention. O(k · n) per row.
pub fn softsort_topk_matrix<B: Dim, N: Dim, K: Dim, E: Element, T: Tape<E, Cpu>>(
    x: Tensor<(B, N), E, Cpu, T>,
    k: K,
    inverse_temperature: f64,
) -> Result<Tensor<(B, N, K), E, Cpu, T>, Error>
where
    Cpu: Device<E>,
{
    soft_topk_matrix(Family::SoftSort, x, k, inverse_temperature)
}
