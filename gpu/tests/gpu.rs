//! Without a GPU (CI): every `.cu` source compiles with NVRTC (when the library is installed;
//! `DIFFTOPK_REQUIRE_NVRTC=1` makes its absence a failure), and the GPU paths return clear errors.
//! With a GPU: the fused kernels against the core on random batches, every method (networks,
//! NeuralSort, SoftSort), relaxation and top-1 mode, with and without m (each of the four kernel
//! paths), f32 and f64; f32 is measured against the f64 truth (see `f32_bound`).

use difftopk_core::{Method, Relaxation, Top1Mode, TopkLoss, TopkLossConfig};
use difftopk_gpu::{
    cuda_device_available, kernels, CudaSoftmaxCrossEntropy, CudaTopkLoss, Error, RowKernel,
};

/// Whether the device tests can run: `false` (and a `skipped` line) without a device, unless
/// `DIFFTOPK_REQUIRE_CUDA` is set (the device check sets it), which makes that a failure.
fn device_present() -> bool {
    if cuda_device_available() {
        return true;
    }
    assert!(
        std::env::var_os("DIFFTOPK_REQUIRE_CUDA").is_none(),
        "DIFFTOPK_REQUIRE_CUDA is set but no CUDA device is available"
    );
    println!("skipped: no CUDA device");
    false
}

#[test]
fn every_kernel_compiles_with_nvrtc() {
    if !kernels::nvrtc_available() {
        assert!(
            std::env::var_os("DIFFTOPK_REQUIRE_NVRTC").is_none(),
            "DIFFTOPK_REQUIRE_NVRTC is set but libnvrtc cannot be loaded (LD_LIBRARY_PATH?)"
        );
        println!("skipped: no NVRTC library");
        return;
    }
    for (name, source) in kernels::SOURCES {
        for arch in ["compute_75", "compute_90"] {
            match kernels::compile(name, source, Some(arch)) {
                Ok(_) => println!("{name} compiles for {arch}"),
                Err(error) => panic!("{error}"),
            }
        }
    }
}

#[test]
fn a_broken_kernel_is_reported_not_panicked() {
    if !kernels::nvrtc_available() {
        println!("skipped: no NVRTC library");
        return;
    }
    let error = kernels::compile(
        "broken.cu",
        "extern \"C\" __global__ void k() { undefined(); }",
        None,
    )
    .unwrap_err();
    assert!(matches!(error, Error::Compile { .. }), "{error}");
}

fn config(
    method: Method,
    relaxation: Relaxation,
    mode: Top1Mode,
    classes: usize,
    m: Option<usize>,
) -> TopkLossConfig {
    TopkLossConfig::new(method, classes, &[0.5, 0.0, 0.25, 0.0, 0.25])
        .unwrap()
        .with_relaxation(relaxation)
        .unwrap()
        .with_preselection(m)
        .unwrap()
        .with_top1_mode(mode)
}

