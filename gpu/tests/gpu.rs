//! Without a GPU (CI): every `.cu` source compiles with NVRTC (when the library is installed;
//! `DIFFTOPK_REQUIRE_NVRTC=1` makes its absence a failure), and the GPU paths return clear errors.
//! With a GPU: the fused kernel against the core on random batches, every network method,
//! relaxation and top-1 mode, with and without m, f32 and f64.

use difftopk_core::{Method, Relaxation, Top1Mode, TopkLoss, TopkLossConfig};
use difftopk_gpu::{cuda_device_available, kernels, CudaTopkLoss, Error};

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

#[test]
fn without_a_device_the_error_is_clear_and_with_one_results_match_the_core() {
    let plain = config(
        Method::SplitterSelection,
        Relaxation::Logistic,
        Top1Mode::Softmax,
        20,
        None,
    );
    if !cuda_device_available() {
        assert!(matches!(CudaTopkLoss::new(plain), Err(Error::NoCudaDevice)));
        println!("skipped: no CUDA device");
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
    for method in [
        Method::OddEven,
        Method::Bitonic,
        Method::BitonicAnySize,
        Method::SplitterSelection,
    ] {
        for relaxation in relaxations {
            for mode in [
                Top1Mode::Softmax,
                Top1Mode::SoftmaxCrossEntropy,
                Top1Mode::Sort,
            ] {
                for (classes, m) in [(20, None), (100, Some(16))] {
                    let config = config(method, relaxation, mode, classes, m);
                    let cpu = TopkLoss::new(config).unwrap();
                    let gpu = CudaTopkLoss::new(config).unwrap();
                    let batch = 37;
                    let logits: Vec<f64> = (0..batch * classes).map(|_| next()).collect();
                    let labels: Vec<usize> = (0..batch).map(|b| (b * 7) % classes).collect();
                    let mut expected = vec![0.0; logits.len()];
                    let value = cpu
                        .forward_backward(&logits, &labels, Some(&mut expected))
                        .unwrap();
                    let mut actual = vec![0.0; logits.len()];
                    let gpu_value = gpu
                        .forward_backward(&logits, &labels, Some(&mut actual))
                        .unwrap();
                    let scale = expected.iter().fold(1e-300f64, |m, g| m.max(g.abs()));
                    let worst = actual
                        .iter()
                        .zip(&expected)
                        .fold(0.0f64, |m, (a, e)| m.max((a - e).abs()))
                        / scale;
                    assert!(
                        (gpu_value - value).abs() <= 1e-12 * value.abs().max(1.0),
                        "{method:?} {relaxation:?} {mode:?}: loss"
                    );
                    assert!(
                        worst <= 1e-12,
                        "{method:?} {relaxation:?} {mode:?}: gradient {worst:e}"
                    );
                    let logits32: Vec<f32> = logits.iter().map(|&v| v as f32).collect();
                    let mut expected32 = vec![0f32; logits.len()];
                    let value32 = cpu
                        .forward_backward(&logits32, &labels, Some(&mut expected32))
                        .unwrap();
                    let mut actual32 = vec![0f32; logits.len()];
                    let gpu_value32 = gpu
                        .forward_backward(&logits32, &labels, Some(&mut actual32))
                        .unwrap();
                    assert!((gpu_value32 - value32).abs() <= 1e-5 * value32.abs().max(1.0));
                    let scale32 = expected32.iter().fold(1e-30f32, |m, g| m.max(g.abs()));
                    let worst32 = actual32
                        .iter()
                        .zip(&expected32)
                        .fold(0f32, |m, (a, e)| m.max((a - e).abs()))
                        / scale32;
                    assert!(
                        worst32 <= 1e-5,
                        "{method:?} {relaxation:?} {mode:?}: f32 gradient {worst32:e}"
                    );
                }
            }
        }
    }
}

#[test]
fn neuralsort_and_softsort_are_reported_unsupported() {
    let config = TopkLossConfig::new(Method::NeuralSort, 10, &[0.5, 0.5]).unwrap();
    assert!(matches!(
        CudaTopkLoss::new(config),
        Err(Error::Unsupported(_))
    ));
}
