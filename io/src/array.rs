//! One array in a file, whatever the format: its element type, shape and bytes.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::{npy, safetensors, DataError, Dtype, Problem};

/// Where an array's data lives (always C order once opened).
#[derive(Debug)]
enum Storage {
    /// In the file at `offset` (read with positional reads, so nothing is held in memory).
    File { file: File, offset: u64 },
    /// In memory (arrays inside .npz archives, and Fortran-order arrays, transposed on load).
    Memory(Vec<u8>),
}

/// An array opened from a `.npy`, `.npz` or `.safetensors` file, named by a *spec*: a path, or
/// `PATH:NAME` for one array of an archive (`data.npz:X_train`, `emb.safetensors:embeddings`).
/// The format is recognised from the content, not the extension.
#[derive(Debug)]
pub struct ArrayFile {
    source: String,
    dtype: Dtype,
    little_endian: bool,
    shape: Vec<usize>,
    storage: Storage,
}

/// Splits `PATH:NAME`; a spec naming an existing file is a path even if it contains ':'.
pub fn split_spec(spec: &str) -> (&str, Option<&str>) {
    if Path::new(spec).exists() {
        return (spec, None);
    }
    match spec.rsplit_once(':') {
        Some((path, name)) if !path.is_empty() && !name.is_empty() => (path, Some(name)),
        _ => (spec, None),
    }
}

fn unreadable(source: &str, error: std::io::Error) -> DataError {
    DataError::new(source, Problem::Unreadable(error.to_string()))
}

fn choose(source: &str, names: Vec<String>, wanted: Option<&str>) -> Result<String, DataError> {
    match wanted {
        Some(name) if names.iter().any(|n| n == name) => Ok(name.to_string()),
        Some(name) => Err(DataError::new(
            source,
            Problem::MissingArray {
                name: name.to_string(),
                available: names,
            },
        )),
        None if names.len() == 1 => Ok(names[0].clone()),
        None if names.is_empty() => Err(DataError::new(source, Problem::NoRows)),
        None => Err(DataError::new(source, Problem::AmbiguousArray(names))),
    }
}

impl ArrayFile {
    /// Opens the array a spec names, checking its header and that the file holds all its data.
    pub fn open(spec: &str) -> Result<Self, DataError> {
        let (path, name) = split_spec(spec);
        let file = File::open(path).map_err(|e| unreadable(spec, e))?;
        let len = file.metadata().map_err(|e| unreadable(spec, e))?.len();
        if len == 0 {
            return Err(DataError::new(spec, Problem::Empty));
        }
        let mut prefix = vec![0u8; len.min(16) as usize];
        file.read_exact_at(&mut prefix, 0)
            .map_err(|e| unreadable(spec, e))?;
        if prefix.starts_with(npy::MAGIC) {
            if let Some(name) = name {
                return Err(DataError::new(spec, Problem::NamedNpyArray(name.into())));
            }
            Self::from_npy_file(spec, file, len)
        } else if prefix.starts_with(b"PK\x03\x04") || prefix.starts_with(b"PK\x05\x06") {
            Self::from_npz(spec, file, name)
        } else if len >= 9 && prefix.len() >= 9 && prefix[8] == b'{' {
            Self::from_safetensors(spec, file, len, name)
        } else {
            Err(DataError::new(spec, Problem::UnknownFormat))
        }
    }

    fn from_npy_file(source: &str, file: File, len: u64) -> Result<Self, DataError> {
        let bad = |what: String| DataError::new(source, Problem::BadHeader(what));
        let mut prefix = vec![0u8; len.min(12) as usize];
        file.read_exact_at(&mut prefix, 0)
            .map_err(|e| unreadable(source, e))?;
        let header_len = npy::header_len(&prefix).map_err(bad)?;
        if header_len as u64 > len {
            return Err(bad("file ends inside the header".into()));
        }
        let mut header_bytes = vec![0u8; header_len];
        file.read_exact_at(&mut header_bytes, 0)
            .map_err(|e| unreadable(source, e))?;
        let header = npy::parse_header(&header_bytes).map_err(bad)?;
        let needed = header
            .data_len()
            .ok_or_else(|| bad("shape too large".into()))?;
        let present = len - header.data_offset;
        check_data_length(source, needed, present)?;
        let mut array = ArrayFile {
            source: source.to_string(),
            dtype: header.dtype,
            little_endian: header.little_endian,
            shape: header.shape.clone(),
            storage: Storage::File {
                file,
                offset: header.data_offset,
            },
        };
        if header.fortran_order && header.shape.len() > 1 {
            // Column-major data is transposed in memory: it must fit.
            let mut bytes = Vec::new();
            let size = usize::try_from(needed)
                .ok()
                .filter(|&n| bytes.try_reserve_exact(n).is_ok());
            let Some(size) = size else {
                return Err(too_large(source, needed));
            };
            bytes.resize(size, 0);
            array.read_bytes(0, &mut bytes)?;
            array.storage = Storage::Memory(
                fortran_to_c(&bytes, &header.shape, header.dtype.size())
                    .ok_or_else(|| too_large(source, needed))?,
            );
        }
        Ok(array)
    }