/// Every method, relaxation and top-1 mode, without m (one thread per row) and with m = 16 (each
/// of the four kernel paths), f64 and f32, against the core. All cases run; the failures are
/// listed together at the end.
#[test]
fn without_a_device_the_error_is_clear_and_with_one_results_match_the_core() {
    let plain = config(
        Method::SplitterSelection,
        Relaxation::Logistic,
        Top1Mode::Softmax,
        20,
        None,
    );
    if !device_present() {
        assert!(matches!(CudaTopkLoss::new(plain), Err(Error::NoCudaDevice)));
        return;
    }
    let relaxations = [
        Relaxation::Logistic,
        Relaxation::LogisticPhi { lambda: 0.5 },
        Relaxation::LogisticPhi { lambda: 0.3 },
        Relaxation::Gaussian,
        Relaxation::Reciprocal,
        Relaxation::Cauchy,
        Relaxation::Optimal,
    ];
    let mut state = 12345u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 11) as f64 / (1u64 << 53) as f64) * 6.0 - 3.0
    };
    let mut failures = Vec::new();
    let mut compared = 0usize;
    let (mut identical, mut pairs) = (0usize, 0usize);
    let mut worst = [(0.0f64, String::new()), (0.0f64, String::new())]; // f32, f64
    for method in Method::ALL {
        // NeuralSort and SoftSort have no relaxed comparator: one pass suffices.
        let relaxations = if method.is_network() {
            &relaxations[..]
        } else {
            &relaxations[..1]
        };
        for &relaxation in relaxations {
            for mode in [
                Top1Mode::Softmax,
                Top1Mode::SoftmaxCrossEntropy,
                Top1Mode::Sort,
            ] {
                for (classes, m) in [(20, None), (100, Some(16))] {
                    let config = config(method, relaxation, mode, classes, m);
                    let cpu = TopkLoss::new(config).unwrap();
                    let batch = 37;
                    let logits: Vec<f64> = (0..batch * classes).map(|_| next()).collect();
                    let labels: Vec<usize> = (0..batch).map(|b| (b * 7) % classes).collect();
                    let logits32: Vec<f32> = logits.iter().map(|&v| v as f32).collect();
                    let mut expected = vec![0.0; logits.len()];
                    let value = cpu
                        .forward_backward(&logits, &labels, Some(&mut expected))
                        .unwrap();
                    let mut expected32 = vec![0f32; logits.len()];
                    let value32 = cpu
                        .forward_backward(&logits32, &labels, Some(&mut expected32))
                        .unwrap();
                    // What f32 can deliver on these rows: the core's own f32 error against the f64
                    // truth (internal rounding), or the f64 gradient's change when the logits are
                    // rounded to f32 (the rows' conditioning), whichever is larger.
                    let (truth_loss, truth) = f64_truth(&cpu, &logits32, &labels);
                    let sensitivity = error_against(&expected, &truth);
                    let cpu_error32 = error_against(&expected32, &truth);
                    let f32_reference = cpu_error32.max(sensitivity);
                    let loss_reference = (value32 as f64 - truth_loss)
                        .abs()
                        .max((value - truth_loss).abs());
                    let kernels: &[RowKernel] = if m.is_some() {
                        &[
                            RowKernel::FusedWarp,
                            RowKernel::SelectThenThread,
                            RowKernel::ThreadPerRow,
                            RowKernel::WarpSweep,
                        ]
                    } else {
                        &[RowKernel::Automatic]
                    };
                    let mut first32: Option<Vec<f32>> = None;
                    for &kernel in kernels {
                        let name = format!("{method:?} {relaxation:?} {mode:?} m={m:?} {kernel:?}");
                        let gpu = CudaTopkLoss::new(config).unwrap().with_row_kernel(kernel);
                        // f64: the core's f64 gradient, to 1e-12 of its scale, or where the rows
                        // are ill-conditioned to `f64_bound` (what f32 delivers on the rows,
                        // scaled to f64's precision).
                        let mut actual = vec![0.0; logits.len()];
                        let gpu_value = gpu
                            .forward_backward(&logits, &labels, Some(&mut actual))
                            .unwrap();
                        let error = error_against(&actual, &expected);
                        if (gpu_value - value).abs() > 1e-12 * value.abs().max(1.0) {
                            failures.push(format!("{name}: f64 loss {gpu_value} vs {value}"));
                        }
                        if error > f64_bound(f32_reference) {
                            failures.push(format!(
                                "{name}: f64 gradient {error:e} (bound {:e})",
                                f64_bound(f32_reference)
                            ));
                        }
                        let conditioning = f32_reference * F32_TO_F64;
                        if error > 1e-14 && error / conditioning.max(1e-300) > worst[1].0 {
                            worst[1] = (error / conditioning, name.clone());
                        }
                        // f32: against the f64 truth, next to the core's own f32 error.
                        let mut actual32 = vec![0f32; logits.len()];
                        let gpu_value32 = gpu
                            .forward_backward(&logits32, &labels, Some(&mut actual32))
                            .unwrap();
                        let loss_bound =
                            (8.0 * loss_reference).max(1e-5 * truth_loss.abs().max(1.0));
                        if (gpu_value32 as f64 - truth_loss).abs() > loss_bound {
                            failures.push(format!(
                                "{name}: f32 loss {gpu_value32} (the core's {value32}, the f64 \
                                 truth {truth_loss})"
                            ));
                        }
                        let gpu_error32 = error_against(&actual32, &truth);
                        if gpu_error32 > f32_bound(f32_reference) {
                            failures.push(format!(
                                "{name}: f32 gradient error {gpu_error32:e} (the core's in f32: \
                                 {cpu_error32:e}; rounding the logits to f32: {sensitivity:e})"
                            ));
                        }
                        if gpu_error32 > 1e-6 && gpu_error32 / f32_reference.max(1e-7) > worst[0].0
                        {
                            worst[0] = (gpu_error32 / f32_reference.max(1e-7), name.clone());
                        }
                        compared += 1;
                        match &first32 {
                            Some(first) => {
                                pairs += 1;
                                identical += usize::from(*first == actual32);
                            }
                            None => first32 = Some(actual32),
                        }
                    }
                }
            }
        }
    }
    println!(
        "{compared} batches compared; with m the four kernel paths agreed bit for bit (f32) on \
         {identical} of {pairs} pairs"
    );
    println!(
        "largest ratio of the GPU's f32 error to what f32 delivers on the rows (the core's f32 \
         error or the rounding of the logits): {:.2} ({})",
        worst[0].0, worst[0].1
    );
    println!(
        "largest ratio of the GPU's f64 difference to that f32 figure × 2^-29: {:.2} ({})",
        worst[1].0, worst[1].1
    );
    assert!(compared > 0);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// f32's unit roundoff over f64's: an f32 error times this is what the same conditioning gives
