//! The relaxed top-k matrix operator (difftopk's `DiffTopkNet`) on a CUDA device: for each row
//! of scores x (n values), `P_topk` (n × k, row-major) with `P_topk[i, r]` the weight of input i
//! at ascending output position n − k + r (column k − 1 is rank 1), and its vector-Jacobian
//! product. The core's `operators::relaxed_topk` / `relaxed_topk_backward`, one thread per row.

use std::sync::{Arc, Mutex};

use cudarc::driver::{CudaFunction, CudaSlice, CudaStream, PushKernelArg};
use difftopk_core::{Relaxation, SortingNetwork};

use crate::device::{comparator_table, kernel_for, load_kernels, GpuFloat, Scratch, Status};
use crate::loss::{launch_config, relaxation_code};
use crate::Error;

/// The operator's configuration as the kernels take it (shared with the CPU test of the
/// kernel source).
#[doc(hidden)]
#[derive(Clone, Debug)]
pub struct OperatorArguments {
    /// Inputs n of the network.
    pub n: i32,
    /// Comparators of the network.
    pub count: i32,
    /// Columns k of P_topk.
    pub k: i32,
    /// Relaxation code (see `kernels/topk_loss.cu`).
    pub relaxation: i32,
    /// λ of logistic_phi (0 otherwise).
    pub lambda: f64,
    /// Steepness β.
    pub beta: f64,
    /// Comparators as (wire_a, wire_b, out_min, out_max).
    pub comparators: Vec<i32>,
}

impl OperatorArguments {
    /// Validates as the core does: `1 ≤ k ≤ n`, β finite and positive, λ valid.
    pub fn new(
        network: &SortingNetwork,
        relaxation: Relaxation,
        beta: f64,
        k: usize,
    ) -> Result<Self, Error> {
        let n = network.inputs();
        if k == 0 || k > n {
            return Err(difftopk_core::Error::TopkLargerThanInputs { k, inputs: n }.into());
        }
        relaxation.validate_with(beta)?;
        let comparators = comparator_table(network.as_ref().comparators());
        let (relaxation, lambda) = relaxation_code(relaxation);
        Ok(OperatorArguments {
            n: n as i32,
            count: network.num_comparators() as i32,
            k: k as i32,
            relaxation,
            lambda,
            beta,
            comparators,
        })
    }

    /// Reals of kernel scratch per row (the backward's, which the forward's fits in).
    pub fn reals_per_row(&self) -> usize {
        let (count, n, k) = (self.count as usize, self.n as usize, self.k as usize);
        4 * count + count * k + n * k + n
    }
}

/// The relaxed top-k matrix on device 0 for one network, relaxation, β and k.
pub struct CudaRelaxedTopk {
    arguments: OperatorArguments,
    stream: Arc<CudaStream>,
    forward: [CudaFunction; 2],
    backward: [CudaFunction; 2],
    comparators: CudaSlice<i32>,
    /// The status report's label argument (the operator has no labels).
    no_labels: CudaSlice<u32>,
    work: Mutex<(Scratch, Status)>,
}

impl CudaRelaxedTopk {
    /// Validates the configuration (as the core), compiles the kernels (once per process) and
    /// uploads the network. [`Error::NoCudaDevice`] without a driver or a device.
    pub fn new(
        network: &SortingNetwork,
        relaxation: Relaxation,
        beta: f64,
        k: usize,
    ) -> Result<Self, Error> {
        let arguments = OperatorArguments::new(network, relaxation, beta, k)?;
        let (stream, forward) = load_kernels("topk_matrix_forward")?;
        let (_, backward) = load_kernels("topk_matrix_backward")?;
        let table = if arguments.comparators.is_empty() {
            vec![0; 4]
        } else {
            arguments.comparators.clone()
        };
        let comparators = stream.clone_htod(&table)?;
        let status = Status::new(&stream)?;
        let no_labels = stream.alloc_zeros::<u32>(1)?;
        Ok(CudaRelaxedTopk {
            no_labels,
            arguments,
            stream,
            forward,
            backward,
            comparators,
            work: Mutex::new((Scratch::default(), status)),
        })
    }

