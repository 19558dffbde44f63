//! The top-k loss and plain softmax cross-entropy on a CUDA device: network tables uploaded
//! once, one fused kernel per batch, scratch kept between batches.

use std::sync::{Arc, Mutex};

use cudarc::driver::{CudaFunction, CudaSlice, CudaStream, LaunchConfig, PushKernelArg};
use difftopk_core::{Method, Relaxation, Top1Mode, TopkLoss, TopkLossConfig};

use crate::device::{
    comparator_table, independent_runs, kernel_for, kernel_labels, load_kernels, GpuFloat, Scratch,
    Status,
};
use crate::Error;

/// Threads per block of the one-thread-per-row kernels.
const BLOCK: u32 = 128;

/// `preselect` of `topk_loss_*` when `topk_select_warp_*` has selected (kernels/topk_loss.cu).
const PRESELECT_DONE: i32 = 2;

/// Warps per block of the one-warp-per-row kernels.
const WARPS_PER_BLOCK: usize = 4;

/// The shared memory a block may use without opting in (48 KiB on every architecture since
/// compute capability 3.0); the warp kernel is used while its rows' scratch fits.
const SHARED_BYTES_LIMIT: usize = 48 * 1024;

pub(crate) fn relaxation_code(relaxation: Relaxation) -> (i32, f64) {
    match relaxation {
        Relaxation::Logistic => (0, 0.0),
        Relaxation::LogisticPhi { lambda } => (1, lambda),
        Relaxation::Gaussian => (2, 0.0),
        Relaxation::Reciprocal => (3, 0.0),
        Relaxation::Cauchy => (4, 0.0),
        Relaxation::Optimal => (5, 0.0),
    }
}

pub(crate) fn launch_config(batch: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: ((batch as u32).div_ceil(BLOCK), 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Checks the buffer sizes of a batch: `labels.len()` rows (at least one) of `classes` logits,
/// one loss per row, a gradient shaped as the logits.
/// Which kernels run a batch of [`CudaTopkLoss`] (all compute the same, bit for bit; see
/// `kernels/topk_loss.cu`). Public for tests and benchmarks; the default is `Automatic`.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowKernel {
    /// Rows without a preselection: `ThreadPerRow`. With one: `FusedWarp` up to
    /// [`FUSED_WARP_MAX_BATCH`] rows where its scratch fits in shared memory, else
    /// `SelectThenThread`.
    Automatic,
    /// `topk_loss_*`: one thread per row does everything.
    ThreadPerRow,
    /// `topk_loss_warp_*`: one warp per row selects, lane 0 runs the row (with a preselection
    /// whose scratch fits in shared memory; otherwise `ThreadPerRow`).
    FusedWarp,
    /// `topk_select_warp_*` (one warp per row selects and zeroes the gradient row), then
    /// `topk_loss_*` on the selection (with a preselection; otherwise `ThreadPerRow`).
    SelectThenThread,
    /// `topk_loss_warp_sweep_*`: one warp per row selects, then for a sorting network the whole
    /// warp sweeps it, each run of independent comparators spread over the lanes (NeuralSort
    /// and SoftSort: lane 0, as `FusedWarp`); with a preselection whose scratch fits in shared
    /// memory, otherwise `ThreadPerRow`. Bit for bit the other paths' results on the CPU
    /// emulation; not yet timed on a device, so `Automatic` does not choose it.
    WarpSweep,
}

/// Batches up to this many rows with a preselection take the fused one-warp-per-row kernel;
/// larger ones the selection kernel and then one thread per row, which keeps every lane busy
/// once the batch fills the device. On an H100 (m = 16, n = 100 and 1000, three networks) the
/// fused kernel was 1.2–1.6× faster at 128 rows, the pair 1.03–1.15× faster at 4096 and
/// 1.3–3.5× at 65536; 1024 lies between the measured sizes.
#[doc(hidden)]
pub const FUSED_WARP_MAX_BATCH: usize = 1024;

/// Launch shape of the one-warp-per-row kernels: `WARPS_PER_BLOCK` rows per block.
pub(crate) fn warp_launch_config(batch: usize, shared_bytes_per_warp: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (batch.div_ceil(WARPS_PER_BLOCK) as u32, 1, 1),
        block_dim: (32 * WARPS_PER_BLOCK as u32, 1, 1),
        shared_mem_bytes: (WARPS_PER_BLOCK * shared_bytes_per_warp) as u32,
    }
}