/// in f64.
const F32_TO_F64: f64 = 1.0 / (1u64 << 29) as f64;

/// How far the GPU's f64 gradient may be from the core's: 1e-12 of the gradient's scale, or,
/// where the rows are ill-conditioned (the clamp at 1e-7, cancellation), 64 times the core's own
/// f32 error scaled to f64's precision (`F32_TO_F64`). Different but equally accurate libm
/// implementations (CUDA's `erf` and `exp` are within 2 ulp, the CPU's within 1) differ by that
/// much; measured on an H100: Gaussian, Sort, odd-even, 2.1e-12. The test prints the largest
/// ratio it saw.
fn f64_bound(cpu_error32: f64) -> f64 {
    (64.0 * cpu_error32 * F32_TO_F64).max(1e-12)
}

/// The core's f64 loss and gradient at the f32 logits: the truth both f32 results are measured
/// against.
fn f64_truth(loss: &TopkLoss, logits32: &[f32], labels: &[usize]) -> (f64, Vec<f64>) {
    let logits: Vec<f64> = logits32.iter().map(|&v| v as f64).collect();
    let mut truth = vec![0.0; logits.len()];
    let value = loss
        .forward_backward(&logits, labels, Some(&mut truth))
        .unwrap();
    (value, truth)
}

/// The largest distance of `values` (f32 or f64) to `truth`, over the truth's largest magnitude.
fn error_against<V: Copy + Into<f64>>(values: &[V], truth: &[f64]) -> f64 {
    let scale = truth.iter().fold(1e-300f64, |m, g| m.max(g.abs()));
    values
        .iter()
        .zip(truth)
        .fold(0.0f64, |m, (&a, e)| m.max((a.into() - e).abs()))
        / scale
}

/// How far the GPU's f32 gradient may be from the truth: 1e-5 of its scale, or 8 times what f32
/// delivers on the rows (`reference`: the core's own f32 error, or the f64 gradient's change
/// when the logits are rounded to f32) where that is larger. Comparing the two f32 results with
/// each other at 1e-5 is not meaningful: where the clamp's 1e-7 or a cancellation makes a row
/// ill-conditioned, the core's f32 gradient is itself up to 7e-2 from the truth (Gaussian,
/// n = 100, m = 16), and CUDA's expf/logf/erff/powf (up to 2 ulp against the CPU libm's 1) round
/// differently. On an H100 the largest ratio was 6.46 (odd-even, logistic_phi λ = 0.3, `smce`,
/// without m); bitonic for any n with `sort` erred by 1.15e-4 where the core's f32 erred by
/// 3.1e-6 but rounding the logits to f32 alone moves the gradient by 3.07e-5. The f32 losses of
/// the Gaussian rows with m = 16 were 2.6 to 2.9 times as far from the truth as the core's
/// (6.0085 and 6.0061 against 6.0047). The test prints the largest ratio it sees.
fn f32_bound(cpu_error: f64) -> f64 {
    (8.0 * cpu_error).max(1e-5)
}

