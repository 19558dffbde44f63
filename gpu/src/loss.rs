//! The top-k loss on a CUDA device: network tables uploaded once, one fused kernel per batch.

use std::sync::Arc;

use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DeviceRepr, LaunchConfig, PushKernelArg,
    ValidAsZeroBits,
};
use difftopk_core::{Relaxation, Top1Mode, TopkLoss, TopkLossConfig};

use crate::{kernels, Error};

/// Float types the kernels are instantiated for.
pub trait GpuFloat: difftopk_core::Real + DeviceRepr + ValidAsZeroBits + Unpin {
    /// Suffix of the kernel names (`f32`, `f64`).
    const SUFFIX: &'static str;
}
impl GpuFloat for f32 {
    const SUFFIX: &'static str = "f32";
}
impl GpuFloat for f64 {
    const SUFFIX: &'static str = "f64";
}

/// Whether a CUDA driver and at least one device are present. Loads the driver library only if
/// it exists, so it never panics on a machine without CUDA.
pub fn cuda_device_available() -> bool {
    // SAFETY: only tries to open the shared library by its usual names.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return false;
    }
    CudaContext::device_count().is_ok_and(|count| count > 0)
}

fn relaxation_code(relaxation: Relaxation) -> (i32, f64) {
    match relaxation {
        Relaxation::Logistic => (0, 0.0),
        Relaxation::LogisticPhi { lambda } => (1, lambda),
        Relaxation::Gaussian => (2, 0.0),
        Relaxation::Reciprocal => (3, 0.0),
        Relaxation::Cauchy => (4, 0.0),
        Relaxation::Optimal => (5, 0.0),
    }
}

/// [`TopkLoss`] on device 0: the batch's rows run one per thread in a fused forward + backward
/// kernel (preselection, network sweep, mixture, reverse sweep, scatter).
pub struct CudaTopkLoss {
    loss: TopkLoss,
    stream: Arc<CudaStream>,
    kernels: [CudaFunction; 2],
    comparators: CudaSlice<i32>,
    rank_weights: CudaSlice<f64>,
}

impl CudaTopkLoss {
    /// Builds the network, compiles the kernels for the device (once per process) and uploads
    /// the network. [`Error::NoCudaDevice`] without a driver or a device;
    /// [`Error::Unsupported`] for NeuralSort and SoftSort, not ported yet.
    pub fn new(config: TopkLossConfig) -> Result<Self, Error> {
        if !config.method().is_network() {
            return Err(Error::Unsupported(
                "NeuralSort and SoftSort (sorting networks only)",
            ));
        }
        if !cuda_device_available() {
            return Err(Error::NoCudaDevice);
        }
        let loss = TopkLoss::new(config)?;
        let context = CudaContext::new(0)?;
        let (major, minor) = context.compute_capability()?;
        let arch: &'static str = Box::leak(format!("compute_{major}{minor}").into_boxed_str());
        let module = context.load_module(kernels::topk_loss_ptx(arch)?)?;
        let kernels = [
            module.load_function("topk_loss_f32")?,
            module.load_function("topk_loss_f64")?,
        ];
        let stream = context.default_stream();
        let network = loss.network().expect("a network method has a network");
        let mut table = Vec::with_capacity(4 * network.num_comparators());
        for comparator in network.as_ref().comparators() {
            table.extend_from_slice(&[
                comparator.wire_a as i32,
                comparator.wire_b as i32,
                comparator.out_min as i32,
                comparator.out_max as i32,
            ]);
        }
        let comparators = stream.clone_htod(&table)?;
        let weights: Vec<f64> = (0..config.k())
            .map(|rank| config.rank_weight(rank))
            .collect();
        let rank_weights = stream.clone_htod(&weights)?;
        Ok(CudaTopkLoss {
            loss,
            stream,
            kernels,
            comparators,
            rank_weights,
        })
    }

