//! Times the fused loss kernel on device 0 and prints one JSON line per configuration, with,
//! measured in the same process on the same buffers: with m, each kernel path alone
//! (`fused_warp_us`, `select_then_thread_us`, `thread_per_row_us`, `warp_sweep_us`; `median_us`
//! is the default choice), plain softmax cross-entropy on the device, and a device-to-device copy of the logits (reading and writing as many bytes as the loss's
//! unavoidable traffic: logits in, gradient out), the memory-bandwidth floor.
//!
//! `cargo run --release -p difftopk-gpu --example bench_gpu -- INPUT_DIR [REPS]`
//!
//! It writes the inputs it timed to `INPUT_DIR/logits_n{n}.npy` (float32, 65536 × n) and
//! `INPUT_DIR/labels_n{n}.npy` (int64), so that `gpu/bench/reference_gpu.py` times the PyTorch
//! reference on the very same values (a batch of B rows is the first B rows).
//! Float32, P_K = [.5,0,0,0,.5], logistic_phi λ = .5, β = 1, `sm`. Every call waits for the
//! kernel (the device-buffer API reads back its 8-byte validity report), as the reference's
//! timing does with `torch.cuda.synchronize()`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use cudarc::driver::CudaStream;

use difftopk_core::{Method, Relaxation, Top1Mode, TopkLossConfig};
use difftopk_gpu::{
    cuda_device_available, CudaSoftmaxCrossEntropy, CudaTopkLoss, KernelArguments, RowKernel,
};

const BATCHES: [usize; 3] = [128, 4096, 65536];
/// Configurations whose kernel scratch would exceed this are reported as skipped.
const SCRATCH_LIMIT_BYTES: usize = 16 << 30;

fn logits(count: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..count)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // approximately normal with standard deviation 2: a sum of 4 uniforms
            let mut s = 0.0f32;
            for shift in [0, 16, 32, 48] {
                s += ((state >> shift) & 0xFFFF) as f32 / 65535.0;
            }
            (s - 2.0) * 2.0 * 1.732
        })
        .collect()
}

