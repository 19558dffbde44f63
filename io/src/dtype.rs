//! Element types of array files and their decoding.

use half::{bf16, f16};

/// Reads a `$t` from the first `$n` bytes of `$bytes` in the given byte order.
macro_rules! read {
    ($bytes:expr, $little:expr, $t:ty, $n:expr) => {{
        let mut buffer = [0u8; $n];
        buffer.copy_from_slice(&$bytes[..$n]);
        if $little {
            <$t>::from_le_bytes(buffer)
        } else {
            <$t>::from_be_bytes(buffer)
        }
    }};
}

/// An element type as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    /// IEEE binary16.
    F16,
    /// bfloat16.
    BF16,
    /// IEEE binary32.
    F32,
    /// IEEE binary64.
    F64,
    /// Signed integers.
    I8,
    /// Signed 16-bit.
    I16,
    /// Signed 32-bit.
    I32,
    /// Signed 64-bit.
    I64,
    /// Unsigned 8-bit.
    U8,
    /// Unsigned 16-bit.
    U16,
    /// Unsigned 32-bit.
    U32,
    /// Unsigned 64-bit.
    U64,
}

impl Dtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::I8 | Dtype::U8 => 1,
            Dtype::F16 | Dtype::BF16 | Dtype::I16 | Dtype::U16 => 2,
            Dtype::F32 | Dtype::I32 | Dtype::U32 => 4,
            Dtype::F64 | Dtype::I64 | Dtype::U64 => 8,
        }
    }

    /// Whether this is a floating-point type.
    pub fn is_float(self) -> bool {
        matches!(self, Dtype::F16 | Dtype::BF16 | Dtype::F32 | Dtype::F64)
    }

    /// Decodes one element as f64 (`little`: byte order of the file).
    pub fn decode_f64(self, bytes: &[u8], little: bool) -> f64 {
        match self {
            Dtype::F16 => f16::from_bits(read!(bytes, little, u16, 2)).to_f64(),
            Dtype::BF16 => bf16::from_bits(read!(bytes, little, u16, 2)).to_f64(),
            Dtype::F32 => read!(bytes, little, f32, 4) as f64,
            Dtype::F64 => read!(bytes, little, f64, 8),
            Dtype::I8 => bytes[0] as i8 as f64,
            Dtype::U8 => bytes[0] as f64,
            Dtype::I16 => read!(bytes, little, i16, 2) as f64,
            Dtype::U16 => read!(bytes, little, u16, 2) as f64,
            Dtype::I32 => read!(bytes, little, i32, 4) as f64,
            Dtype::U32 => read!(bytes, little, u32, 4) as f64,
            Dtype::I64 => read!(bytes, little, i64, 8) as f64,
            Dtype::U64 => read!(bytes, little, u64, 8) as f64,
        }
    }

    /// Decodes one integer element exactly (`None` for float types).
    pub fn decode_integer(self, bytes: &[u8], little: bool) -> Option<i128> {
        Some(match self {
            Dtype::I8 => bytes[0] as i8 as i128,
            Dtype::U8 => bytes[0] as i128,
            Dtype::I16 => read!(bytes, little, i16, 2) as i128,
            Dtype::U16 => read!(bytes, little, u16, 2) as i128,
            Dtype::I32 => read!(bytes, little, i32, 4) as i128,
            Dtype::U32 => read!(bytes, little, u32, 4) as i128,
            Dtype::I64 => read!(bytes, little, i64, 8) as i128,
            Dtype::U64 => read!(bytes, little, u64, 8) as i128,
            _ => return None,
        })
    }

    /// Decodes a run of elements to f32 (the float types' fast paths; integers through f64).
    pub fn decode_into_f32(self, bytes: &[u8], little: bool, out: &mut [f32]) {
        let size = self.size();
        match (self, little) {
            (Dtype::F32, true) => {
                for (o, chunk) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                    *o = f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
                }
            }
            (Dtype::F16, true) => {
                for (o, chunk) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *o = f16::from_bits(u16::from_le_bytes([chunk[0], chunk[1]])).to_f32();
                }
            }
            _ => {
                for (o, chunk) in out.iter_mut().zip(bytes.chunks_exact(size)) {
                    *o = self.decode_f64(chunk, little) as f32;
                }
            }
        }
    }
}
