//! NumPy `.npy` arrays as Qiskit's `RuntimeEncoder` / `RuntimeDecoder` carry them:
//! `{"__type__": "ndarray", "__value__": base64(zlib(np.save(arr)))}`. Written to match `np.save`
//! byte for byte (format 1.0, header padded to a multiple of 64 bytes); read for formats 1.0 to
//! 3.0, little-endian numeric dtypes, C order only.

use base64::Engine as _;
use serde_json::{json, Value};
use std::io::{Read, Write};

const MAGIC: &[u8] = b"\x93NUMPY";

/// Largest decompressed array accepted from a client.
pub const MAX_ARRAY_BYTES: usize = 64 << 20;

fn shape_text(shape: &[usize]) -> String {
    match shape {
        [] => "()".into(),
        [n] => format!("({n},)"),
        _ => format!("({})", shape.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")),
    }
}

/// The bytes `np.save` writes for an array of `descr` (`'|u1'`, `'<f8'`), `shape` and raw data.
pub fn encode(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {}, }}", shape_text(shape));
    // Magic (6) + version (2) + header length (2) + header, ending in '\n', is a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// `{"__type__": "ndarray", "__value__": base64(zlib(npy))}`.
pub fn tagged(npy: &[u8]) -> Value {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = z.write_all(npy);
    let compressed = z.finish().unwrap_or_default();
    json!({"__type__": "ndarray", "__value__": base64::engine::general_purpose::STANDARD.encode(compressed)})
}

/// A float64 array as a tagged ndarray.
pub fn f64_array(shape: &[usize], values: &[f64]) -> Value {
    let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    tagged(&encode("<f8", shape, &data))
}

/// A uint8 array as a tagged ndarray.
pub fn u8_array(shape: &[usize], values: &[u8]) -> Value {
    tagged(&encode("|u1", shape, values))
}

/// A decoded numeric array: shape and values (row-major), as f64.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    pub shape: Vec<usize>,
    pub values: Vec<f64>,
}

/// Read the `__value__` of a tagged ndarray: base64 of zlib of `.npy` bytes.
pub fn decode_tagged_value(b64: &str) -> Result<Array, String> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| format!("ndarray: invalid base64: {e}"))?;
    let mut bytes = Vec::new();
    flate2::read::ZlibDecoder::new(raw.as_slice())
        .take(MAX_ARRAY_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("ndarray: invalid zlib data: {e}"))?;
    if bytes.len() > MAX_ARRAY_BYTES {
        return Err(format!("ndarray: more than {MAX_ARRAY_BYTES} bytes"));
    }
    decode(&bytes)
}

/// Parse `.npy` bytes.
pub fn decode(bytes: &[u8]) -> Result<Array, String> {
    let bad = |m: &str| format!("ndarray: {m}");
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(bad("not NPY data (missing magic)"));
    }
    let (header_len, start): (usize, usize) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        v => return Err(format!("ndarray: NPY format version {v} is not supported")),
    };
    let end = start.checked_add(header_len).filter(|&e| e <= bytes.len()).ok_or_else(|| bad("truncated header"))?;
    let header = std::str::from_utf8(&bytes[start..end]).map_err(|_| bad("header is not text"))?;
    let descr = dict_str(header, "descr").ok_or_else(|| bad("header has no 'descr'"))?;
    if dict_raw(header, "fortran_order").map(str::trim) != Some("False") {
        return Err(bad("only C-ordered arrays (fortran_order False) are supported"));
    }
    let shape = parse_shape(dict_raw(header, "shape").ok_or_else(|| bad("header has no 'shape'"))?)
        .ok_or_else(|| bad("malformed shape"))?;
    let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| bad("shape too large"))?;
    let data = &bytes[end..];
    let (size, read): (usize, fn(&[u8]) -> f64) = match descr {
        "<f8" => (8, |b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8]))),
        "<f4" => (4, |b| f32::from_le_bytes(b.try_into().unwrap_or([0; 4])) as f64),
        "<i8" => (8, |b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f64),
        "<i4" => (4, |b| i32::from_le_bytes(b.try_into().unwrap_or([0; 4])) as f64),
        "|u1" | "|i1" | "|b1" => (1, |b| b[0] as f64),
        other => return Err(format!("ndarray: dtype '{other}' is not supported (use float64)")),
    };
    if count.checked_mul(size) != Some(data.len()) {
        return Err(format!("ndarray: {} data bytes do not hold shape {:?} of '{descr}'", data.len(), shape));
    }
    let values: Vec<f64> = data.chunks_exact(size).map(read).collect();
    Ok(Array { shape, values })
}