fn check_batch(
    classes: usize,
    logits: usize,
    labels: usize,
    losses: usize,
    gradient: Option<usize>,
) -> Result<(), Error> {
    if labels == 0 {
        return Err(difftopk_core::Error::Empty {
            what: "batch rows (labels)",
        }
        .into());
    }
    difftopk_core::Error::check_length("logits", labels * classes, logits)?;
    difftopk_core::Error::check_length("losses", labels, losses)?;
    if let Some(gradient) = gradient {
        difftopk_core::Error::check_length("gradient", logits, gradient)?;
    }
    Ok(())
}

/// Host convenience shared by both losses: uploads, runs `device_call`, downloads the gradient
/// and returns the mean of the per-row losses.
fn on_host<F: GpuFloat>(
    stream: &Arc<CudaStream>,
    logits: &[F],
    labels: &[usize],
    gradient: Option<&mut [F]>,
    device_call: impl FnOnce(
        &CudaSlice<F>,
        &CudaSlice<u32>,
        &mut CudaSlice<F>,
        Option<&mut CudaSlice<F>>,
    ) -> Result<(), Error>,
) -> Result<F, Error> {
    if let Some(gradient) = &gradient {
        difftopk_core::Error::check_length("gradient", logits.len(), gradient.len())?;
    }
    let labels32 = kernel_labels(labels);
    let logits_device = stream.clone_htod(logits)?;
    let labels_device = stream.clone_htod(&labels32)?;
    let mut losses = stream.alloc_zeros::<F>(labels.len())?;
    match gradient {
        Some(gradient) => {
            // SAFETY: the kernel writes every entry of the gradient of a valid batch.
            let mut gradient_device = unsafe { stream.alloc::<F>(logits.len()) }?;
            device_call(
                &logits_device,
                &labels_device,
                &mut losses,
                Some(&mut gradient_device),
            )?;
            stream.memcpy_dtoh(&gradient_device, gradient)?;
        }
        None => device_call(&logits_device, &labels_device, &mut losses, None)?,
    }
    let row_losses = stream.clone_dtoh(&losses)?;
    let mut sum = F::zero();
    for &value in &row_losses {
        sum += value;
    }
    Ok(sum / F::of(labels.len() as f64))
}

/// The top-k kernel's arguments that depend only on the configuration (the mapping shared by
/// [`CudaTopkLoss`] and the test that runs the kernel source on the CPU).
#[doc(hidden)]
#[derive(Clone, Debug)]
pub struct KernelArguments {
    /// Sorted inputs n′ (m, or the class count).
    pub n: i32,
    /// Comparators of the network (0 for NeuralSort and SoftSort).
    pub count: i32,
    /// K, the length of P_K.
    pub k: i32,
    /// Top-1 mode: 0 `sm`, 1 `smce`, 2 `sort`.
    pub mode: i32,
    /// 1 with the preselection of m.
    pub preselect: i32,
    /// 0 sorting network, 1 NeuralSort, 2 SoftSort.
    pub family: i32,
    /// Relaxation code (see `kernels/topk_loss.cu`) and its λ.
    pub relaxation: i32,
    /// λ of logistic_phi (0 otherwise).
    pub lambda: f64,
    /// Inverse temperature β.
    pub beta: f64,
    /// P_K[0].
    pub p_first: f64,
    /// Σ P_K[1..].
    pub rest_weight: f64,
    /// Comparators as (wire_a, wire_b, out_min, out_max); one unused entry when there are none.
    pub comparators: Vec<i32>,
    /// Where each run of mutually independent comparators starts, then `count` (the layers of
    /// the network; `[0]` without comparators).
    pub layer_starts: Vec<i32>,
    /// Runs in `layer_starts` (its length minus one).
    pub layers: i32,
    /// The mass weight of each rank, `config.rank_weight(ρ)`.
    pub rank_weights: Vec<f64>,
}

