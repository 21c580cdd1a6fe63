//! A GGUF writer for tests: small, possibly malformed, files built in memory.

use std::path::Path;

use super::format::{DEFAULT_ALIGNMENT, GgufValue};

/// Writes a GGUF file: used by tests to build small, possibly malformed, files.
///
/// `metadata` values are written with their own types; `tensors` are (name, ggml type id, ne
/// innermost first, bytes), laid out in order at the default alignment.
pub fn write_file(
    path: &Path,
    metadata: &[(&str, GgufValue)],
    tensors: &[(&str, u32, Vec<u64>, Vec<u8>)],
) -> std::io::Result<()> {
    std::fs::write(path, to_bytes(metadata, tensors))
}

/// The bytes [`write_file`] writes.
pub fn to_bytes<K: AsRef<str>, N: AsRef<str>>(
    metadata: &[(K, GgufValue)],
    tensors: &[(N, u32, Vec<u64>, Vec<u8>)],
) -> Vec<u8> {
    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    fn type_id(v: &GgufValue) -> u32 {
        match v {
            GgufValue::U8(_) => 0,
            GgufValue::I8(_) => 1,
            GgufValue::U16(_) => 2,
            GgufValue::I16(_) => 3,
            GgufValue::U32(_) => 4,
            GgufValue::I32(_) => 5,
            GgufValue::F32(_) => 6,
            GgufValue::Bool(_) => 7,
            GgufValue::Str(_) => 8,
            GgufValue::Array(_) => 9,
            GgufValue::U64(_) => 10,
            GgufValue::I64(_) => 11,
            GgufValue::F64(_) => 12,
        }
    }
    fn value(out: &mut Vec<u8>, v: &GgufValue) {
        match v {
            GgufValue::U8(x) => out.push(*x),
            GgufValue::I8(x) => out.push(*x as u8),
            GgufValue::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
            GgufValue::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
            GgufValue::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
            GgufValue::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
            GgufValue::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
            GgufValue::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
            GgufValue::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
            GgufValue::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
            GgufValue::Bool(x) => out.push(*x as u8),
            GgufValue::Str(s) => string(out, s),
            GgufValue::Array(items) => {
                let elem = items.first().map(type_id).unwrap_or(0);
                out.extend_from_slice(&elem.to_le_bytes());
                out.extend_from_slice(&(items.len() as u64).to_le_bytes());
                for item in items {
                    value(out, item);
                }
            }
        }
    }
    let align = DEFAULT_ALIGNMENT as usize;
    let mut out = b"GGUF".to_vec();
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (k, v) in metadata {
        string(&mut out, k.as_ref());
        out.extend_from_slice(&type_id(v).to_le_bytes());
        value(&mut out, v);
    }
    let mut offset = 0usize;
    for (name, ty, ne, bytes) in tensors {
        string(&mut out, name.as_ref());
        out.extend_from_slice(&(ne.len() as u32).to_le_bytes());
        for n in ne {
            out.extend_from_slice(&n.to_le_bytes());
        }
        out.extend_from_slice(&ty.to_le_bytes());
        out.extend_from_slice(&(offset as u64).to_le_bytes());
        offset += bytes.len().div_ceil(align) * align;
    }
    out.resize(out.len().div_ceil(align) * align, 0);
    for (_, _, _, bytes) in tensors {
        out.extend_from_slice(bytes);
        out.resize(out.len().div_ceil(align) * align, 0);
    }
    out
}