/// Without a device: a clear error. With one: the device-buffer API agrees with the host API,
/// scratch is reused across batch sizes (large, small, large), and bad input gives the core's
/// error for the first bad row.
#[test]
fn device_buffers_scratch_reuse_and_bad_input() {
    let config = config(
        Method::SplitterSelection,
        Relaxation::LogisticPhi { lambda: 0.5 },
        Top1Mode::Softmax,
        100,
        Some(16),
    );
    if !device_present() {
        assert!(matches!(
            CudaTopkLoss::new(config),
            Err(Error::NoCudaDevice)
        ));
        assert!(matches!(
            CudaSoftmaxCrossEntropy::new(),
            Err(Error::NoCudaDevice)
        ));
        return;
    }
    let classes = 100;
    let cpu = TopkLoss::new(config).unwrap();
    // The default path (fused, one warp per row, at these batch sizes) and the selection kernel
    // followed by one thread per row (larger batches), whose scratch is interleaved by batch.
    for kernel in [RowKernel::Automatic, RowKernel::SelectThenThread] {
        let gpu = CudaTopkLoss::new(config).unwrap().with_row_kernel(kernel);
        let stream = gpu.stream().clone();
        for batch in [300usize, 5, 300, 1] {
            let logits: Vec<f32> = (0..batch * classes)
                .map(|i| ((i * 7919) % 1013) as f32 * 0.01 - 5.0)
                .collect();
            let labels: Vec<usize> = (0..batch).map(|b| (b * 13) % classes).collect();
            let mut expected = vec![0f32; logits.len()];
            let value = cpu
                .forward_backward(&logits, &labels, Some(&mut expected))
                .unwrap();
            let logits_device = stream.clone_htod(&logits).unwrap();
            let labels32: Vec<u32> = labels.iter().map(|&l| l as u32).collect();
            let labels_device = stream.clone_htod(&labels32).unwrap();
            let mut losses = stream.alloc_zeros::<f32>(batch).unwrap();
            let mut gradient = stream.alloc_zeros::<f32>(logits.len()).unwrap();
            gpu.forward_backward_device(
                &logits_device,
                &labels_device,
                &mut losses,
                Some(&mut gradient),
            )
            .unwrap();
            let row_losses = stream.clone_dtoh(&losses).unwrap();
            let mean = row_losses.iter().sum::<f32>() / batch as f32;
            assert!(
                (mean - value).abs() <= 1e-5 * value.abs().max(1.0),
                "{kernel:?} batch {batch}"
            );
            let actual = stream.clone_dtoh(&gradient).unwrap();
            let (_, truth) = f64_truth(&cpu, &logits, &labels);
            let (gpu_error, cpu_error) = (
                error_against(&actual, &truth),
                error_against(&expected, &truth),
            );
            assert!(
                gpu_error <= f32_bound(cpu_error),
                "{kernel:?} batch {batch}: f32 gradient error {gpu_error:e} (the core's in f32: \
             {cpu_error:e})"
            );
        }
        // Bad input: the same error as the CPU, for the first bad row.
        let mut logits = vec![0.5f32; 4 * classes];
        logits[2 * classes + 17] = f32::NAN;
        logits[3 * classes + 1] = f32::INFINITY;
        let labels = [1usize, 2, 3, 4];
        let cpu_error = cpu.forward_backward(&logits, &labels, None).unwrap_err();
        match gpu.forward_backward(&logits, &labels, None) {
            Err(Error::Core(error)) => assert_eq!(error, cpu_error),
            other => panic!("expected {cpu_error:?}, got {other:?}"),
        }
        let bad_labels = [1usize, 2, 300, 4];
        let cpu_error = cpu
            .forward_backward(&logits, &bad_labels, None)
            .unwrap_err();
        match gpu.forward_backward(&logits, &bad_labels, None) {
            Err(Error::Core(error)) => assert_eq!(error, cpu_error),
            other => panic!("expected {cpu_error:?}, got {other:?}"),
        }
    }
    // Plain cross-entropy against the core's.
    let ce = CudaSoftmaxCrossEntropy::new().unwrap();
    let batch = 64;
    let logits: Vec<f64> = (0..batch * classes)
        .map(|i| ((i * 31) % 97) as f64 * 0.05 - 2.0)
        .collect();
    let labels: Vec<usize> = (0..batch).map(|b| (b * 5) % classes).collect();
    let mut expected = vec![0.0; logits.len()];
    let value =
        difftopk_core::softmax_cross_entropy(&logits, &labels, classes, Some(&mut expected))
            .unwrap();
    let mut actual = vec![0.0; logits.len()];
    let gpu_value = ce
        .forward_backward(classes, &logits, &labels, Some(&mut actual))
        .unwrap();
    assert!((gpu_value - value).abs() <= 1e-12 * value.abs().max(1.0));
    for (a, e) in actual.iter().zip(&expected) {
        assert!((a - e).abs() <= 1e-12, "{a} vs {e}");
    }
}

