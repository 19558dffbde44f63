//! The safetensors format: an 8-byte little-endian header length N, N bytes of JSON
//! (`{"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__":
//! {"key": "value"}}`), then the data; offsets are relative to the end of the header.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::{Dtype, Problem};

/// One tensor's entry in the header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorEntry {
    /// Element type.
    pub dtype: Dtype,
    /// Shape.
    pub shape: Vec<usize>,
    /// Absolute byte range of the data in the file.
    pub begin: u64,
    /// End of the byte range (exclusive).
    pub end: u64,
}

/// A parsed header: tensors by name and the string metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SafetensorsHeader {
    /// Tensors by name.
    pub tensors: BTreeMap<String, TensorEntry>,
    /// `__metadata__`.
    pub metadata: BTreeMap<String, String>,
    /// Tensors of element types this reader does not decode (name → dtype), kept so that the
    /// other tensors of the file stay usable and asking for one of these names says why not.
    pub unsupported: BTreeMap<String, String>,
}

/// Upper bound on the JSON header (the format's own limit is 100 MB).
pub const MAX_HEADER: u64 = 100_000_000;

fn dtype_of(name: &str) -> Result<Dtype, String> {
    Ok(match name {
        "F16" => Dtype::F16,
        "BF16" => Dtype::BF16,
        "F32" => Dtype::F32,
        "F64" => Dtype::F64,
        "I8" => Dtype::I8,
        "I16" => Dtype::I16,
        "I32" => Dtype::I32,
        "I64" => Dtype::I64,
        "U8" => Dtype::U8,
        "U16" => Dtype::U16,
        "U32" => Dtype::U32,
        "U64" => Dtype::U64,
        other => return Err(format!("unsupported dtype {other}")),
    })
}

fn name_of(dtype: Dtype) -> &'static str {
    match dtype {
        Dtype::F16 => "F16",
        Dtype::BF16 => "BF16",
        Dtype::F32 => "F32",
        Dtype::F64 => "F64",
        Dtype::I8 => "I8",
        Dtype::I16 => "I16",
        Dtype::I32 => "I32",
        Dtype::I64 => "I64",
        Dtype::U8 => "U8",
        Dtype::U16 => "U16",
        Dtype::U32 => "U32",
        Dtype::U64 => "U64",
    }
}

/// Parses the JSON header (`json`, the N bytes after the length) of a file of `file_len` bytes,
/// checking every tensor's byte range lies in the file and matches its shape.
pub fn parse_header(json: &[u8], file_len: u64) -> Result<SafetensorsHeader, Problem> {
    parse_header_text(json, file_len).map_err(|e| match e {
        HeaderError::Truncated { end } => Problem::Truncated {
            expected: end,
            actual: file_len,
        },
        HeaderError::Bad(what) => Problem::BadHeader(what),
    })
}

enum HeaderError {
    Truncated { end: u64 },
    Bad(String),
}

impl From<String> for HeaderError {
    fn from(what: String) -> Self {
        HeaderError::Bad(what)
    }
}