    /// The stream the kernels run on.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    fn rows(&self, x: usize) -> Result<usize, Error> {
        let n = self.arguments.n as usize;
        if x == 0 || !x.is_multiple_of(n) {
            return Err(difftopk_core::Error::LengthMismatch {
                what: "x",
                expected: n,
                actual: x,
            }
            .into());
        }
        Ok(x / n)
    }

    /// `p_topk` (B × n × k) ← P_topk of each of the B rows of `x` (B × n). A non-finite score is
    /// the core's `NonFiniteInput` for the first such row.
    pub fn forward_device<F: GpuFloat>(
        &self,
        x: &CudaSlice<F>,
        p_topk: &mut CudaSlice<F>,
    ) -> Result<(), Error> {
        let a = &self.arguments;
        let batch = self.rows(x.len())?;
        difftopk_core::Error::check_length("P_topk", x.len() * a.k as usize, p_topk.len())?;
        let mut work = self.work.lock().unwrap_or_else(|p| p.into_inner());
        let (scratch, status) = &mut *work;
        status.reset(&self.stream)?;
        let (reals, _) = scratch.reserve::<F>(&self.stream, batch * a.reals_per_row(), 1)?;
        let batch_i = batch as i32;
        let mut launch = self.stream.launch_builder(kernel_for::<F>(&self.forward));
        launch
            .arg(x)
            .arg(&batch_i)
            .arg(&a.n)
            .arg(&self.comparators)
            .arg(&a.count)
            .arg(&a.k)
            .arg(&a.relaxation)
            .arg(&a.beta)
            .arg(&a.lambda)
            .arg(p_topk)
            .arg(reals)
            .arg(status.flags());
        // SAFETY: the arguments match `topk_matrix_forward_*` in kernels/topk_loss.cu; `x` has
        // B·n values, `p_topk` B·n·k (checked), scratch B · reals_per_row.
        unsafe { launch.launch(launch_config(batch)) }?;
        self.check(status, x)
    }

    /// `grad_x` (B × n) ← `Σ_{i,r} Ḡ[i,r] ∂P_topk[i,r]/∂x` for the adjoint `grad_p_topk`.
    pub fn backward_device<F: GpuFloat>(
        &self,
        x: &CudaSlice<F>,
        grad_p_topk: &CudaSlice<F>,
        grad_x: &mut CudaSlice<F>,
    ) -> Result<(), Error> {
        let a = &self.arguments;
        let batch = self.rows(x.len())?;
        difftopk_core::Error::check_length(
            "grad_P_topk",
            x.len() * a.k as usize,
            grad_p_topk.len(),
        )?;
        difftopk_core::Error::check_length("grad_x", x.len(), grad_x.len())?;
        let mut work = self.work.lock().unwrap_or_else(|p| p.into_inner());
        let (scratch, status) = &mut *work;
        status.reset(&self.stream)?;
        let (reals, _) = scratch.reserve::<F>(&self.stream, batch * a.reals_per_row(), 1)?;
        let batch_i = batch as i32;
        let mut launch = self.stream.launch_builder(kernel_for::<F>(&self.backward));
        launch
            .arg(x)
            .arg(grad_p_topk)
            .arg(&batch_i)
            .arg(&a.n)
            .arg(&self.comparators)
            .arg(&a.count)
            .arg(&a.k)
            .arg(&a.relaxation)
            .arg(&a.beta)
            .arg(&a.lambda)
            .arg(grad_x)
            .arg(reals)
            .arg(status.flags());
        // SAFETY: the arguments match `topk_matrix_backward_*`; sizes checked above.
        unsafe { launch.launch(launch_config(batch)) }?;
        self.check(status, x)
    }

    fn check<F: GpuFloat>(&self, status: &Status, x: &CudaSlice<F>) -> Result<(), Error> {
        // No labels here: the status's label flag stays unset; the row's values are read back
        // only when one is not finite.
        status.check(&self.stream, x, &self.no_labels, self.arguments.n as usize)
    }

    /// [`CudaRelaxedTopk::forward_device`] on host slices.
    pub fn forward<F: GpuFloat>(&self, x: &[F], p_topk: &mut [F]) -> Result<(), Error> {
        self.rows(x.len())?;
        difftopk_core::Error::check_length(
            "P_topk",
            x.len() * self.arguments.k as usize,
            p_topk.len(),
        )?;
        let x_device = self.stream.clone_htod(x)?;
        // SAFETY: the kernel writes every entry of a valid batch.
        let mut out = unsafe { self.stream.alloc::<F>(p_topk.len()) }?;
        self.forward_device(&x_device, &mut out)?;
        self.stream.memcpy_dtoh(&out, p_topk)?;
        Ok(())
    }

    /// [`CudaRelaxedTopk::backward_device`] on host slices.
    pub fn backward<F: GpuFloat>(
        &self,
        x: &[F],
        grad_p_topk: &[F],
        grad_x: &mut [F],
    ) -> Result<(), Error> {
        self.rows(x.len())?;
        difftopk_core::Error::check_length("grad_x", x.len(), grad_x.len())?;
        let x_device = self.stream.clone_htod(x)?;
        let grad_device = self.stream.clone_htod(grad_p_topk)?;
        // SAFETY: as above.
        let mut out = unsafe { self.stream.alloc::<F>(x.len()) }?;
        self.backward_device(&x_device, &grad_device, &mut out)?;
        self.stream.memcpy_dtoh(&out, grad_x)?;
        Ok(())
    }
}