impl KernelArguments {
    /// The arguments for `loss`'s configuration and network.
    pub fn new(loss: &TopkLoss) -> Self {
        let config = loss.config();
        let comparators = match loss.network() {
            Some(network) => comparator_table(network.as_ref().comparators()),
            None => vec![0i32; 4],
        };
        let (relaxation, lambda) = relaxation_code(config.relaxation());
        let p_k = config.topk_distribution();
        let count = loss
            .network()
            .map_or(0, |network| network.num_comparators());
        let layer_starts = independent_runs(&comparators, count);
        KernelArguments {
            n: config.sorted_inputs() as i32,
            count: count as i32,
            layers: layer_starts.len() as i32 - 1,
            layer_starts,
            k: config.k() as i32,
            mode: match config.top1_mode() {
                Top1Mode::Softmax => 0,
                Top1Mode::SoftmaxCrossEntropy => 1,
                Top1Mode::Sort => 2,
            },
            preselect: i32::from(config.preselection().is_some()),
            family: match config.method() {
                Method::NeuralSort => 1,
                Method::SoftSort => 2,
                _ => 0,
            },
            relaxation,
            lambda,
            beta: config.inverse_temperature(),
            p_first: p_k[0],
            rest_weight: p_k[1..].iter().sum(),
            comparators,
            rank_weights: (0..config.k())
                .map(|rank| config.rank_weight(rank))
                .collect(),
        }
    }

    /// Reals of kernel scratch per row: the tape (4 per comparator), x, v, the selected logits,
    /// their softmax, K relaxed rows and NeuralSort's deviations.
    pub fn reals_per_row(&self) -> usize {
        4 * self.count as usize + (5 + self.k as usize) * self.n as usize
    }

    /// Indices of kernel scratch per row: the selection and SoftSort's top K.
    pub fn indices_per_row(&self) -> usize {
        (self.n + self.k) as usize
    }

    /// Shared memory per warp of `topk_loss_warp_*` for reals of `real_bytes` bytes: the reals
    /// of a row, then its indices, each rounded up to 8 bytes (as the kernel computes it).
    pub fn warp_bytes(&self, real_bytes: usize) -> usize {
        let round_up = |bytes: usize| bytes.div_ceil(8) * 8;
        round_up(self.reals_per_row() * real_bytes) + round_up(self.indices_per_row() * 4)
    }

    /// Whether batches go to the one-warp-per-row kernel: rows with a preselection whose
    /// scratch fits in shared memory.
    pub fn uses_warp_kernel(&self, real_bytes: usize) -> bool {
        self.preselect != 0 && WARPS_PER_BLOCK * self.warp_bytes(real_bytes) <= SHARED_BYTES_LIMIT
    }
}

/// [`TopkLoss`] on device 0 for every method (the sorting networks, NeuralSort, SoftSort), forward
/// and backward in one pass over the batch (validity check, preselection, network sweep or
/// relaxed rows, mixture, reverse pass, scatter). Rows without a preselection run one per
/// thread. With one (m), a warp reads each row coalesced and selects its m classes; then, up to
/// [`FUSED_WARP_MAX_BATCH`] rows, lane 0 of that warp finishes the row in the same kernel with
/// its scratch in shared memory, and beyond, a second kernel finishes the rows one per thread. NeuralSort's
/// deviations `c_i = Σ_l |s_i − s_l|` are summed over all pairs in order (the core: in eight
/// interleaved partial sums up to n′ = 256, by a sort beyond), so results differ from the
/// core's by rounding only.
pub struct CudaTopkLoss {
    loss: TopkLoss,
    stream: Arc<CudaStream>,
    kernels: [CudaFunction; 2],
    warp_kernels: [CudaFunction; 2],
    sweep_kernels: [CudaFunction; 2],
    select_kernels: [CudaFunction; 2],
    comparators: CudaSlice<i32>,
    layer_starts: CudaSlice<i32>,
    rank_weights: CudaSlice<f64>,
    arguments: KernelArguments,
    row_kernel: RowKernel,
    work: Mutex<(Scratch, Status)>,
}