    fn from_npy_bytes(source: &str, bytes: Vec<u8>) -> Result<Self, DataError> {
        let bad = |what: String| DataError::new(source, Problem::BadHeader(what));
        let header = npy::parse_header(&bytes).map_err(bad)?;
        let needed = header
            .data_len()
            .ok_or_else(|| bad("shape too large".into()))?;
        let present = bytes.len() as u64 - header.data_offset.min(bytes.len() as u64);
        check_data_length(source, needed, present)?;
        let start = header.data_offset as usize;
        let data = &bytes[start..start + needed as usize];
        let data = if header.fortran_order && header.shape.len() > 1 {
            fortran_to_c(data, &header.shape, header.dtype.size())
                .ok_or_else(|| too_large(source, needed))?
        } else {
            data.to_vec()
        };
        Ok(ArrayFile {
            source: source.to_string(),
            dtype: header.dtype,
            little_endian: header.little_endian,
            shape: header.shape,
            storage: Storage::Memory(data),
        })
    }

    fn from_npz(source: &str, file: File, name: Option<&str>) -> Result<Self, DataError> {
        let mut archive = zip::ZipArchive::new(file).map_err(|e| {
            DataError::new(
                source,
                Problem::BadHeader(format!("not a valid .npz (zip) archive: {e}")),
            )
        })?;
        let names: Vec<String> = archive
            .file_names()
            .filter_map(|n| n.strip_suffix(".npy").map(str::to_string))
            .collect();
        let chosen = choose(source, names, name)?;
        let mut entry = archive.by_name(&format!("{chosen}.npy")).map_err(|e| {
            DataError::new(
                source,
                Problem::BadHeader(format!("archive entry {chosen}: {e}")),
            )
        })?;
        // Header first, then exactly the bytes it promises: a deflate bomb cannot make this
        // read more than the header's shape says (which must then fit in memory).
        let unreadable_entry = |e: std::io::Error| {
            DataError::new(source, Problem::Unreadable(format!("entry {chosen}: {e}")))
        };
        let bad = |what: String| DataError::new(source, Problem::BadHeader(what));
        let mut bytes = vec![0u8; 12];
        let got = read_up_to(&mut entry, &mut bytes).map_err(unreadable_entry)?;
        bytes.truncate(got);
        let header_len = npy::header_len(&bytes).map_err(bad)?;
        if header_len > 1 << 24 {
            return Err(bad("header longer than 16 MiB".into()));
        }
        let mut header = vec![0u8; header_len - bytes.len().min(header_len)];
        let got = read_up_to(&mut entry, &mut header).map_err(unreadable_entry)?;
        bytes.extend_from_slice(&header[..got]);
        let parsed = npy::parse_header(&bytes).map_err(bad)?;
        let needed = parsed
            .data_len()
            .ok_or_else(|| bad("shape too large".into()))?;
        // The entry's uncompressed size, from the archive's directory: more than the header
        // and its data is an error, as for a .npy file (less shows when reading).
        let entry_data = entry.size().saturating_sub(parsed.data_offset);
        if entry_data > needed {
            return Err(DataError::new(
                source,
                Problem::TrailingData {
                    expected: needed,
                    actual: entry_data,
                },
            ));
        }
        let needed_usize = usize::try_from(needed).map_err(|_| bad("shape too large".into()))?;
        let mut data = Vec::new();
        data.try_reserve_exact(needed_usize).map_err(|_| {
            DataError::new(
                source,
                Problem::Unreadable(format!(
                    "entry {chosen}: not enough memory for {needed} bytes"
                )),
            )
        })?;
        (&mut entry)
            .take(needed)
            .read_to_end(&mut data)
            .map_err(unreadable_entry)?;
        bytes.extend_from_slice(&data);
        Self::from_npy_bytes(source, bytes)
    }