/// The raw text after `'key':` in a Python dict literal, up to the next top-level comma.
fn dict_raw<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("'{key}':");
    let rest = &header[header.find(&pat)? + pat.len()..];
    let mut depth = 0i32;
    for (i, c) in rest.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' | '}' if depth == 0 => return Some(&rest[..i]),
            _ => {}
        }
    }
    None
}

fn dict_str<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    dict_raw(header, key)?.trim().strip_prefix('\'')?.strip_suffix('\'')
}

fn parse_shape(s: &str) -> Option<Vec<usize>> {
    let inner = s.trim().strip_prefix('(')?.strip_suffix(')')?;
    inner.split(',').map(str::trim).filter(|p| !p.is_empty()).map(|p| p.parse().ok()).collect()
}

/// Nest row-major `values` into JSON lists of `shape` (a bare number for shape `()`).
pub fn nest(shape: &[usize], values: &[f64]) -> Value {
    fn rec(shape: &[usize], values: &[f64], at: &mut usize) -> Value {
        match shape.split_first() {
            None => {
                let v = values.get(*at).copied().unwrap_or(0.0);
                *at += 1;
                json!(v)
            }
            Some((&d, rest)) => Value::Array((0..d).map(|_| rec(rest, values, at)).collect()),
        }
    }
    rec(shape, values, &mut 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_array(doc: &Value, pointer: &str) -> Vec<u8> {
        let b64 = doc.pointer(pointer).and_then(Value::as_str).unwrap();
        let raw = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
        let mut out = Vec::new();
        flate2::read::ZlibDecoder::new(raw.as_slice()).read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn encoding_matches_np_save_byte_for_byte() {
        let doc: Value = serde_json::from_str(include_str!("testdata/example_sampler_result.json")).unwrap();
        let want =
            fixture_array(&doc, "/__value__/pub_results/0/__value__/data/__value__/fields/c/__value__/array/__value__");
        let data: Vec<u8> = (0..1024).map(|i| if i % 2 == 0 { 0 } else { 3 }).collect();
        assert_eq!(encode("|u1", &[1024, 1], &data), want);
        let doc: Value = serde_json::from_str(include_str!("testdata/example_estimator_result.json")).unwrap();
        let want = fixture_array(&doc, "/__value__/pub_results/0/__value__/data/__value__/fields/evs/__value__");
        assert_eq!(encode("<f8", &[], &1.0f64.to_le_bytes()), want);
    }

    #[test]
    fn arrays_round_trip_through_the_tagged_form() {
        let v = f64_array(&[2, 1], &[0.1, 0.2]);
        let a = decode_tagged_value(v["__value__"].as_str().unwrap()).unwrap();
        assert_eq!(a, Array { shape: vec![2, 1], values: vec![0.1, 0.2] });
        assert_eq!(nest(&a.shape, &a.values), json!([[0.1], [0.2]]));
        let empty = decode(&encode("<f8", &[0], &[])).unwrap();
        assert_eq!((empty.shape, nest(&[0], &[])), (vec![0], json!([])));
        assert_eq!(nest(&[], &[2.5]), json!(2.5));
    }

    #[test]
    fn malformed_arrays_are_refused() {
        assert!(decode(b"garbage").is_err());
        assert!(decode_tagged_value("!!!").is_err());
        // Data shorter than the shape says.
        let mut b = encode("<f8", &[3], &[0; 16]);
        assert!(decode(&b).unwrap_err().contains("do not hold"));
        b = encode("<c16", &[1], &[0; 16]);
        assert!(decode(&b).unwrap_err().contains("not supported"));
        let fortran = encode("<f8", &[1], &[0; 8]);
        let s = String::from_utf8_lossy(&fortran).replace("False", "True ");
        assert!(decode(s.as_bytes()).is_err());
    }
}