impl CudaTopkLoss {
    /// Builds the network, compiles the kernels for the device (once per process) and uploads
    /// the network. [`Error::NoCudaDevice`] without a driver or a device (checked before any
    /// other driver call).
    pub fn new(config: TopkLossConfig) -> Result<Self, Error> {
        let loss = TopkLoss::new(config)?;
        let (stream, kernels) = load_kernels("topk_loss")?;
        let (_, warp_kernels) = load_kernels("topk_loss_warp")?;
        let (_, sweep_kernels) = load_kernels("topk_loss_warp_sweep")?;
        let (_, select_kernels) = load_kernels("topk_select_warp")?;
        let arguments = KernelArguments::new(&loss);
        let comparators = stream.clone_htod(&arguments.comparators)?;
        let layer_starts = stream.clone_htod(&arguments.layer_starts)?;
        let rank_weights = stream.clone_htod(&arguments.rank_weights)?;
        let status = Status::new(&stream)?;
        Ok(CudaTopkLoss {
            loss,
            stream,
            kernels,
            warp_kernels,
            sweep_kernels,
            select_kernels,
            comparators,
            layer_starts,
            rank_weights,
            arguments,
            row_kernel: RowKernel::Automatic,
            work: Mutex::new((Scratch::default(), status)),
        })
    }

    /// Runs every batch through the kernels `row_kernel` names (tests and benchmarks of each
    /// path; the default `Automatic` picks by the batch).
    #[doc(hidden)]
    pub fn with_row_kernel(mut self, row_kernel: RowKernel) -> Self {
        self.row_kernel = row_kernel;
        self
    }

    /// The kernels a batch of `batch` rows of `real_bytes`-byte reals runs through.
    fn resolve_row_kernel(&self, batch: usize, real_bytes: usize) -> RowKernel {
        let arguments = &self.arguments;
        if arguments.preselect == 0 {
            return RowKernel::ThreadPerRow;
        }
        let fused_fits = arguments.uses_warp_kernel(real_bytes);
        match self.row_kernel {
            RowKernel::Automatic if fused_fits && batch <= FUSED_WARP_MAX_BATCH => {
                RowKernel::FusedWarp
            }
            RowKernel::Automatic => RowKernel::SelectThenThread,
            RowKernel::FusedWarp | RowKernel::WarpSweep if !fused_fits => RowKernel::ThreadPerRow,
            chosen => chosen,
        }
    }

    /// The validated configuration.
    pub fn config(&self) -> &TopkLossConfig {
        self.loss.config()
    }

