//! A linear head trained on the device (float32): `logits = X·Wᵀ + b` and `∂W = Gᵀ·X` through
//! cuBLAS (loaded at run time), the loss kernel's gradient `G` in between, `∂b = Σ_rows G`, and
//! AdamW in place, all on the device; per step only the batch goes up and one loss comes down.
//!
//! Layout: `W` row-major `[classes, dimension]`, `X` row-major `[rows, dimension]`, logits and
//! `G` row-major `[rows, classes]`. cuBLAS is column-major, so a row-major `A (r × c)` is its
//! column-major `Aᵀ`: the logits' column-major `Lᵀ = W·Xᵀ` is `gemm(T, N)` of the column-major
//! `W` (`dimension × classes`) and `X` (`dimension × rows`), and `∂Wᵀ = Xᵀ·G` is `gemm(N, T)`.

use std::sync::Arc;

use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublas::{CudaBlas, Gemm, GemmConfig};
use cudarc::driver::{CudaFunction, CudaSlice, CudaStream, LaunchConfig, PushKernelArg};

use crate::device::{kernel_labels, load_functions};
use crate::{kernels, CudaSoftmaxCrossEntropy, CudaTopkLoss, Error};

/// A parameter tensor's AdamW moments `(m, v)` on the host.
pub type Moments = (Vec<f32>, Vec<f32>);

/// Which loss the device step minimises.
pub enum CudaStepLoss<'a> {
    /// Softmax cross-entropy.
    SoftmaxCrossEntropy(&'a CudaSoftmaxCrossEntropy),
    /// The top-k cross-entropy loss.
    Topk(&'a CudaTopkLoss),
}

/// The scalars of one AdamW step for one parameter tensor (difftopk-autodiff's
/// `AdamW::coefficients`): `m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²;
/// θ ← θ·keep − step_size·m / (√v·inverse_root_correction + ε)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamStep {
    /// η / (1 − β₁ᵗ).
    pub step_size: f32,
    /// 1 / √(1 − β₂ᵗ).
    pub inverse_root_correction: f32,
    /// 1 − ηλ (decayed tensors) or 1.
    pub keep: f32,
    /// β₁.
    pub beta1: f32,
    /// β₂.
    pub beta2: f32,
    /// 1 − β₁.
    pub one_minus_beta1: f32,
    /// 1 − β₂.
    pub one_minus_beta2: f32,
    /// ε.
    pub epsilon: f32,
}

/// One parameter tensor with its AdamW moments, on the device.
struct Parameter {
    values: CudaSlice<f32>,
    gradient: CudaSlice<f32>,
    first_moment: CudaSlice<f32>,
    second_moment: CudaSlice<f32>,
}

impl Parameter {
    fn new(
        stream: &Arc<CudaStream>,
        values: &[f32],
        moments: Option<(&[f32], &[f32])>,
    ) -> Result<Self, Error> {
        let (first_moment, second_moment) = match moments {
            Some((m, v)) => {
                difftopk_core::Error::check_length("first moment", values.len(), m.len())?;
                difftopk_core::Error::check_length("second moment", values.len(), v.len())?;
                (stream.clone_htod(m)?, stream.clone_htod(v)?)
            }
            None => (
                stream.alloc_zeros::<f32>(values.len())?,
                stream.alloc_zeros::<f32>(values.len())?,
            ),
        };
        Ok(Parameter {
            values: stream.clone_htod(values)?,
            gradient: stream.alloc_zeros::<f32>(values.len())?,
            first_moment,
            second_moment,
        })
    }
}

/// A linear head on device 0 with its step buffers (grown to the largest batch, then reused).
pub struct CudaHead {
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    classes: usize,
    dimension: usize,
    weight: Parameter,
    bias: Parameter,
    /// broadcast_bias_f32, column_sums_f32, adamw_f32, gather_rows_f32.
    kernels: [CudaFunction; 4],
    /// A training set kept on the device (`CudaHead::make_resident`): rows and labels.
    resident: Option<(CudaSlice<f32>, CudaSlice<u32>, usize)>,
    batch_rows: CudaSlice<u32>,
    x: CudaSlice<f32>,
    labels: CudaSlice<u32>,
    logits: CudaSlice<f32>,
    logits_gradient: CudaSlice<f32>,
    losses: CudaSlice<f32>,
    /// Rows the per-batch buffers (labels, losses, logits, G) are allocated for; 0 at first.
    allocated_rows: usize,
}