/// The relaxed top-k matrix operator: without a device a clear error; with one, P_topk and its
/// VJP against the core's operator.
#[test]
fn relaxed_topk_operator_matches_the_core() {
    use difftopk_core::operators::{relaxed_topk, relaxed_topk_backward, relaxed_topk_scratch_len};
    use difftopk_core::SortingNetwork;
    use difftopk_gpu::CudaRelaxedTopk;
    let (n, k, beta) = (24usize, 5usize, 1.5);
    let network = SortingNetwork::splitter_selection(n, k).unwrap();
    let relaxation = Relaxation::LogisticPhi { lambda: 0.5 };
    if !device_present() {
        assert!(matches!(
            CudaRelaxedTopk::new(&network, relaxation, beta, k),
            Err(Error::NoCudaDevice)
        ));
        return;
    }
    let operator = CudaRelaxedTopk::new(&network, relaxation, beta, k).unwrap();
    let batch = 33;
    let x: Vec<f64> = (0..batch * n)
        .map(|i| ((i * 7919) % 211) as f64 * 0.03 - 3.0)
        .collect();
    let adjoint: Vec<f64> = (0..batch * n * k)
        .map(|i| ((i * 31) % 17) as f64 * 0.1 - 0.8)
        .collect();
    let mut p_topk = vec![0.0; batch * n * k];
    operator.forward(&x, &mut p_topk).unwrap();
    let mut grad_x = vec![0.0; batch * n];
    operator.backward(&x, &adjoint, &mut grad_x).unwrap();
    let mut scratch = vec![0.0; relaxed_topk_scratch_len(&network.as_ref(), k)];
    for row in 0..batch {
        let x_row = &x[row * n..(row + 1) * n];
        let mut expected = vec![0.0; n * k];
        relaxed_topk(
            &network.as_ref(),
            relaxation,
            beta,
            k,
            x_row,
            &mut expected,
            &mut scratch,
        )
        .unwrap();
        for (a, e) in p_topk[row * n * k..(row + 1) * n * k].iter().zip(&expected) {
            assert!((a - e).abs() <= 1e-12, "P_topk row {row}: {a} vs {e}");
        }
        let mut expected_g = vec![0.0; n];
        relaxed_topk_backward(
            &network.as_ref(),
            relaxation,
            beta,
            k,
            x_row,
            &adjoint[row * n * k..(row + 1) * n * k],
            &mut expected_g,
            &mut scratch,
        )
        .unwrap();
        let scale = expected_g.iter().fold(1e-300f64, |m, g| m.max(g.abs()));
        for (a, e) in grad_x[row * n..(row + 1) * n].iter().zip(&expected_g) {
            assert!((a - e).abs() <= 1e-12 * scale, "∂x row {row}: {a} vs {e}");
        }
    }
    let mut bad = x.clone();
    bad[5 * n + 2] = f64::INFINITY;
    match operator.forward(&bad, &mut p_topk) {
        Err(Error::Core(difftopk_core::Error::NonFiniteInput { row, column })) => {
            assert_eq!((row, column), (5, 2));
        }
        other => panic!("expected NonFiniteInput, got {other:?}"),
    }
}