    /// The stream the kernels run on (device 0's default stream); buffers for
    /// [`CudaTopkLoss::forward_backward_device`] are best allocated on it.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// On device buffers: `logits` holds `labels.len()` rows of `classes` values (row-major),
    /// `losses` receives each row's loss, `gradient` (shaped as the logits) receives
    /// ∂(mean loss)/∂logits. Waits for the kernel (it reads back the 8-byte validity report),
    /// so that a label out of range or a non-finite logit is the core's error for the first
    /// such row, never NaN.
    pub fn forward_backward_device<F: GpuFloat>(
        &self,
        logits: &CudaSlice<F>,
        labels: &CudaSlice<u32>,
        losses: &mut CudaSlice<F>,
        gradient: Option<&mut CudaSlice<F>>,
    ) -> Result<(), Error> {
        let config = self.loss.config();
        let classes = config.classes();
        check_batch(
            classes,
            logits.len(),
            labels.len(),
            losses.len(),
            gradient.as_ref().map(|g| g.len()),
        )?;
        let batch = labels.len();
        let arguments = &self.arguments;
        let mut work = self.work.lock().unwrap_or_else(|p| p.into_inner());
        let (scratch, status) = &mut *work;
        status.reset(&self.stream)?;
        let scale = 1.0 / batch as f64;
        let (batch_i, classes_i) = (batch as i32, classes as i32);
        let with_gradient = i32::from(gradient.is_some());
        // Without a gradient the kernel never touches this pointer; any live buffer will do.
        let mut no_gradient = None;
        let gradient = match gradient {
            Some(gradient) => gradient,
            None => no_gradient.insert(self.stream.alloc_zeros::<F>(1)?),
        };
        let real_bytes = std::mem::size_of::<F>();
        let row_kernel = self.resolve_row_kernel(batch, real_bytes);
        let (reals, indices) = scratch.reserve::<F>(
            &self.stream,
            batch * arguments.reals_per_row(),
            batch * arguments.indices_per_row(),
        )?;
        let mut preselect = arguments.preselect;
        if row_kernel == RowKernel::SelectThenThread {
            let mut launch = self
                .stream
                .launch_builder(kernel_for::<F>(&self.select_kernels));
            launch
                .arg(logits)
                .arg(labels)
                .arg(&batch_i)
                .arg(&classes_i)
                .arg(&arguments.n)
                .arg(&mut *gradient)
                .arg(&with_gradient)
                .arg(&mut *indices)
                .arg(status.flags());
            // SAFETY: the arguments match `topk_select_warp_*` in kernels/topk_loss.cu; the
            // index scratch holds `batch` times `indices_per_row` ≥ n entries.
            unsafe { launch.launch(warp_launch_config(batch, 0)) }?;
            preselect = PRESELECT_DONE;
        }
        // The warp kernels take the same arguments (and ignore the scratch); each of their
        // blocks gets the shared memory its warps use (`warp_bytes`, the kernel's own formula).
        let (kernels, shape) = match row_kernel {
            RowKernel::FusedWarp | RowKernel::WarpSweep => {
                let shape = warp_launch_config(batch, arguments.warp_bytes(real_bytes));
                let kernels = if row_kernel == RowKernel::WarpSweep {
                    &self.sweep_kernels
                } else {
                    &self.warp_kernels
                };
                (kernels, shape)
            }
            _ => (&self.kernels, launch_config(batch)),
        };
        let mut launch = self.stream.launch_builder(kernel_for::<F>(kernels));
        launch
            .arg(logits)
            .arg(labels)
            .arg(&batch_i)
            .arg(&classes_i)
            .arg(&arguments.n)
            .arg(&self.comparators)
            .arg(&arguments.count)
            .arg(&self.layer_starts)
            .arg(&arguments.layers)
            .arg(&arguments.k)
            .arg(&self.rank_weights)
            .arg(&arguments.p_first)
            .arg(&arguments.rest_weight)
            .arg(&arguments.mode)
            .arg(&preselect)
            .arg(&arguments.family)
            .arg(&arguments.relaxation)
            .arg(&arguments.beta)
            .arg(&arguments.lambda)
            .arg(&scale)
            .arg(losses)
            .arg(gradient)
            .arg(&with_gradient)
            .arg(reals)
            .arg(indices)
            .arg(status.flags());
        // SAFETY: the arguments match `TOPK_LOSS_PARAMETERS` in kernels/topk_loss.cu (the
        // signature of all three kernels) in order and type; every buffer has the size the kernel
        // indexes (checked above: `batch` rows of `classes` logits, one loss per row, the
        // gradient shaped as the logits; scratch of `batch` times the per-row sizes of
        // `KernelArguments`).
        unsafe { launch.launch(shape) }?;
        status.check(&self.stream, logits, labels, classes)
    }