    fn from_safetensors(
        source: &str,
        file: File,
        len: u64,
        name: Option<&str>,
    ) -> Result<Self, DataError> {
        let header = read_safetensors_header(source, &file, len)?;
        let names = header
            .tensors
            .keys()
            .chain(header.unsupported.keys())
            .cloned()
            .collect();
        let chosen = choose(source, names, name)?;
        if let Some(dtype) = header.unsupported.get(&chosen) {
            return Err(DataError::new(
                source,
                Problem::UnsupportedDtype(format!("{dtype} (tensor {chosen:?})")),
            ));
        }
        let entry = &header.tensors[&chosen];
        Ok(ArrayFile {
            source: source.to_string(),
            dtype: entry.dtype,
            little_endian: true,
            shape: entry.shape.clone(),
            storage: Storage::File {
                file,
                offset: entry.begin,
            },
        })
    }

    /// The spec the array was opened from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Element type.
    pub fn dtype(&self) -> Dtype {
        self.dtype
    }

    /// Shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Little-endian data.
    pub fn little_endian(&self) -> bool {
        self.little_endian
    }

    /// Reads `buffer.len()` bytes of data starting `offset` bytes into the array's data.
    pub fn read_bytes(&self, offset: u64, buffer: &mut [u8]) -> Result<(), DataError> {
        match &self.storage {
            Storage::File { file, offset: base } => file
                .read_exact_at(buffer, base + offset)
                .map_err(|e| unreadable(&self.source, e)),
            Storage::Memory(bytes) => {
                let start = offset as usize;
                let slice = bytes.get(start..start + buffer.len()).ok_or_else(|| {
                    DataError::new(
                        &self.source,
                        Problem::Truncated {
                            expected: (start + buffer.len()) as u64,
                            actual: bytes.len() as u64,
                        },
                    )
                })?;
                buffer.copy_from_slice(slice);
                Ok(())
            }
        }
    }
}

/// The error for a Fortran-order array that does not fit in memory.
fn too_large(source: &str, bytes: u64) -> DataError {
    DataError::new(
        source,
        Problem::Unreadable(format!(
            "a Fortran-order array of {bytes} bytes does not fit in memory (save it in C order to stream it)"
        )),
    )
}

/// Reads until `buffer` is full or the input ends; returns the bytes read.
fn read_up_to(reader: &mut impl Read, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..])? {
            0 => break,
            count => filled += count,
        }
    }
    Ok(filled)
}

/// Reads and parses a safetensors header (the file's first 8 + N bytes).
pub fn read_safetensors_header(
    source: &str,
    file: &File,
    len: u64,
) -> Result<safetensors::SafetensorsHeader, DataError> {
    let mut length = [0u8; 8];
    file.read_exact_at(&mut length, 0)
        .map_err(|e| unreadable(source, e))?;
    let header_len = u64::from_le_bytes(length);
    if header_len > safetensors::MAX_HEADER || 8 + header_len > len {
        return Err(DataError::new(source, Problem::UnknownFormat));
    }
    let mut json = vec![0u8; header_len as usize];
    file.read_exact_at(&mut json, 8)
        .map_err(|e| unreadable(source, e))?;
    safetensors::parse_header(&json, len).map_err(|problem| DataError::new(source, problem))
}

/// Reorders column-major bytes of `shape` into row-major order.
fn fortran_to_c(bytes: &[u8], shape: &[usize], size: usize) -> Option<Vec<u8>> {
    let count: usize = shape.iter().product();
    let mut out = Vec::new();
    out.try_reserve_exact(bytes.len()).ok()?;
    out.resize(bytes.len(), 0u8);
    let mut index = vec![0usize; shape.len()];
    for c_position in 0..count {
        // index holds the multi-index of c_position (row-major); its Fortran offset:
        let mut f_position = 0;
        let mut stride = 1;
        for (i, &d) in index.iter().zip(shape) {
            f_position += i * stride;
            stride *= d;
        }
        out[c_position * size..(c_position + 1) * size]
            .copy_from_slice(&bytes[f_position * size..(f_position + 1) * size]);
        for axis in (0..shape.len()).rev() {
            index[axis] += 1;
            if index[axis] < shape[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
    Some(out)
}

/// `Ok` when the data after a .npy header is exactly the `needed` bytes its shape describes:
/// [`Problem::Truncated`] for fewer, [`Problem::TrailingData`] for more.
fn check_data_length(source: &str, needed: u64, present: u64) -> Result<(), DataError> {
    let problem = if present < needed {
        Problem::Truncated {
            expected: needed,
            actual: present,
        }
    } else if present > needed {
        Problem::TrailingData {
            expected: needed,
            actual: present,
        }
    } else {
        return Ok(());
    };
    Err(DataError::new(source, problem))
}