    /// As [`TopkLoss::forward_backward`] on host slices: copies in, runs the kernel, copies out.
    pub fn forward_backward<F: GpuFloat>(
        &self,
        logits: &[F],
        labels: &[usize],
        gradient: Option<&mut [F]>,
    ) -> Result<F, Error> {
        let config = self.loss.config();
        let classes = config.classes();
        difftopk_core::Error::check_length("logits", labels.len() * classes, logits.len())?;
        if labels.is_empty() {
            return Err(difftopk_core::Error::LengthMismatch {
                what: "labels",
                expected: 1,
                actual: 0,
            }
            .into());
        }
        // The core's checks (labels, finite logits) on the host: the same errors as on the CPU.
        for (row, (z, &label)) in logits.chunks_exact(classes).zip(labels).enumerate() {
            if label >= classes {
                return Err(difftopk_core::Error::LabelOutOfRange {
                    row,
                    label,
                    classes,
                }
                .into());
            }
            if let Some(column) = z.iter().position(|v| !v.is_finite()) {
                return Err(difftopk_core::Error::NonFiniteInput { row, column }.into());
            }
        }
        let batch = labels.len();
        let n = config.sorted_inputs();
        let count = self.comparators.len() / 4;
        let logits_device = self.stream.clone_htod(logits)?;
        let labels32: Vec<u32> = labels.iter().map(|&l| l as u32).collect();
        let labels_device = self.stream.clone_htod(&labels32)?;
        let mut losses = self.stream.alloc_zeros::<F>(batch)?;
        let with_gradient = gradient.is_some();
        let mut gradient_device =
            self.stream
                .alloc_zeros::<F>(if with_gradient { logits.len() } else { 1 })?;
        let mut reals = self.stream.alloc_zeros::<F>(batch * (4 * count + 4 * n))?;
        let mut indices = self.stream.alloc_zeros::<u32>(batch * n)?;
        let (relaxation, lambda) = relaxation_code(config.relaxation());
        let mode: i32 = match config.top1_mode() {
            Top1Mode::Softmax => 0,
            Top1Mode::SoftmaxCrossEntropy => 1,
            Top1Mode::Sort => 2,
        };
        let p_k = config.topk_distribution();
        let p_first = p_k[0];
        let rest_weight: f64 = p_k[1..].iter().sum();
        let scale = 1.0 / batch as f64;
        let (batch_i, classes_i, n_i, count_i, k_i) = (
            batch as i32,
            classes as i32,
            n as i32,
            count as i32,
            config.k() as i32,
        );
        let preselect = i32::from(config.preselection().is_some());
        let beta = config.inverse_temperature();
        let with_gradient_i = i32::from(with_gradient);
        let kernel = if F::SUFFIX == "f32" {
            &self.kernels[0]
        } else {
            &self.kernels[1]
        };
        let mut launch = self.stream.launch_builder(kernel);
        launch
            .arg(&logits_device)
            .arg(&labels_device)
            .arg(&batch_i)
            .arg(&classes_i)
            .arg(&n_i)
            .arg(&self.comparators)
            .arg(&count_i)
            .arg(&k_i)
            .arg(&self.rank_weights)
            .arg(&p_first)
            .arg(&rest_weight)
            .arg(&mode)
            .arg(&preselect)
            .arg(&relaxation)
            .arg(&beta)
            .arg(&lambda)
            .arg(&scale)
            .arg(&mut losses)
            .arg(&mut gradient_device)
            .arg(&with_gradient_i)
            .arg(&mut reals)
            .arg(&mut indices);
        // SAFETY: the arguments match the kernel's signature in kernels/topk_loss.cu in order
        // and type; every buffer has the size the kernel indexes (batch rows of `classes`
        // logits, `4·count + 4·n` reals and `n` indices of scratch per row).
        unsafe { launch.launch(LaunchConfig::for_num_elems(batch as u32)) }?;
        let row_losses = self.stream.clone_dtoh(&losses)?;
        if let Some(gradient) = gradient {
            difftopk_core::Error::check_length("gradient", logits.len(), gradient.len())?;
            let values = self.stream.clone_dtoh(&gradient_device)?;
            gradient.copy_from_slice(&values);
        }
        let mut sum = F::zero();
        for &value in &row_losses {
            sum += value;
        }
        Ok(sum / F::of(batch as f64))
    }
}
