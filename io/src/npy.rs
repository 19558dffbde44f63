//! The NumPy `.npy` header (format versions 1.0, 2.0 and 3.0).
//!
//! Layout: the magic `\x93NUMPY`, major and minor version bytes, the header length (u16 LE in
//! version 1, u32 LE in versions 2 and 3), then a Python dict literal such as
//! `{'descr': '<f4', 'fortran_order': False, 'shape': (10003, 384), }` padded with spaces and a
//! newline; the data follows, in C (row-major) or Fortran (column-major) order.

use crate::Dtype;

/// The magic bytes every `.npy` file starts with.
pub const MAGIC: &[u8] = b"\x93NUMPY";

/// A parsed `.npy` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NpyHeader {
    /// Element type.
    pub dtype: Dtype,
    /// Little-endian data (`<`, `|`, `=` on little-endian machines) or big-endian (`>`).
    pub little_endian: bool,
    /// Column-major data.
    pub fortran_order: bool,
    /// The array's shape.
    pub shape: Vec<usize>,
    /// Byte offset of the data from the start of the file.
    pub data_offset: u64,
}

impl NpyHeader {
    /// Elements in the array (`None` on overflow).
    pub fn element_count(&self) -> Option<usize> {
        self.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
    }

    /// Bytes of data the header promises (`None` on overflow).
    pub fn data_len(&self) -> Option<u64> {
        self.element_count()?
            .checked_mul(self.dtype.size())
            .map(|n| n as u64)
    }
}

/// Bytes of the file needed to parse the header: at least 10, at most 10 + 65535 (v1) or
/// 12 + 2³²−1 (v2+). `prefix` must hold at least the first 12 bytes (or the whole file).
pub fn header_len(prefix: &[u8]) -> Result<usize, String> {
    if prefix.len() < 10 || &prefix[..6] != MAGIC {
        return Err("missing the \\x93NUMPY magic".into());
    }
    match prefix[6] {
        1 => Ok(10 + u16::from_le_bytes([prefix[8], prefix[9]]) as usize),
        2 | 3 => {
            if prefix.len() < 12 {
                return Err("file ends inside the header".into());
            }
            let len = u32::from_le_bytes([prefix[8], prefix[9], prefix[10], prefix[11]]);
            Ok(12 + len as usize)
        }
        major => Err(format!("unsupported .npy format version {major}")),
    }
}

/// Parses the header from the first [`header_len`] bytes of the file.
pub fn parse_header(bytes: &[u8]) -> Result<NpyHeader, String> {
    let total = header_len(bytes)?;
    if bytes.len() < total {
        return Err("file ends inside the header".into());
    }
    let start = if bytes[6] == 1 { 10 } else { 12 };
    let text =
        std::str::from_utf8(&bytes[start..total]).map_err(|_| "header is not text".to_string())?;
    let descr = string_value(text, "descr")?;
    let (dtype, little_endian) = parse_descr(&descr)?;
    let fortran_order = match raw_value(text, "fortran_order")? {
        v if v.starts_with("True") => true,
        v if v.starts_with("False") => false,
        _ => return Err("fortran_order is neither True nor False".into()),
    };
    let shape_text = raw_value(text, "shape")?;
    let shape_text = shape_text
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| "shape is not a tuple".to_string())?;
    let shape = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.trim_end_matches('L')
                .parse::<usize>()
                .map_err(|_| format!("shape entry {s:?} is not a size"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(NpyHeader {
        dtype,
        little_endian,
        fortran_order,
        shape,
        data_offset: total as u64,
    })
}

/// The text after `'key':`, trimmed.
fn raw_value<'a>(text: &'a str, key: &str) -> Result<&'a str, String> {
    let pattern_single = format!("'{key}'");
    let pattern_double = format!("\"{key}\"");
    let at = text
        .find(&pattern_single)
        .or_else(|| text.find(&pattern_double))
        .ok_or_else(|| format!("no '{key}' entry"))?;
    let rest = &text[at + key.len() + 2..];
    let rest = rest.trim_start();
    let rest = rest
        .strip_prefix(':')
        .ok_or_else(|| format!("no ':' after '{key}'"))?;
    Ok(rest.trim_start())
}

fn string_value(text: &str, key: &str) -> Result<String, String> {
    let rest = raw_value(text, key)?;
    let quote = rest
        .chars()
        .next()
        .filter(|c| *c == '\'' || *c == '"')
        .ok_or_else(|| format!("'{key}' is not a string (structured dtypes are not supported)"))?;
    let inner = &rest[1..];
    let end = inner
        .find(quote)
        .ok_or_else(|| format!("unterminated '{key}'"))?;
    Ok(inner[..end].to_string())
}

/// `'<f4'` → (F32, little endian). Byte order `|` (not applicable) and `=` (native) read as little
/// endian, the byte order of every platform this tool runs on.
pub fn parse_descr(descr: &str) -> Result<(Dtype, bool), String> {
    let mut chars = descr.chars();
    let (order, code) = match chars.next() {
        Some(c @ ('<' | '>' | '|' | '=')) => (c, chars.as_str()),
        _ => ('=', descr),
    };
    let dtype = match code {
        "f2" | "e" => Dtype::F16,
        "f4" | "f" => Dtype::F32,
        "f8" | "d" => Dtype::F64,
        "i1" | "b" => Dtype::I8,
        "i2" | "h" => Dtype::I16,
        "i4" | "i" => Dtype::I32,
        "i8" | "q" => Dtype::I64,
        "u1" | "B" => Dtype::U8,
        "u2" | "H" => Dtype::U16,
        "u4" | "I" => Dtype::U32,
        "u8" | "Q" => Dtype::U64,
        other => return Err(format!("unsupported dtype {other:?} (descr {descr:?})")),
    };
    Ok((dtype, order != '>'))
}

/// A version-1.0 header for a C-order little-endian array (for writers), padded so that the data
/// starts at a multiple of 64 bytes.
pub fn write_header(descr: &str, shape: &[usize]) -> Vec<u8> {
    let shape_text = match shape {
        [single] => format!("({single},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut dict =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_text}, }}");
    let unpadded = 10 + dict.len() + 1;
    dict.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    dict.push('\n');
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}