fn median_us(reps: usize, mut run: impl FnMut()) -> f64 {
    for _ in 0..3 {
        run(); // warm-up: compilation, scratch allocation, caches
    }
    let mut samples: Vec<f64> = (0..reps)
        .map(|_| {
            let start = Instant::now();
            run();
            start.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[samples.len() / 2]
}

/// Times the loss, our cross-entropy and a device copy on the first `batch` rows; the JSON
/// fields of the result line.
#[allow(clippy::too_many_arguments)]
fn measure(
    loss: &CudaTopkLoss,
    variants: &[(&str, CudaTopkLoss)],
    cross_entropy: &CudaSoftmaxCrossEntropy,
    stream: &Arc<CudaStream>,
    values: &[f32],
    labels: &[usize],
    n: usize,
    batch: usize,
    reps: usize,
) -> Result<String, difftopk_gpu::Error> {
    let logits_device = stream.clone_htod(&values[..batch * n])?;
    let labels32: Vec<u32> = labels[..batch].iter().map(|&l| l as u32).collect();
    let labels_device = stream.clone_htod(&labels32)?;
    let mut losses = stream.alloc_zeros::<f32>(batch)?;
    let mut gradient = stream.alloc_zeros::<f32>(batch * n)?;
    let mut failure = None;
    let loss_us = median_us(reps, || {
        if let Err(error) = loss.forward_backward_device(
            &logits_device,
            &labels_device,
            &mut losses,
            Some(&mut gradient),
        ) {
            failure.get_or_insert(error);
        }
    });
    let mut variant_fields = String::new();
    for (name, variant) in variants {
        let us = median_us(reps, || {
            if let Err(error) = variant.forward_backward_device(
                &logits_device,
                &labels_device,
                &mut losses,
                Some(&mut gradient),
            ) {
                failure.get_or_insert(error);
            }
        });
        variant_fields += &format!(",\"{name}_us\":{us:.1}");
    }
    let ce_us = median_us(reps, || {
        if let Err(error) = cross_entropy.forward_backward_device(
            n,
            &logits_device,
            &labels_device,
            &mut losses,
            Some(&mut gradient),
        ) {
            failure.get_or_insert(error);
        }
    });
    let copy_us = median_us(reps, || {
        let copied = stream
            .memcpy_dtod(&logits_device, &mut gradient)
            .and_then(|()| stream.synchronize());
        if let Err(error) = copied {
            failure.get_or_insert(error.into());
        }
    });
    if let Some(error) = failure {
        return Err(error);
    }
    Ok(format!(
        "\"median_us\":{loss_us:.1}{variant_fields},\"softmax_ce_us\":{ce_us:.1},\"copy_us\":{copy_us:.1},\"ratio_to_copy\":{:.2}",
        loss_us / copy_us
    ))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let input_dir = PathBuf::from(args.next().ok_or("usage: bench_gpu INPUT_DIR [REPS]")?);
    let reps: usize = args.next().map_or(Ok(20), |r| r.parse())?;
    if !cuda_device_available() {
        println!("{{\"skipped\":\"no CUDA device\"}}");
        return Ok(());
    }
    std::fs::create_dir_all(&input_dir)?;
    let largest = *BATCHES.iter().max().expect("batches");
    let cross_entropy = CudaSoftmaxCrossEntropy::new()?;
    for n in [100usize, 1000] {
        let values = logits(largest * n, n as u64);
        let labels: Vec<usize> = (0..largest).map(|b| (b * 7919) % n).collect();
        let labels64: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
        difftopk_io::write_bytes_atomically(
            &input_dir.join(format!("logits_n{n}.npy")),
            &difftopk_io::npy_f32_bytes(&[largest, n], &values),
        )?;
        difftopk_io::write_bytes_atomically(
            &input_dir.join(format!("labels_n{n}.npy")),
            &difftopk_io::npy_i64_bytes(&labels64),
        )?;
        for m in [Some(16usize), None] {
            let methods: &[Method] = if m.is_some() {
                &[Method::SplitterSelection, Method::OddEven, Method::Bitonic]
            } else if n == 1000 {
                &[Method::SplitterSelection]
            } else {
                continue;
            };
            for &method in methods {
                let config = TopkLossConfig::new(method, n, &[0.5, 0.0, 0.0, 0.0, 0.5])?
                    .with_relaxation(Relaxation::LogisticPhi { lambda: 0.5 })?
                    .with_inverse_temperature(1.0)?
                    .with_preselection(m)?
                    .with_top1_mode(Top1Mode::Softmax);
                let loss = CudaTopkLoss::new(config)?;
                // With m, each kernel path too (the default picks by the batch size).
                let mut variants = Vec::new();
                if m.is_some() {
                    for (name, kernel) in [
                        ("fused_warp", RowKernel::FusedWarp),
                        ("select_then_thread", RowKernel::SelectThenThread),
                        ("thread_per_row", RowKernel::ThreadPerRow),
                        ("warp_sweep", RowKernel::WarpSweep),
                    ] {
                        variants.push((name, CudaTopkLoss::new(config)?.with_row_kernel(kernel)));
                    }
                }
                let stream = loss.stream().clone();
                let arguments = KernelArguments::new(&difftopk_core::TopkLoss::new(config)?);
                for batch in BATCHES {
                    let scratch =
                        batch * (arguments.reals_per_row() * 4 + arguments.indices_per_row() * 4);
                    let line = format!(
                        "\"method\":\"{}\",\"n\":{n},\"m\":{},\"batch\":{batch}",
                        method.name(),
                        m.map_or("null".to_string(), |m| m.to_string())
                    );
                    if scratch > SCRATCH_LIMIT_BYTES {
                        println!("{{{line},\"skipped\":\"scratch {} MiB\"}}", scratch >> 20);
                        continue;
                    }
                    // A failure (out of memory, say) is reported for this configuration and the
                    // others still run; the message is JSON-escaped.
                    match measure(
                        &loss,
                        &variants,
                        &cross_entropy,
                        &stream,
                        &values,
                        &labels,
                        n,
                        batch,
                        reps,
                    ) {
                        Ok(fields) => println!("{{{line},{fields}}}"),
                        Err(error) => println!(
                            "{{{line},\"failed\":{}}}",
                            serde_json::to_string(&error.to_string()).expect("a string")
                        ),
                    }
                }
            }
        }
    }
    Ok(())
}
