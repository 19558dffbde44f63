//! The readers on well-formed files of every supported kind, on every bad input the CLI must
//! report, and on arbitrary bytes (proptest): a clear error, never a panic.

use std::io::Write;
use std::path::PathBuf;

use difftopk_io::{
    npy_f32_bytes, npy_i64_bytes, read_labels, safetensors, ArrayFile, Embeddings, Problem,
};
use proptest::prelude::*;

/// A test thread's scratch directory, removed when the thread ends (kept when its test fails,
/// for a look at the files it read).
struct ThreadScratch(PathBuf);

impl Drop for ThreadScratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

thread_local! {
    static SCRATCH: ThreadScratch = ThreadScratch(std::env::temp_dir().join(format!(
        "difftopk-io-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    )));
}

fn temp_dir() -> PathBuf {
    let dir = SCRATCH.with(|scratch| scratch.0.clone());
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(name: &str, bytes: &[u8]) -> String {
    let path = temp_dir().join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_string_lossy().into_owned()
}

/// A .npy file with any descr, order and header version.
fn npy(descr: &str, fortran: bool, shape: &[usize], data: &[u8], version: u8) -> Vec<u8> {
    let shape_text = if shape.len() == 1 {
        format!("({},)", shape[0])
    } else {
        format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let order = if fortran { "True" } else { "False" };
    let mut dict =
        format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {shape_text}, }}");
    dict.push('\n');
    let mut out = b"\x93NUMPY".to_vec();
    out.push(version);
    out.push(0);
    if version == 1 {
        out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(dict.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out.extend_from_slice(data);
    out
}

const MATRIX: [f32; 6] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // [[1, 2, 3], [4, 5, 6]]

fn load(spec: &str) -> Vec<f32> {
    Embeddings::open(spec).unwrap().load().unwrap()
}

#[test]
fn npy_float_types_orders_and_versions() {
    let f32_le: Vec<u8> = MATRIX.iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(
        load(&write("a.npy", &npy_f32_bytes(&[2, 3], &MATRIX))),
        MATRIX
    );
    assert_eq!(
        load(&write("v2.npy", &npy("<f4", false, &[2, 3], &f32_le, 2))),
        MATRIX
    );
    assert_eq!(
        load(&write("v3.npy", &npy("<f4", false, &[2, 3], &f32_le, 3))),
        MATRIX
    );
    let f64_be: Vec<u8> = MATRIX
        .iter()
        .flat_map(|&v| (v as f64).to_be_bytes())
        .collect();
    assert_eq!(
        load(&write("be.npy", &npy(">f8", false, &[2, 3], &f64_be, 1))),
        MATRIX
    );
    let f16_le: Vec<u8> = MATRIX
        .iter()
        .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
        .collect();
    assert_eq!(
        load(&write("h.npy", &npy("<f2", false, &[2, 3], &f16_le, 1))),
        MATRIX
    );
    let f16_be: Vec<u8> = MATRIX
        .iter()
        .flat_map(|&v| half::f16::from_f32(v).to_be_bytes())
        .collect();
    assert_eq!(
        load(&write("hbe.npy", &npy(">f2", false, &[2, 3], &f16_be, 1))),
        MATRIX
    );
    // Fortran order: columns stored one after the other.
    let columns = [1.0f32, 4.0, 2.0, 5.0, 3.0, 6.0];
    let fortran: Vec<u8> = columns.iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(
        load(&write("f.npy", &npy("<f4", true, &[2, 3], &fortran, 1))),
        MATRIX
    );
    let embeddings =
        Embeddings::open(&write("rows.npy", &npy_f32_bytes(&[2, 3], &MATRIX))).unwrap();
    let mut row = [0f32; 3];
    embeddings.read_rows(1, &mut row).unwrap();
    assert_eq!(row, [4.0, 5.0, 6.0]);
    let mut picked = [0f32; 6];
    embeddings.read_indexed(&[1, 0], &mut picked).unwrap();
    assert_eq!(picked, [4.0, 5.0, 6.0, 1.0, 2.0, 3.0]);
}

#[test]
fn labels_of_every_integer_type() {
    let labels = [3i64, 0, 2];
    assert_eq!(
        read_labels(&write("y.npy", &npy_i64_bytes(&labels))).unwrap(),
        vec![3, 0, 2]
    );
    for (descr, size) in [
        ("<i4", 4),
        (">i4", 4),
        ("|u1", 1),
        ("|i1", 1),
        ("<u2", 2),
        ("<u8", 8),
        (">i8", 8),
    ] {
        let big = descr.starts_with('>');
        let data: Vec<u8> = labels
            .iter()
            .flat_map(|&v| {
                let bytes = if big {
                    (v as i128).to_be_bytes()
                } else {
                    (v as i128).to_le_bytes()
                };
                if big {
                    bytes[16 - size..].to_vec()
                } else {
                    bytes[..size].to_vec()
                }
            })
            .collect();
        let spec = write(
            &format!("y{size}{}.npy", if big { "b" } else { "" }),
            &npy(descr, false, &[3], &data, 1),
        );
        assert_eq!(read_labels(&spec).unwrap(), vec![3, 0, 2], "{descr}");
    }
}

#[test]
fn npz_archives_by_name_stored_and_deflated() {
    for method in [
        zip::CompressionMethod::Stored,
        zip::CompressionMethod::Deflated,
    ] {
        let path = temp_dir().join(format!("arrays-{method:?}.npz"));
        let mut archive = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        let options = zip::write::SimpleFileOptions::default().compression_method(method);
        archive.start_file("X.npy", options).unwrap();
        archive.write_all(&npy_f32_bytes(&[2, 3], &MATRIX)).unwrap();
        archive.start_file("y.npy", options).unwrap();
        archive.write_all(&npy_i64_bytes(&[1, 0])).unwrap();
        archive.finish().unwrap();
        let path = path.to_string_lossy().into_owned();
        assert_eq!(load(&format!("{path}:X")), MATRIX);
        assert_eq!(read_labels(&format!("{path}:y")).unwrap(), vec![1, 0]);
        let error = Embeddings::open(&path).unwrap_err();
        assert!(
            matches!(error.problem, Problem::AmbiguousArray(_)),
            "{error}"
        );
        let error = Embeddings::open(&format!("{path}:Z")).unwrap_err();
        assert!(
            matches!(error.problem, Problem::MissingArray { .. }),
            "{error}"
        );
    }
}

#[test]
fn overlapping_safetensors_are_refused() {
    let json = br#"{"a":{"dtype":"F32","shape":[1,2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1,2],"data_offsets":[4,12]}}"#;
    let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(json);
    bytes.extend_from_slice(&[0u8; 12]);
    let path = write("overlap.safetensors", &bytes);
    let error = Embeddings::open(&format!("{path}:a")).unwrap_err();
    assert!(
        matches!(&error.problem, Problem::BadHeader(what) if what.contains("\"a\" and \"b\" overlap")),
        "{error}"
    );
    // Adjacent tensors are fine.
    let json = br#"{"a":{"dtype":"F32","shape":[1,2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1,1],"data_offsets":[8,12]}}"#;
    let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(json);
    bytes.extend_from_slice(&[0u8; 12]);
    let path = write("adjacent.safetensors", &bytes);
    assert_eq!(load(&format!("{path}:a")), vec![0.0, 0.0]);
}

#[test]
fn safetensors_by_name() {
    let bytes = safetensors::serialise(
        &[
            safetensors::TensorToWrite {
                name: "embeddings",
                shape: vec![2, 3],
                values: &MATRIX,
            },
            safetensors::TensorToWrite {
                name: "other",
                shape: vec![1],
                values: &[7.0],
            },
        ],
        &Default::default(),
    );
    let path = write("e.safetensors", &bytes);
    assert_eq!(load(&format!("{path}:embeddings")), MATRIX);
    assert!(matches!(
        Embeddings::open(&path).unwrap_err().problem,
        Problem::AmbiguousArray(_)
    ));
    let truncated = write("t.safetensors", &bytes[..bytes.len() - 3]);
    let error = Embeddings::open(&format!("{truncated}:embeddings")).unwrap_err();
    assert!(
        matches!(error.problem, Problem::Truncated { .. }),
        "{error}"
    );
}

#[test]
fn every_bad_input_is_named() {
    let missing = temp_dir().join("nope.npy").to_string_lossy().into_owned();
    let error = Embeddings::open(&missing).unwrap_err();
    assert!(matches!(error.problem, Problem::Unreadable(_)));
    assert!(error.to_string().starts_with(&missing), "{error}");

    let empty = write("empty.npy", b"");
    assert_eq!(
        Embeddings::open(&empty).unwrap_err().problem,
        Problem::Empty
    );

    let text = write("text.npy", b"this is a csv,1,2,3\n");
    assert_eq!(
        Embeddings::open(&text).unwrap_err().problem,
        Problem::UnknownFormat
    );

    let full = npy_f32_bytes(&[2, 3], &MATRIX);
    let truncated = write("trunc.npy", &full[..full.len() - 5]);
    let error = Embeddings::open(&truncated).unwrap_err();
    assert_eq!(
        error.problem,
        Problem::Truncated {
            expected: 24,
            actual: 19
        },
        "{error}"
    );

    // More data than the shape describes: the header and the data disagree.
    let mut longer = full.clone();
    longer.extend_from_slice(&[0u8; 8]);
    let trailing = write("trailing.npy", &longer);
    let error = Embeddings::open(&trailing).unwrap_err();
    assert_eq!(
        error.problem,
        Problem::TrailingData {
            expected: 24,
            actual: 32
        },
        "{error}"
    );
    assert!(
        error.to_string().contains("header and data disagree"),
        "{error}"
    );

    let header_cut = write("cut.npy", &full[..40]);
    assert!(matches!(
        Embeddings::open(&header_cut).unwrap_err().problem,
        Problem::BadHeader(_)
    ));

    let complex = write("c.npy", &npy("<c8", false, &[2], &[0u8; 16], 1));
    assert!(matches!(
        Embeddings::open(&complex).unwrap_err().problem,
        Problem::BadHeader(_)
    ));

    let one_d = write("1d.npy", &npy_f32_bytes(&[6], &MATRIX));
    let error = Embeddings::open(&one_d).unwrap_err();
    assert!(matches!(
        error.problem,
        Problem::Dimensions { expected: 2, .. }
    ));
    assert!(error.to_string().contains("[rows, dimension]"), "{error}");

    let int_embeddings = write("ie.npy", &npy_i64_bytes(&[1, 2]));
    assert!(matches!(
        Embeddings::open(&int_embeddings).unwrap_err().problem,
        Problem::Dimensions { .. }
    ));

    let float_labels = write("fl.npy", &npy_f32_bytes(&[2], &[1.0, 2.0]));
    assert!(matches!(
        read_labels(&float_labels).unwrap_err().problem,
        Problem::UnsupportedDtype(_)
    ));

    let negative = write("neg.npy", &npy_i64_bytes(&[0, 3, -1]));
    assert_eq!(
        read_labels(&negative).unwrap_err().problem,
        Problem::InvalidLabel {
            row: 2,
            value: "-1".into()
        }
    );

    let mut values = MATRIX;
    values[4] = f32::NAN;
    let nan = write("nan.npy", &npy_f32_bytes(&[2, 3], &values));
    let error = Embeddings::open(&nan).unwrap().load().unwrap_err();
    assert_eq!(error.problem, Problem::NonFinite { row: 1, column: 1 });
    assert!(error.to_string().contains("row 1, column 1"), "{error}");

    let no_rows = write("zero.npy", &npy_f32_bytes(&[0, 3], &[]));
    assert_eq!(
        Embeddings::open(&no_rows).unwrap_err().problem,
        Problem::NoRows
    );
}

/// Opens and fully reads whatever `bytes` are, as embeddings and as labels.
fn read_anything(bytes: &[u8], name: &str) {
    let spec = write(name, bytes);
    if let Ok(array) = ArrayFile::open(&spec) {
        if let Ok(embeddings) = Embeddings::from_array(array) {
            if embeddings.rows().saturating_mul(embeddings.dimension()) < 1 << 20 {
                let _ = embeddings.load();
            }
        }
    }
    let _ = read_labels(&spec);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        read_anything(&bytes, "fuzz-any.bin");
    }

    #[test]
    fn corrupted_npy_never_panics(position in 0usize..150, value in any::<u8>(), cut in 0usize..160) {
        let mut bytes = npy_f32_bytes(&[2, 3], &MATRIX);
        let p = position % bytes.len();
        bytes[p] = value;
        bytes.truncate(cut.max(1).min(bytes.len()));
        read_anything(&bytes, "fuzz-npy.npy");
    }

    #[test]
    fn corrupted_safetensors_never_panics(position in 0usize..200, value in any::<u8>()) {
        let mut bytes = safetensors::serialise(
            &[safetensors::TensorToWrite { name: "x", shape: vec![2, 3], values: &MATRIX }],
            &Default::default(),
        );
        let p = position % bytes.len();
        bytes[p] = value;
        read_anything(&bytes, "fuzz.safetensors");
    }
}

#[test]
fn hostile_headers_are_errors_not_crashes() {
    // safetensors data_offsets near u64::MAX: an overflow in the offset arithmetic before.
    let json = br#"{"x":{"dtype":"F32","shape":[1,1],"data_offsets":[18446744073709551615,3]}}"#;
    let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(json);
    bytes.extend_from_slice(&[0u8; 8]);
    let spec = write("offsets.safetensors", &bytes);
    assert!(matches!(
        Embeddings::open(&spec).unwrap_err().problem,
        Problem::BadHeader(_)
    ));
    // A very wide row: validation reads in blocks bounded by bytes, not 4096 rows of it.
    let wide = vec![0.5f32; 2_000_000];
    let spec = write("wide.npy", &npy_f32_bytes(&[1, 2_000_000], &wide));
    let embeddings = Embeddings::open(&spec).unwrap();
    assert_eq!(embeddings.rows_per_read(), 1);
    embeddings.validate().unwrap();
    // An npz entry whose header promises more than the entry holds: a clean truncation error.
    let path = temp_dir().join("short.npz");
    let mut archive = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    archive
        .start_file("X.npy", zip::write::SimpleFileOptions::default())
        .unwrap();
    let full = npy_f32_bytes(&[2, 3], &MATRIX);
    archive.write_all(&full[..full.len() - 4]).unwrap();
    archive.finish().unwrap();
    let error = Embeddings::open(&path.to_string_lossy()).unwrap_err();
    assert!(
        matches!(error.problem, Problem::Truncated { .. }),
        "{error}"
    );
    // And one that holds more than its header describes: refused, not read in part.
    let path = temp_dir().join("long.npz");
    let mut archive = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    archive
        .start_file("X.npy", zip::write::SimpleFileOptions::default())
        .unwrap();
    archive.write_all(&full).unwrap();
    archive.write_all(&[0u8; 12]).unwrap();
    archive.finish().unwrap();
    let error = Embeddings::open(&path.to_string_lossy()).unwrap_err();
    assert_eq!(
        error.problem,
        Problem::TrailingData {
            expected: 24,
            actual: 36
        },
        "{error}"
    );
}

#[test]
fn a_tensor_of_unknown_dtype_does_not_spoil_the_others() {
    let json = br#"{"mask":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]},"x":{"dtype":"F32","shape":[1,2],"data_offsets":[2,10]}}"#;
    let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(json);
    bytes.extend_from_slice(&[1, 0]);
    bytes.extend_from_slice(&1.5f32.to_le_bytes());
    bytes.extend_from_slice(&2.5f32.to_le_bytes());
    let path = write("mixed.safetensors", &bytes);
    assert_eq!(load(&format!("{path}:x")), vec![1.5, 2.5]);
    let error = Embeddings::open(&format!("{path}:mask")).unwrap_err();
    assert!(
        matches!(error.problem, Problem::UnsupportedDtype(_)),
        "{error}"
    );
    assert!(error.to_string().contains("BOOL"), "{error}");
}