    /// As [`TopkLoss::forward_backward`] on host slices: copies in, runs the kernel, copies
    /// out; returns the mean loss.
    pub fn forward_backward<F: GpuFloat>(
        &self,
        logits: &[F],
        labels: &[usize],
        gradient: Option<&mut [F]>,
    ) -> Result<F, Error> {
        let classes = self.loss.config().classes();
        check_batch(classes, logits.len(), labels.len(), labels.len(), None)?;
        on_host(
            &self.stream,
            logits,
            labels,
            gradient,
            |logits, labels, losses, gradient| {
                self.forward_backward_device(logits, labels, losses, gradient)
            },
        )
    }
}

/// Plain softmax cross-entropy on device 0 (the baseline), one thread per row:
/// `loss_b = log Σ_j exp z_bj − z_b,y_b`, gradient `(softmax(z_b) − e_y_b) / B`.
pub struct CudaSoftmaxCrossEntropy {
    stream: Arc<CudaStream>,
    kernels: [CudaFunction; 2],
    status: Mutex<Status>,
}

impl CudaSoftmaxCrossEntropy {
    /// Compiles the kernels for the device (once per process). [`Error::NoCudaDevice`] without
    /// a driver or a device.
    pub fn new() -> Result<Self, Error> {
        let (stream, kernels) = load_kernels("softmax_cross_entropy")?;
        let status = Status::new(&stream)?;
        Ok(CudaSoftmaxCrossEntropy {
            stream,
            kernels,
            status: Mutex::new(status),
        })
    }

    /// The stream the kernels run on.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// On device buffers, `classes` logits per row; as [`CudaTopkLoss::forward_backward_device`].
    pub fn forward_backward_device<F: GpuFloat>(
        &self,
        classes: usize,
        logits: &CudaSlice<F>,
        labels: &CudaSlice<u32>,
        losses: &mut CudaSlice<F>,
        gradient: Option<&mut CudaSlice<F>>,
    ) -> Result<(), Error> {
        if classes == 0 {
            return Err(difftopk_core::Error::TooFewClasses { classes }.into());
        }
        check_batch(
            classes,
            logits.len(),
            labels.len(),
            losses.len(),
            gradient.as_ref().map(|g| g.len()),
        )?;
        let batch = labels.len();
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        status.reset(&self.stream)?;
        let with_gradient = i32::from(gradient.is_some());
        let mut no_gradient = None;
        let gradient = match gradient {
            Some(gradient) => gradient,
            None => no_gradient.insert(self.stream.alloc_zeros::<F>(1)?),
        };
        let (batch_i, classes_i, scale) = (batch as i32, classes as i32, 1.0 / batch as f64);
        let mut launch = self.stream.launch_builder(kernel_for::<F>(&self.kernels));
        launch
            .arg(logits)
            .arg(labels)
            .arg(&batch_i)
            .arg(&classes_i)
            .arg(&scale)
            .arg(losses)
            .arg(gradient)
            .arg(&with_gradient)
            .arg(status.flags());
        // SAFETY: the arguments match `softmax_cross_entropy_*` in kernels/topk_loss.cu; sizes
        // checked above.
        unsafe { launch.launch(warp_launch_config(batch, 0)) }?;
        status.check(&self.stream, logits, labels, classes)
    }

    /// On host slices (`labels.len()` rows of `classes` logits); returns the mean loss.
    pub fn forward_backward<F: GpuFloat>(
        &self,
        classes: usize,
        logits: &[F],
        labels: &[usize],
        gradient: Option<&mut [F]>,
    ) -> Result<F, Error> {
        check_batch(classes, logits.len(), labels.len(), labels.len(), None)?;
        on_host(
            &self.stream,
            logits,
            labels,
            gradient,
            |logits, labels, losses, gradient| {
                self.forward_backward_device(classes, logits, labels, losses, gradient)
            },
        )
    }
}