fn parse_header_text(json: &[u8], file_len: u64) -> Result<SafetensorsHeader, HeaderError> {
    let data_start = 8 + json.len() as u64;
    let value: Value =
        serde_json::from_slice(json).map_err(|e| format!("header is not JSON: {e}"))?;
    let object = value
        .as_object()
        .ok_or_else(|| "header is not a JSON object".to_string())?;
    let mut header = SafetensorsHeader::default();
    for (name, entry) in object {
        if name == "__metadata__" {
            for (key, v) in entry.as_object().into_iter().flatten() {
                let text = v
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string());
                header.metadata.insert(key.clone(), text);
            }
            continue;
        }
        let dtype_name = entry["dtype"]
            .as_str()
            .ok_or_else(|| HeaderError::Bad(format!("tensor {name:?} has no dtype")))?;
        let Ok(dtype) = dtype_of(dtype_name) else {
            header
                .unsupported
                .insert(name.clone(), dtype_name.to_string());
            continue;
        };
        let shape = entry["shape"]
            .as_array()
            .ok_or_else(|| format!("tensor {name:?} has no shape"))?
            .iter()
            .map(|d| d.as_u64().map(|d| d as usize))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| format!("tensor {name:?} has a bad shape"))?;
        let offsets = entry["data_offsets"]
            .as_array()
            .filter(|o| o.len() == 2)
            .and_then(|o| Some((o[0].as_u64()?, o[1].as_u64()?)))
            .ok_or_else(|| format!("tensor {name:?} has bad data_offsets"))?;
        let (begin, end) = match (
            data_start.checked_add(offsets.0),
            data_start.checked_add(offsets.1),
        ) {
            (Some(begin), Some(end)) => (begin, end),
            _ => {
                return Err(HeaderError::Bad(format!(
                    "tensor {name:?}: data_offsets out of range"
                )))
            }
        };
        let expected = shape
            .iter()
            .try_fold(dtype.size() as u64, |a, &d| a.checked_mul(d as u64))
            .ok_or_else(|| format!("tensor {name:?} is too large"))?;
        if end < begin || end - begin != expected {
            return Err(HeaderError::Bad(format!(
                "tensor {name:?}: data_offsets span {} bytes, its shape needs {expected}",
                end.saturating_sub(begin)
            )));
        }
        if end > file_len {
            return Err(HeaderError::Truncated { end });
        }
        header.tensors.insert(
            name.clone(),
            TensorEntry {
                dtype,
                shape,
                begin,
                end,
            },
        );
    }
    // Two tensors may not share bytes (a corrupt or hand-edited header would read one
    // tensor's data as another's). Empty tensors occupy nothing.
    let mut spans: Vec<(u64, u64, &String)> = header
        .tensors
        .iter()
        .filter(|(_, t)| t.end > t.begin)
        .map(|(name, t)| (t.begin, t.end, name))
        .collect();
    spans.sort();
    for pair in spans.windows(2) {
        let ((_, first_end, first), (second_begin, _, second)) = (pair[0], pair[1]);
        if second_begin < first_end {
            return Err(HeaderError::Bad(format!(
                "tensors {first:?} and {second:?} overlap in the data (data_offsets)"
            )));
        }
    }
    Ok(header)
}

/// A tensor to write: name, shape and little-endian f32 data.
pub struct TensorToWrite<'a> {
    /// Name.
    pub name: &'a str,
    /// Shape.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub values: &'a [f32],
}

/// Serialises f32 tensors and string metadata to safetensors bytes (header padded with spaces to
/// a multiple of 8 bytes, as the format recommends).
pub fn serialise(tensors: &[TensorToWrite<'_>], metadata: &BTreeMap<String, String>) -> Vec<u8> {
    let mut object = Map::new();
    if !metadata.is_empty() {
        let meta: Map<String, Value> = metadata
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        object.insert("__metadata__".into(), Value::Object(meta));
    }
    let mut offset = 0u64;
    for tensor in tensors {
        let bytes = (tensor.values.len() * 4) as u64;
        let mut entry = Map::new();
        entry.insert("dtype".into(), Value::String(name_of(Dtype::F32).into()));
        entry.insert(
            "shape".into(),
            Value::Array(
                tensor
                    .shape
                    .iter()
                    .map(|&d| Value::from(d as u64))
                    .collect(),
            ),
        );
        entry.insert(
            "data_offsets".into(),
            Value::Array(vec![Value::from(offset), Value::from(offset + bytes)]),
        );
        object.insert(tensor.name.to_string(), Value::Object(entry));
        offset += bytes;
    }
    let mut json = serde_json::to_vec(&Value::Object(object)).expect("JSON of strings and numbers");
    while !json.len().is_multiple_of(8) {
        json.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + json.len() + offset as usize);
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    for tensor in tensors {
        for v in tensor.values {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}
