//! Reusable working memory for the batch API, so that a training loop allocates nothing per
//! step: [`Workspace`], made by [`crate::TopkLoss::workspace`] and used by
//! [`crate::TopkLoss::forward_backward_with`].

use crate::lanes::LaneBuffers;
use crate::Real;
use alloc::vec::Vec;

/// Working memory of [`crate::TopkLoss::forward_backward_with`] (feature `alloc`).
///
/// It holds the buffers of the rows in flight (eight rows side by side, or the one-row kernel's
/// scratch) and the per-row losses. It grows to the largest batch it has seen and is reused as
/// it is afterwards: from the second step of a training loop on, the loss allocates nothing. A
/// workspace made for one loss also works with another (it is rebuilt when the shapes differ,
/// which allocates once). Results never depend on what it computed before: the only thing it
/// carries from one call to the next is the preselection's guess for the next row (see
/// `select::SelectionHint`), which decides how fast the selection runs, never what it selects.
#[derive(Debug)]
pub struct Workspace<F> {
    pub(crate) rows: RowBuffers<F>,
    pub(crate) losses: Vec<F>,
}

impl<F: Real> Workspace<F> {
    /// An empty workspace; the first call sizes it.
    pub fn new() -> Self {
        Workspace {
            rows: RowBuffers::default(),
            losses: Vec::new(),
        }
    }
}

impl<F: Real> Default for Workspace<F> {
    fn default() -> Self {
        Self::new()
    }
}

/// What the rows of one loss need: the lanes' buffers or the one-row kernel's scratch.
#[derive(Debug)]
pub(crate) struct RowBuffers<F> {
    /// The shape the buffers were made for (see [`RowShape`]); `None` before the first use.
    shape: Option<RowShape>,
    pub(crate) lanes: Option<LaneBuffers<F>>,
    pub(crate) reals: Vec<F>,
    pub(crate) indices: Vec<u32>,
}

impl<F> Default for RowBuffers<F> {
    fn default() -> Self {
        RowBuffers {
            shape: None,
            lanes: None,
            reals: Vec::new(),
            indices: Vec::new(),
        }
    }
}

/// The sizes the row buffers depend on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RowShape {
    /// Eight rows in lanes: sorted inputs n′, comparators, relaxed rows K (0 for networks).
    Lanes {
        inputs: usize,
        comparators: usize,
        relaxed_rows: usize,
    },
    /// One row at a time: the scratch of [`crate::loss::scratch_size`].
    OneRow { reals: usize, indices: usize },
}

impl<F: Real> RowBuffers<F> {
    /// Makes the buffers fit `shape` (allocating only when it differs from the last one).
    pub(crate) fn prepare(&mut self, shape: RowShape) {
        if self.shape == Some(shape) {
            return;
        }
        match shape {
            RowShape::Lanes {
                inputs,
                comparators,
                relaxed_rows,
            } => self.lanes = Some(LaneBuffers::new(inputs, comparators, relaxed_rows)),
            RowShape::OneRow { reals, indices } => {
                self.lanes = None;
                self.reals.clear();
                self.reals.resize(reals, F::zero());
                self.indices.clear();
                self.indices.resize(indices, 0);
            }
        }
        self.shape = Some(shape);
    }
}

/// The workspaces a [`crate::TopkLoss`] keeps between calls of its `forward_backward`, one for
/// `f32` and one for `f64`, lent to one call at a time: a call takes them by setting a flag
/// and gives them back when it returns; a call that finds them taken (another thread's call
/// in flight) works with a workspace of its own, as before. So the second and later calls of
/// a training loop allocate nothing, without a workspace argument. Results never depend on
/// whether a call found them: a workspace's contents never change a result (it carries only
/// the selection's guess, which affects the speed alone).
pub(crate) struct KeptWorkspaces {
    #[cfg(target_has_atomic = "8")]
    taken: core::sync::atomic::AtomicBool,
    #[cfg(target_has_atomic = "8")]
    single: core::cell::UnsafeCell<Option<Workspace<f32>>>,
    #[cfg(target_has_atomic = "8")]
    double: core::cell::UnsafeCell<Option<Workspace<f64>>>,
}

// SAFETY: the workspaces are reached only by the call that set `taken` (an acquire exchange)
// until it clears it (a release store); `Workspace` is `Send`.
unsafe impl Sync for KeptWorkspaces {}

// A panic inside a call leaves nothing half-updated that a later call could observe: the flag
// is cleared on unwind, and a workspace's contents never change a result. (Without these,
// the `UnsafeCell`s would make `&TopkLoss` lose `UnwindSafe`.)
impl core::panic::UnwindSafe for KeptWorkspaces {}
impl core::panic::RefUnwindSafe for KeptWorkspaces {}

impl KeptWorkspaces {
    /// None kept yet.
    pub(crate) fn new() -> Self {
        KeptWorkspaces {
            #[cfg(target_has_atomic = "8")]
            taken: core::sync::atomic::AtomicBool::new(false),
            #[cfg(target_has_atomic = "8")]
            single: core::cell::UnsafeCell::new(None),
            #[cfg(target_has_atomic = "8")]
            double: core::cell::UnsafeCell::new(None),
        }
    }

    /// Runs `work` with the kept workspace for `F` (`f32` or `f64`, made on first use), or,
    /// where another call holds them or `F` is another type, with a new one.
    pub(crate) fn with<F: Real, R>(&self, work: impl FnOnce(&mut Workspace<F>) -> R) -> R {
        #[cfg(target_has_atomic = "8")]
        {
            use core::any::TypeId;
            use core::sync::atomic::Ordering;
            let kept = if TypeId::of::<F>() == TypeId::of::<f32>() {
                self.single.get().cast::<Option<Workspace<F>>>()
            } else if TypeId::of::<F>() == TypeId::of::<f64>() {
                self.double.get().cast::<Option<Workspace<F>>>()
            } else {
                core::ptr::null_mut()
            };
            if !kept.is_null()
                && self
                    .taken
                    .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                // Gives the workspaces back even if `work` panics.
                struct Release<'a>(&'a core::sync::atomic::AtomicBool);
                impl Drop for Release<'_> {
                    fn drop(&mut self) {
                        self.0.store(false, Ordering::Release);
                    }
                }
                let _release = Release(&self.taken);
                // SAFETY: `F` is the type of the cell `kept` points to (checked by TypeId), and
                // this call alone holds the workspaces until `_release` clears the flag.
                let workspace = unsafe { &mut *kept }.get_or_insert_with(Workspace::new);
                return work(workspace);
            }
        }
        work(&mut Workspace::new())
    }
}

impl Clone for KeptWorkspaces {
    /// A clone keeps workspaces of its own (none yet).
    fn clone(&self) -> Self {
        KeptWorkspaces::new()
    }
}

impl core::fmt::Debug for KeptWorkspaces {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("KeptWorkspaces")
    }
}
