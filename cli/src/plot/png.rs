//! An RGB canvas and a minimal PNG encoder: one IDAT compressed with zlib (`flate2`, already in
//! the build through the `.npz` reader; a 960 × 400 chart takes a few tens of kB, against
//! 1.1 MB stored uncompressed before).

use super::Colour;

/// Pixels, row-major RGB, white to start.
pub struct Canvas {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
}

impl Canvas {
    /// A white canvas.
    pub fn new(width: usize, height: usize) -> Self {
        Canvas {
            width,
            height,
            pixels: vec![0xff; width * height * 3],
        }
    }

    /// Sets one pixel (ignored outside the canvas).
    pub fn set(&mut self, x: i64, y: i64, colour: Colour) {
        if x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height {
            let at = (y as usize * self.width + x as usize) * 3;
            self.pixels[at..at + 3].copy_from_slice(&colour);
        }
    }

    /// A line `width` pixels thick (a square brush stepped along the segment).
    pub fn line(&mut self, from: (f64, f64), to: (f64, f64), colour: Colour, width: f64) {
        let length = ((to.0 - from.0).powi(2) + (to.1 - from.1).powi(2)).sqrt();
        let steps = (length * 2.0).ceil().max(1.0) as usize;
        let brush = width.round().max(1.0) as i64;
        let offset = (brush - 1) / 2;
        for step in 0..=steps {
            let t = step as f64 / steps as f64;
            let x = (from.0 + (to.0 - from.0) * t).round() as i64 - offset;
            let y = (from.1 + (to.1 - from.1) * t).round() as i64 - offset;
            for dy in 0..brush {
                for dx in 0..brush {
                    self.set(x + dx, y + dy, colour);
                }
            }
        }
    }

    /// The PNG file: signature, IHDR (8-bit RGB), one IDAT (zlib), IEND.
    pub fn encode(&self) -> Vec<u8> {
        let mut raw = Vec::with_capacity((self.width * 3 + 1) * self.height);
        for row in self.pixels.chunks_exact(self.width * 3) {
            raw.push(0); // filter: none
            raw.extend_from_slice(row);
        }
        let zlib = zlib_compress(&raw);
        let mut header = Vec::new();
        header.extend_from_slice(&(self.width as u32).to_be_bytes());
        header.extend_from_slice(&(self.height as u32).to_be_bytes());
        header.extend_from_slice(&[8, 2, 0, 0, 0]);
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        chunk(&mut out, b"IHDR", &header);
        chunk(&mut out, b"IDAT", &zlib);
        chunk(&mut out, b"IEND", &[]);
        out
    }
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// CRC-32 (ISO-HDLC, polynomial 0xEDB88320), bitwise.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in bytes {
        crc ^= byte as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The zlib stream (RFC 1950) of `bytes`, default compression.
fn zlib_compress(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::ZlibEncoder::new(
        Vec::with_capacity(bytes.len() / 8),
        flate2::Compression::default(),
    );
    encoder
        .write_all(bytes)
        .expect("writing into a Vec cannot fail");
    encoder.finish().expect("writing into a Vec cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_match_known_values() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    /// The IDAT inflates back to the filtered rows, and a mostly white chart compresses well.
    #[test]
    fn idat_inflates_to_the_rows() {
        use std::io::Read;
        let canvas = Canvas::new(300, 120);
        let png = canvas.encode();
        // Signature (8) + IHDR chunk (4 + 4 + 13 + 4), then the IDAT's length and tag.
        let at = 8 + 25;
        let length = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
        assert_eq!(&png[at + 4..at + 8], b"IDAT");
        let mut raw = Vec::new();
        flate2::read::ZlibDecoder::new(&png[at + 8..at + 8 + length])
            .read_to_end(&mut raw)
            .unwrap();
        assert_eq!(raw.len(), (300 * 3 + 1) * 120);
        assert!(raw
            .chunks(300 * 3 + 1)
            .all(|row| row[0] == 0 && row[1..].iter().all(|&b| b == 255)));
        assert!(png.len() < 2_000, "{} bytes", png.len());
    }
}