const BLOCK: u32 = 256;

fn blocks(count: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: ((count as u64).div_ceil(u64::from(BLOCK)) as u32, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

impl CudaHead {
    /// Uploads `W` (`classes × dimension`), `b` and, when resuming, the AdamW moments of both
    /// (`[(m_W, v_W), (m_b, v_b)]`). [`Error::NoCudaDevice`] without a driver or a device;
    /// [`Error::Driver`] naming cuBLAS when its library cannot be loaded.
    pub fn new(
        weight: &[f32],
        bias: &[f32],
        classes: usize,
        dimension: usize,
        moments: Option<[(&[f32], &[f32]); 2]>,
    ) -> Result<Self, Error> {
        difftopk_core::Error::check_length("weight", classes * dimension, weight.len())?;
        difftopk_core::Error::check_length("bias", classes, bias.len())?;
        if classes.max(dimension) > i32::MAX as usize {
            return Err(Error::Unsupported(
                "heads wider than 2³¹ − 1 (cuBLAS's int sizes)",
            ));
        }
        let (stream, kernels) = load_functions(
            kernels::HEAD_SOURCE,
            [
                "broadcast_bias_f32",
                "column_sums_f32",
                "adamw_f32",
                "gather_rows_f32",
            ],
        )?;
        // SAFETY: only tries to open the shared library by its usual names.
        if !unsafe { cudarc::cublas::sys::is_culib_present() } {
            return Err(Error::Driver(
                "the cuBLAS library (libcublas) cannot be loaded".into(),
            ));
        }
        let blas =
            CudaBlas::new(stream.clone()).map_err(|e| Error::Driver(format!("cuBLAS: {e:?}")))?;
        let [weight_moments, bias_moments] = match moments {
            Some([w, b]) => [Some(w), Some(b)],
            None => [None, None],
        };
        Ok(CudaHead {
            weight: Parameter::new(&stream, weight, weight_moments)?,
            bias: Parameter::new(&stream, bias, bias_moments)?,
            x: stream.alloc_zeros::<f32>(1)?,
            labels: stream.alloc_zeros::<u32>(1)?,
            logits: stream.alloc_zeros::<f32>(1)?,
            logits_gradient: stream.alloc_zeros::<f32>(1)?,
            losses: stream.alloc_zeros::<f32>(1)?,
            allocated_rows: 0,
            resident: None,
            batch_rows: stream.alloc_zeros::<u32>(1)?,
            blas,
            kernels,
            classes,
            dimension,
            stream,
        })
    }

    /// The stream the head runs on.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Keeps a whole training set on the device (`rows × dimension` values, row-major, and one
    /// label per row), when it fits in `fraction` of the device's free memory; then
    /// [`CudaHead::step_resident`] gathers batches there instead of uploading them. Returns
    /// whether it was made resident.
    pub fn make_resident(
        &mut self,
        values: &[f32],
        labels: &[usize],
        fraction: f64,
    ) -> Result<bool, Error> {
        difftopk_core::Error::check_length("x", labels.len() * self.dimension, values.len())?;
        let bytes = std::mem::size_of_val(values) + 4 * labels.len();
        let (free, _total) = self.stream.context().mem_get_info()?;
        if bytes as f64 > fraction * free as f64 || labels.len() > u32::MAX as usize {
            return Ok(false);
        }
        let labels32 = kernel_labels(labels);
        // Memory can run short between the query and the upload (another process): then the
        // batches are uploaded step by step instead.
        match (
            self.stream.clone_htod(values),
            self.stream.clone_htod(&labels32),
        ) {
            (Ok(values), Ok(labels32)) => {
                self.resident = Some((values, labels32, labels.len()));
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// As [`CudaHead::step`] on the rows `rows` (indices into the set made resident by
    /// [`CudaHead::make_resident`]), gathered on the device.
    pub fn step_resident(
        &mut self,
        rows: &[u32],
        loss: &CudaStepLoss<'_>,
        weight_step: &AdamStep,
        bias_step: &AdamStep,
    ) -> Result<f32, Error> {
        let count = rows.len();
        let Some((_, _, resident_rows)) = &self.resident else {
            return Err(Error::Unsupported("step_resident without a resident set"));
        };
        if let Some(&row) = rows.iter().find(|&&r| r as usize >= *resident_rows) {
            return Err(difftopk_core::Error::LengthMismatch {
                what: "resident row index",
                expected: *resident_rows,
                actual: row as usize,
            }
            .into());
        }
        self.prepare(count)?;
        let stream = self.stream.clone();
        if self.batch_rows.len() != count {
            self.batch_rows = stream.alloc_zeros::<u32>(count.max(1))?;
        }
        stream.memcpy_htod(rows, &mut self.batch_rows)?;
        let (count_i, dimension_i) = (count as i32, self.dimension as i32);
        let (source, source_labels, _) = self.resident.as_ref().expect("checked above");
        let mut launch = stream.launch_builder(&self.kernels[3]);
        launch
            .arg(source)
            .arg(source_labels)
            .arg(&self.batch_rows)
            .arg(&count_i)
            .arg(&dimension_i)
            .arg(&mut self.x)
            .arg(&mut self.labels);
        // SAFETY: `rows` holds `count` indices below the resident set's row count (checked),
        // `x` at least count·dimension floats and `labels` count entries (`prepare`).
        unsafe { launch.launch(blocks(count * self.dimension)) }?;
        self.step_on_device(count, loss, weight_step, bias_step)
    }

    /// Sizes the per-batch buffers for `rows` rows.
    fn prepare(&mut self, rows: usize) -> Result<(), Error> {
        let (classes, dimension) = (self.classes, self.dimension);
        if rows == 0 {
            return Err(difftopk_core::Error::Empty {
                what: "batch rows (labels)",
            }
            .into());
        }
        if rows > i32::MAX as usize {
            return Err(Error::Unsupported("batches over 2³¹ − 1 rows"));
        }
        let stream = self.stream.clone();
        if self.x.len() < rows * dimension {
            self.x = stream.alloc_zeros::<f32>(rows * dimension)?;
        }
        if self.allocated_rows != rows {
            self.labels = stream.alloc_zeros::<u32>(rows)?;
            self.losses = stream.alloc_zeros::<f32>(rows)?;
            self.logits = stream.alloc_zeros::<f32>(rows * classes)?;
            self.logits_gradient = stream.alloc_zeros::<f32>(rows * classes)?;
            self.allocated_rows = rows;
        }
        Ok(())
    }

    /// One step on the rows `x` (`labels.len() × dimension`, row-major): uploads the batch,
    /// runs the forward product, the loss kernel (its validity check included), the backward
    /// product, the bias gradient and AdamW (`weight_step` for W, `bias_step` for b); returns
    /// the mean loss.
    pub fn step(
        &mut self,
        x: &[f32],
        labels: &[usize],
        loss: &CudaStepLoss<'_>,
        weight_step: &AdamStep,
        bias_step: &AdamStep,
    ) -> Result<f32, Error> {
        let rows = labels.len();
        self.prepare(rows)?;
        difftopk_core::Error::check_length("x", rows * self.dimension, x.len())?;
        let labels32 = kernel_labels(labels);
        let stream = self.stream.clone();
        stream.memcpy_htod(x, &mut self.x.slice_mut(..x.len()))?;
        stream.memcpy_htod(&labels32, &mut self.labels)?;
        self.step_on_device(rows, loss, weight_step, bias_step)
    }

    /// The step once the batch is in `x` and `labels`.
    fn step_on_device(
        &mut self,
        rows: usize,
        loss: &CudaStepLoss<'_>,
        weight_step: &AdamStep,
        bias_step: &AdamStep,
    ) -> Result<f32, Error> {
        let (classes, dimension) = (self.classes, self.dimension);
        let stream = self.stream.clone();
        let (rows_i, classes_i, dimension_i) = (rows as i32, classes as i32, dimension as i32);
        // logits ← b (broadcast), then logits += X·Wᵀ.
        let mut launch = stream.launch_builder(&self.kernels[0]);
        launch
            .arg(&mut self.logits)
            .arg(&self.bias.values)
            .arg(&rows_i)
            .arg(&classes_i);
        // SAFETY: `logits` holds rows·classes floats and `bias` classes (allocated above).
        unsafe { launch.launch(blocks(rows * classes)) }?;
        let forward = GemmConfig {
            transa: cublasOperation_t::CUBLAS_OP_T,
            transb: cublasOperation_t::CUBLAS_OP_N,
            m: classes_i,
            n: rows_i,
            k: dimension_i,
            alpha: 1.0f32,
            lda: dimension_i,
            ldb: dimension_i,
            beta: 1.0f32,
            ldc: classes_i,
        };
        // SAFETY: column-major W (dimension × classes, lda = dimension) transposed, X
        // (dimension × rows, ldb = dimension) and logits (classes × rows, ldc = classes): every
        // extent matches the buffers' lengths checked or allocated above.
        unsafe {
            self.blas
                .gemm(forward, &self.weight.values, &self.x, &mut self.logits)
        }
        .map_err(|e| Error::Driver(format!("cuBLAS gemm: {e:?}")))?;
        match loss {
            CudaStepLoss::Topk(topk) => topk.forward_backward_device(
                &self.logits,
                &self.labels,
                &mut self.losses,
                Some(&mut self.logits_gradient),
            )?,
            CudaStepLoss::SoftmaxCrossEntropy(cross_entropy) => cross_entropy
                .forward_backward_device(
                    classes,
                    &self.logits,
                    &self.labels,
                    &mut self.losses,
                    Some(&mut self.logits_gradient),
                )?,
        }
        let backward = GemmConfig {
            transa: cublasOperation_t::CUBLAS_OP_N,
            transb: cublasOperation_t::CUBLAS_OP_T,
            m: dimension_i,
            n: classes_i,
            k: rows_i,
            alpha: 1.0f32,
            lda: dimension_i,
            ldb: classes_i,
            beta: 0.0f32,
            ldc: dimension_i,
        };
        // SAFETY: column-major X (dimension × rows, lda = dimension), G read transposed
        // (G is column-major classes × rows, ldb = classes) and ∂W (dimension × classes,
        // ldc = dimension).
        unsafe {
            self.blas.gemm(
                backward,
                &self.x,
                &self.logits_gradient,
                &mut self.weight.gradient,
            )
        }
        .map_err(|e| Error::Driver(format!("cuBLAS gemm: {e:?}")))?;
        let mut launch = stream.launch_builder(&self.kernels[1]);
        launch
            .arg(&self.logits_gradient)
            .arg(&rows_i)
            .arg(&classes_i)
            .arg(&mut self.bias.gradient);
        // SAFETY: G holds rows·classes floats, the bias gradient classes.
        unsafe { launch.launch(blocks(classes)) }?;
        for (parameter, adam) in [(&mut self.weight, weight_step), (&mut self.bias, bias_step)] {
            let count = parameter.values.len() as i64;
            let mut launch = stream.launch_builder(&self.kernels[2]);
            launch
                .arg(&mut parameter.values)
                .arg(&parameter.gradient)
                .arg(&mut parameter.first_moment)
                .arg(&mut parameter.second_moment)
                .arg(&count)
                .arg(&adam.step_size)
                .arg(&adam.inverse_root_correction)
                .arg(&adam.keep)
                .arg(&adam.beta1)
                .arg(&adam.beta2)
                .arg(&adam.one_minus_beta1)
                .arg(&adam.one_minus_beta2)
                .arg(&adam.epsilon);
            // SAFETY: the four buffers hold `count` floats each (one parameter tensor).
            unsafe { launch.launch(blocks(count as usize)) }?;
        }
        let losses = stream.clone_dtoh(&self.losses)?;
        Ok(losses.iter().sum::<f32>() / rows as f32)
    }

    /// Downloads `(W, b)`.
    pub fn parameters(&self) -> Result<(Vec<f32>, Vec<f32>), Error> {
        Ok((
            self.stream.clone_dtoh(&self.weight.values)?,
            self.stream.clone_dtoh(&self.bias.values)?,
        ))
    }

    /// Downloads the AdamW moments `[(m_W, v_W), (m_b, v_b)]`.
    pub fn moments(&self) -> Result<[Moments; 2], Error> {
        let download = |p: &Parameter| -> Result<Moments, Error> {
            Ok((
                self.stream.clone_dtoh(&p.first_moment)?,
                self.stream.clone_dtoh(&p.second_moment)?,
            ))
        };
        Ok([download(&self.weight)?, download(&self.bias)?])
    }
}
