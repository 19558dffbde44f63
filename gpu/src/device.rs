//! What the loss structs share: the device check, the float types, the per-batch status
//! (first bad row) and the scratch buffers kept between calls.

use std::any::Any;
use std::sync::Arc;

use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DeviceRepr, ValidAsZeroBits,
};

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

/// Device 0's default stream and the `[f32, f64]` instances of kernel `name` from the loss
/// module (compiled for the device's architecture once per process).
pub(crate) fn load_kernels(name: &str) -> Result<(Arc<CudaStream>, [CudaFunction; 2]), Error> {
    let (stream, [f32_kernel, f64_kernel]) = load_functions(
        kernels::LOSS_SOURCE,
        [&format!("{name}_f32"), &format!("{name}_f64")],
    )?;
    Ok((stream, [f32_kernel, f64_kernel]))
}

/// Device 0's default stream and the functions `names` of `kernels::SOURCES[source]`
/// ([`Error::NoCudaDevice`] before any driver call when there is no driver or device).
pub(crate) fn load_functions<const N: usize>(
    source: usize,
    names: [&str; N],
) -> Result<(Arc<CudaStream>, [CudaFunction; N]), Error> {
    if !cuda_device_available() {
        return Err(Error::NoCudaDevice);
    }
    let context = CudaContext::new(0)?;
    let (major, minor) = context.compute_capability()?;
    let module = context.load_module(kernels::ptx(source, major, minor)?)?;
    let mut functions = Vec::with_capacity(N);
    for name in names {
        functions.push(module.load_function(name)?);
    }
    let functions: [CudaFunction; N] = functions
        .try_into()
        .unwrap_or_else(|_| unreachable!("one function per name"));
    Ok((context.default_stream(), functions))
}

/// A network as the kernels read it: `(wire_a, wire_b, out_min, out_max)` per comparator (an
/// `int4` each).
pub(crate) fn comparator_table(comparators: &[difftopk_core::Comparator]) -> Vec<i32> {
    comparators
        .iter()
        .flat_map(|c| {
            [
                c.wire_a as i32,
                c.wire_b as i32,
                c.out_min as i32,
                c.out_max as i32,
            ]
        })
        .collect()
}

/// Where the runs of mutually independent comparators of a `comparator_table` start, and its
/// end: a run ends just before the first comparator that touches (reads or writes) a wire an
/// earlier comparator of the run touched. The comparators of a run commute, so the warp sweep
/// (`topk_row_network_warp` in kernels/topk_loss.cu) spreads each run over its lanes and gets
/// the one-thread sweep's results; for the networks of the core the runs are their layers (or
/// consecutive layers that share no wire, merged).
/// `[0]` for an empty table.
pub(crate) fn independent_runs(table: &[i32], count: usize) -> Vec<i32> {
    let wires = table
        .iter()
        .map(|&wire| wire as usize + 1)
        .max()
        .unwrap_or(0);
    // The run (1-based) that last touched each wire.
    let mut touched_in = vec![0usize; wires];
    let mut starts = vec![0i32];
    let mut run = 1;
    for (c, comparator) in table.chunks_exact(4).take(count).enumerate() {
        if comparator
            .iter()
            .any(|&wire| touched_in[wire as usize] == run)
        {
            starts.push(c as i32);
            run += 1;
        }
        for &wire in comparator {
            touched_in[wire as usize] = run;
        }
    }
    if count > 0 {
        starts.push(count as i32);
    }
    starts
}

/// Labels as the kernels read them (`u32`); one that does not fit becomes `u32::MAX`, out of
/// range for any class count, so the kernel reports it.
pub(crate) fn kernel_labels(labels: &[usize]) -> Vec<u32> {
    labels
        .iter()
        .map(|&label| u32::try_from(label).unwrap_or(u32::MAX))
        .collect()
}

/// The kernel instance for `F`.
pub(crate) fn kernel_for<F: GpuFloat>(kernels: &[CudaFunction; 2]) -> &CudaFunction {
    if F::SUFFIX == "f32" {
        &kernels[0]
    } else {
        &kernels[1]
    }
}

/// The kernels' validity report: `[first row with a label out of range, first row with a
/// non-finite logit]`, `i32::MAX` for none.
pub(crate) struct Status {
    flags: CudaSlice<i32>,
}

impl Status {
    pub(crate) fn new(stream: &Arc<CudaStream>) -> Result<Self, Error> {
        Ok(Status {
            flags: stream.alloc_zeros::<i32>(2)?,
        })
    }

    /// Resets the flags before a launch.
    pub(crate) fn reset(&mut self, stream: &Arc<CudaStream>) -> Result<(), Error> {
        stream.memcpy_htod(&[i32::MAX; 2], &mut self.flags)?;
        Ok(())
    }

    /// The flags buffer, for the kernel's last argument.
    pub(crate) fn flags(&mut self) -> &mut CudaSlice<i32> {
        &mut self.flags
    }

    /// After the launch (waits for it): the core's error for the first bad row, if any, with
    /// the offending label or column read back from the device.
    pub(crate) fn check<F: GpuFloat>(
        &self,
        stream: &Arc<CudaStream>,
        logits: &CudaSlice<F>,
        labels: &CudaSlice<u32>,
        classes: usize,
    ) -> Result<(), Error> {
        let mut flags = [0i32; 2];
        stream.memcpy_dtoh(&self.flags, &mut flags)?;
        let Some((row, label_first)) = first_bad_row(flags) else {
            return Ok(());
        };
        let rows = logits.len() / classes.max(1);
        if row >= rows {
            return Err(Error::Driver(format!(
                "the kernel reported row {row} of a batch of {rows}"
            )));
        }
        // The core checks the label before the logits of a row.
        if label_first {
            let mut label = [0u32];
            stream.memcpy_dtoh(&labels.slice(row..row + 1), &mut label)?;
            return Err(difftopk_core::Error::LabelOutOfRange {
                row,
                label: label[0] as usize,
                classes,
            }
            .into());
        }
        let mut values = vec![F::zero(); classes];
        stream.memcpy_dtoh(
            &logits.slice(row * classes..(row + 1) * classes),
            &mut values,
        )?;
        // A flagged row holds a non-finite value, or (top-k loss, operators) one beyond
        // ±MAX_LOGIT: named as the core names it.
        let error = difftopk_core::loss::check_values(row, &values)
            .err()
            .unwrap_or(difftopk_core::Error::LogitTooLarge { row, column: 0 });
        Err(error.into())
    }
}

