//! The reusable workspace: the same bits as the allocating call, whatever it computed before,
//! and no allocation once it has seen a batch that large (counted by a global allocator).

use difftopk_core::{Method, Relaxation, Top1Mode, TopkLoss, TopkLossConfig, Workspace};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts the allocations of the thread that is counting (the test harness's own threads
/// allocate at any time; they are not counted).
struct Counting;

thread_local! {
    static COUNTING_HERE: Cell<bool> = const { Cell::new(false) };
}
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn counting_here() -> bool {
    COUNTING_HERE.try_with(Cell::get).unwrap_or(false)
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counting_here() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        System.dealloc(pointer, layout)
    }
    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, size: usize) -> *mut u8 {
        if counting_here() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        System.realloc(pointer, layout, size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Allocations by this thread while `run` runs.
fn allocations_during(run: impl FnOnce()) -> usize {
    ALLOCATIONS.store(0, Ordering::Relaxed);
    COUNTING_HERE.with(|c| c.set(true));
    run();
    COUNTING_HERE.with(|c| c.set(false));
    ALLOCATIONS.load(Ordering::Relaxed)
}

mod common;

fn logits(count: usize, seed: u64) -> Vec<f32> {
    common::uniform_logits(count, seed)
        .into_iter()
        .map(|v| v as f32)
        .collect()
}

/// Losses over every method and both row paths: eight rows in lanes, and NeuralSort on 300
/// sorted inputs (beyond the lanes' all-pairs limit: one row at a time).
fn losses() -> Vec<TopkLoss> {
    let mut out = Vec::new();
    for method in [
        Method::SplitterSelection,
        Method::OddEven,
        Method::Bitonic,
        Method::BitonicAnySize,
        Method::NeuralSort,
        Method::SoftSort,
    ] {
        for (classes, m) in [(40, Some(12)), (20, None)] {
            let config = TopkLossConfig::new(method, classes, &[0.5, 0.0, 0.0, 0.0, 0.5])
                .unwrap()
                .with_relaxation(Relaxation::LogisticPhi { lambda: 0.5 })
                .unwrap()
                .with_preselection(m)
                .unwrap()
                .with_top1_mode(Top1Mode::Softmax);
            out.push(TopkLoss::new(config).unwrap());
        }
    }
    let config = TopkLossConfig::new(Method::NeuralSort, 300, &[0.5, 0.5]).unwrap();
    out.push(TopkLoss::new(config).unwrap());
    out
}

#[test]
fn a_reused_workspace_gives_the_allocating_calls_bits_and_allocates_nothing() {
    let _guard = ONE_AT_A_TIME.lock().unwrap();
    let losses = losses();
    // One workspace for all losses, in turn: shapes change, results must not.
    let mut shared = Workspace::<f32>::new();
    for round in 0..2 {
        for (number, loss) in losses.iter().enumerate() {
            let classes = loss.config().classes();
            for batch in [13usize, 5, 16] {
                let x = logits(batch * classes, (number * 31 + batch + round) as u64);
                let labels: Vec<usize> = (0..batch).map(|b| (b * 7 + round) % classes).collect();
                let mut expected_gradient = vec![0f32; x.len()];
                let expected = loss
                    .forward_backward(&x, &labels, Some(&mut expected_gradient))
                    .unwrap();
                let mut gradient = vec![f32::NAN; x.len()];
                let value = loss
                    .forward_backward_with(&mut shared, &x, &labels, Some(&mut gradient))
                    .unwrap();
                assert_eq!(
                    value.to_bits(),
                    expected.to_bits(),
                    "loss {number}, batch {batch}"
                );
                for (column, (a, b)) in gradient.iter().zip(&expected_gradient).enumerate() {
                    assert_eq!(a.to_bits(), b.to_bits(), "loss {number}, entry {column}");
                }
                let without = loss
                    .forward_backward_with(&mut shared, &x, &labels, None)
                    .unwrap();
                assert_eq!(without.to_bits(), expected.to_bits());
            }
        }
    }
    // Its own workspace, warmed by the largest batch: later calls allocate nothing.
    for (number, loss) in losses.iter().enumerate() {
        let classes = loss.config().classes();
        let mut workspace = loss.workspace::<f32>();
        let x = logits(16 * classes, number as u64);
        let labels: Vec<usize> = (0..16).map(|b| (b * 3) % classes).collect();
        let mut gradient = vec![0f32; x.len()];
        loss.forward_backward_with(&mut workspace, &x, &labels, Some(&mut gradient))
            .unwrap();
        let count = allocations_during(|| {
            for batch in [16usize, 9, 1] {
                loss.forward_backward_with(
                    &mut workspace,
                    &x[..batch * classes],
                    &labels[..batch],
                    Some(&mut gradient[..batch * classes]),
                )
                .unwrap();
            }
        });
        assert_eq!(count, 0, "loss {number} allocated {count} times");
        // The check can fail: a loss's first call allocates (a clone keeps no working memory
        // yet)...
        let fresh = loss.clone();
        let count = allocations_during(|| {
            fresh
                .forward_backward(&x, &labels, Some(&mut gradient))
                .unwrap();
        });
        assert!(count > 0);
        // ... and keeps what it made: its next calls allocate nothing.
        let count = allocations_during(|| {
            for batch in [16usize, 9, 1] {
                fresh
                    .forward_backward(
                        &x[..batch * classes],
                        &labels[..batch],
                        Some(&mut gradient[..batch * classes]),
                    )
                    .unwrap();
            }
        });
        assert_eq!(
            count, 0,
            "loss {number}: forward_backward allocated {count} times"
        );
    }
}

/// `loss::batch_loss`, the batch API without an allocator: the allocating call's bits (its
/// lanes included) with one sample's scratch from the caller, and no allocation at all.
#[test]
fn the_allocation_free_batch_loss_gives_the_allocating_calls_bits() {
    use difftopk_core::loss::{batch_loss, Scratch};
    let _guard = ONE_AT_A_TIME.lock().unwrap();
    for (number, loss) in losses().iter().enumerate() {
        let classes = loss.config().classes();
        let size = loss.scratch_size();
        let (mut reals, mut indices) = (vec![0f32; size.reals], vec![0u32; size.indices]);
        let network = loss.network().map(|network| network.as_ref());
        for batch in [1usize, 13] {
            let x = logits(batch * classes, (number * 17 + batch) as u64);
            let labels: Vec<usize> = (0..batch).map(|b| (b * 5 + 1) % classes).collect();
            let mut expected_gradient = vec![0f32; x.len()];
            let expected = loss
                .forward_backward(&x, &labels, Some(&mut expected_gradient))
                .unwrap();
            let mut gradient = vec![f32::NAN; x.len()];
            let mut value = f32::NAN;
            let count = allocations_during(|| {
                value = batch_loss(
                    loss.config(),
                    network.as_ref(),
                    &x,
                    &labels,
                    Some(&mut gradient),
                    Scratch {
                        reals: &mut reals,
                        indices: &mut indices,
                    },
                )
                .unwrap();
            });
            assert_eq!(count, 0, "loss {number} allocated {count} times");
            assert_eq!(value.to_bits(), expected.to_bits(), "loss {number}");
            for (column, (a, b)) in gradient.iter().zip(&expected_gradient).enumerate() {
                assert_eq!(a.to_bits(), b.to_bits(), "loss {number}, entry {column}");
            }
        }
        // An empty batch and a short gradient are named.
        let scratch = Scratch {
            reals: &mut reals,
            indices: &mut indices,
        };
        assert_eq!(
            batch_loss::<f32>(loss.config(), network.as_ref(), &[], &[], None, scratch),
            Err(difftopk_core::Error::Empty {
                what: "batch rows (labels)"
            })
        );
        let x = logits(2 * classes, 3);
        let mut short = vec![0f32; classes];
        let scratch = Scratch {
            reals: &mut reals,
            indices: &mut indices,
        };
        assert!(matches!(
            batch_loss(
                loss.config(),
                network.as_ref(),
                &x,
                &[0, 1],
                Some(&mut short),
                scratch
            ),
            Err(difftopk_core::Error::LengthMismatch {
                what: "gradient",
                ..
            })
        ));
    }
}

#[test]
fn errors_leave_the_workspace_usable() {
    let _guard = ONE_AT_A_TIME.lock().unwrap();
    let config = TopkLossConfig::new(Method::SplitterSelection, 10, &[0.5, 0.5]).unwrap();
    let loss = TopkLoss::new(config).unwrap();
    let mut workspace = loss.workspace::<f64>();
    let mut x: Vec<f64> = logits(30, 4).into_iter().map(f64::from).collect();
    x[17] = f64::NAN;
    assert!(loss
        .forward_backward_with(&mut workspace, &x, &[1, 2, 3], None)
        .is_err());
    x[17] = 0.25;
    let expected = loss.forward_backward(&x, &[1, 2, 3], None).unwrap();
    let value = loss
        .forward_backward_with(&mut workspace, &x, &[1, 2, 3], None)
        .unwrap();
    assert_eq!(value.to_bits(), expected.to_bits());
}

/// Calls of one loss from several threads at once (some find the kept working memory taken
/// and make their own), in f32 and f64 alternately: every call gives the bits of a call with
/// a workspace of its own.
#[test]
fn concurrent_calls_of_one_loss_give_the_same_bits() {
    let losses = losses();
    for loss in [&losses[0], &losses[9]] {
        let classes = loss.config().classes();
        let x = logits(11 * classes, 77);
        let x64: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
        let labels: Vec<usize> = (0..11).map(|b| (b * 5) % classes).collect();
        let mut expected_gradient = vec![0f32; x.len()];
        let expected = loss
            .forward_backward_with(
                &mut Workspace::new(),
                &x,
                &labels,
                Some(&mut expected_gradient),
            )
            .unwrap();
        let expected64 = loss
            .forward_backward_with(&mut Workspace::new(), &x64, &labels, None)
            .unwrap();
        std::thread::scope(|scope| {
            for thread in 0..4 {
                let (x, x64, labels) = (&x, &x64, &labels);
                let expected_gradient = &expected_gradient;
                scope.spawn(move || {
                    let mut gradient = vec![f32::NAN; x.len()];
                    for call in 0..200 {
                        if (call + thread) % 3 == 0 {
                            let value = loss.forward_backward(x64, labels, None).unwrap();
                            assert_eq!(value.to_bits(), expected64.to_bits());
                            continue;
                        }
                        let value = loss
                            .forward_backward(x, labels, Some(&mut gradient))
                            .unwrap();
                        assert_eq!(value.to_bits(), expected.to_bits(), "call {call}");
                        assert!(gradient
                            .iter()
                            .zip(expected_gradient)
                            .all(|(a, b)| a.to_bits() == b.to_bits()));
                    }
                });
            }
        });
    }
}

/// The loss keeps the auto traits it had before it kept working memory: it can be shared
/// between threads and used inside `catch_unwind`.
#[test]
fn the_loss_stays_send_sync_and_unwind_safe() {
    fn check<T: Send + Sync + std::panic::UnwindSafe + std::panic::RefUnwindSafe>() {}
    check::<TopkLoss>();
    let losses = losses();
    let loss = &losses[0];
    let classes = loss.config().classes();
    let x = logits(3 * classes, 5);
    let result = std::panic::catch_unwind(|| loss.forward_backward(&x, &[0, 1, 2], None));
    assert!(result.unwrap().is_ok());
}