/// The kernels' report `[first row with a bad label, first row with a non-finite logit]`
/// (`i32::MAX`: none) as the first bad row and whether its label is the problem (the core
/// checks a row's label before its logits).
pub(crate) fn first_bad_row(flags: [i32; 2]) -> Option<(usize, bool)> {
    let [bad_label, bad_logit] = flags.map(|row| {
        if row == i32::MAX {
            None
        } else {
            usize::try_from(row).ok()
        }
    });
    match (bad_label, bad_logit) {
        (Some(a), Some(b)) => Some((a.min(b), a <= b)),
        (Some(a), None) => Some((a, true)),
        (None, Some(b)) => Some((b, false)),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::{comparator_table, first_bad_row, independent_runs};
    use difftopk_core::SortingNetwork;

    /// For the core's networks the runs of independent comparators are their layers, or
    /// consecutive layers merged where they share no wire; within a run no wire repeats; a
    /// comparator that reuses a wire starts a new run.
    #[test]
    fn independent_runs_follow_the_network_layers() {
        for network in [
            SortingNetwork::odd_even(70).unwrap(),
            SortingNetwork::bitonic(16).unwrap(),
            SortingNetwork::bitonic_any_size(23).unwrap(),
            SortingNetwork::splitter_selection(100, 5).unwrap(),
        ] {
            let network = network.as_ref();
            let count = network.comparators().len();
            let table = comparator_table(network.comparators());
            let runs = independent_runs(&table, count);
            let mut layer_ends = vec![0i32];
            for layer in network.layers() {
                layer_ends.push(layer_ends.last().unwrap() + layer.len() as i32);
            }
            assert!(runs.iter().all(|start| layer_ends.contains(start)));
            assert_eq!((runs[0], *runs.last().unwrap()), (0, count as i32));
            assert!(runs.len() <= layer_ends.len() && runs.len() * 2 > layer_ends.len());
            for run in runs.windows(2) {
                let mut wires: Vec<i32> = table[4 * run[0] as usize..4 * run[1] as usize]
                    .chunks_exact(4)
                    .flat_map(|c| [c[0], c[1]])
                    .collect();
                let len = wires.len();
                wires.sort_unstable();
                wires.dedup();
                assert_eq!(wires.len(), len, "a wire repeats within a run");
            }
        }
        // (0,1), (2,3) | (1,2) | (0,3)? shares no wire with (1,2): same run.
        let table = [0, 1, 0, 1, 2, 3, 2, 3, 1, 2, 1, 2, 0, 3, 0, 3];
        assert_eq!(independent_runs(&table, 4), vec![0, 2, 4]);
        assert_eq!(independent_runs(&[0; 4], 0), vec![0]);
    }

    #[test]
    fn the_status_report_reads_as_the_first_bad_row() {
        assert_eq!(first_bad_row([i32::MAX, i32::MAX]), None);
        assert_eq!(first_bad_row([3, i32::MAX]), Some((3, true)));
        assert_eq!(first_bad_row([i32::MAX, 0]), Some((0, false)));
        assert_eq!(first_bad_row([2, 3]), Some((2, true)));
        assert_eq!(first_bad_row([5, 3]), Some((3, false)));
        assert_eq!(first_bad_row([4, 4]), Some((4, true)));
    }
}

/// Device scratch kept between calls and grown on demand (never zeroed: the kernels write
/// every entry before reading it).
#[derive(Default)]
pub(crate) struct Scratch {
    reals_f32: Option<CudaSlice<f32>>,
    reals_f64: Option<CudaSlice<f64>>,
    indices: Option<CudaSlice<u32>>,
}

impl Scratch {
    /// At least `reals` reals of type `F` and `indices` indices.
    pub(crate) fn reserve<F: GpuFloat>(
        &mut self,
        stream: &Arc<CudaStream>,
        reals: usize,
        indices: usize,
    ) -> Result<(&mut CudaSlice<F>, &mut CudaSlice<u32>), Error> {
        let slot: &mut dyn Any = if F::SUFFIX == "f32" {
            &mut self.reals_f32
        } else {
            &mut self.reals_f64
        };
        let slot = slot
            .downcast_mut::<Option<CudaSlice<F>>>()
            .expect("GpuFloat is f32 or f64");
        if slot.as_ref().is_none_or(|buffer| buffer.len() < reals) {
            *slot = None; // free the old buffer before allocating the larger one
                          // SAFETY: scratch; the kernels write each entry before they read it.
            *slot = Some(unsafe { stream.alloc::<F>(reals.max(1)) }?);
        }
        if self
            .indices
            .as_ref()
            .is_none_or(|buffer| buffer.len() < indices)
        {
            self.indices = None;
            // SAFETY: as above.
            self.indices = Some(unsafe { stream.alloc::<u32>(indices.max(1)) }?);
        }
        Ok((
            slot.as_mut().expect("allocated above"),
            self.indices.as_mut().expect("allocated above"),
        ))
    }
}
