//! Element types of stored tensors, their sizes, and conversion of raw little-endian bytes to `f64`.

use std::fmt;

/// The element type of a stored tensor.
///
/// Float types are read by every checkpoint reader; the integer and boolean types only
/// appear so that a file holding them (token ids, masks) can still be indexed. The GGUF
/// block-quantised types are dequantised by the GGUF reader.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum DType {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U64,
    U32,
    U16,
    U8,
    Bool,
    /// 8-bit floats (FP8 checkpoints): read with the scales their config names
    /// (`checkpoint/fp8.rs`), never on their own.
    F8_E4M3,
    F8_E5M2,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
}

impl DType {
    /// Parses a safetensors header dtype string ("F32", "BF16", ...).
    pub fn from_safetensors(s: &str) -> Option<DType> {
        Some(match s {
            "F64" => DType::F64,
            "F32" => DType::F32,
            "F16" => DType::F16,
            "BF16" => DType::BF16,
            "I64" => DType::I64,
            "I32" => DType::I32,
            "I16" => DType::I16,
            "I8" => DType::I8,
            "U64" => DType::U64,
            "U32" => DType::U32,
            "U16" => DType::U16,
            "U8" => DType::U8,
            "BOOL" => DType::Bool,
            "F8_E4M3" => DType::F8_E4M3,
            "F8_E5M2" => DType::F8_E5M2,
            _ => return None,
        })
    }

    /// Bytes per element for the plain (non block-quantised) types.
    pub fn element_size(self) -> Option<usize> {
        Some(match self {
            DType::F64 | DType::I64 | DType::U64 => 8,
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::F16 | DType::BF16 | DType::I16 | DType::U16 => 2,
            DType::I8 | DType::U8 | DType::Bool | DType::F8_E4M3 | DType::F8_E5M2 => 1,
            _ => return None,
        })
    }

    /// True for the float types whose bytes [`decode_f64`] converts.
    pub fn is_plain_float(self) -> bool {
        matches!(self, DType::F64 | DType::F32 | DType::F16 | DType::BF16)
    }

    /// The name as written in reports and in the `models/` table.
    pub fn name(self) -> &'static str {
        match self {
            DType::F64 => "F64",
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::I64 => "I64",
            DType::I32 => "I32",
            DType::I16 => "I16",
            DType::I8 => "I8",
            DType::U64 => "U64",
            DType::U32 => "U32",
            DType::U16 => "U16",
            DType::U8 => "U8",
            DType::Bool => "BOOL",
            DType::F8_E4M3 => "F8_E4M3",
            DType::F8_E5M2 => "F8_E5M2",
            DType::Q4_0 => "Q4_0",
            DType::Q4_1 => "Q4_1",
            DType::Q5_0 => "Q5_0",
            DType::Q5_1 => "Q5_1",
            DType::Q8_0 => "Q8_0",
            DType::Q8_1 => "Q8_1",
            DType::Q2_K => "Q2_K",
            DType::Q3_K => "Q3_K",
            DType::Q4_K => "Q4_K",
            DType::Q5_K => "Q5_K",
            DType::Q6_K => "Q6_K",
            DType::Q8_K => "Q8_K",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Converts little-endian bytes of a plain float type to `f64`, appending to `out`.
///
/// Returns `None` when `dtype` is not a plain float type or `bytes` is not a whole number of
/// elements; the caller turns that into an error naming the tensor.
pub fn decode_f64(dtype: DType, bytes: &[u8], out: &mut Vec<f64>) -> Option<()> {
    let size = dtype.element_size()?;
    if !dtype.is_plain_float() || !bytes.len().is_multiple_of(size) {
        return None;
    }
    out.reserve(bytes.len() / size);
    match dtype {
        DType::F64 => out.extend(
            bytes
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().expect("chunk of 8"))),
        ),
        DType::F32 => out.extend(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("chunk of 4")) as f64),
        ),
        DType::F16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f64()),
        ),
        DType::BF16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f64()),
        ),
        _ => return None,
    }
    Some(())
}

/// One FP8 value: E4M3 as `float8_e4m3fn` (bias 7, no infinities, `S.1111.111` is NaN) or E5M2
/// (bias 15, IEEE-style infinities and NaNs).
pub fn fp8_to_f64(dtype: DType, b: u8) -> Option<f64> {
    let sign = if b & 0x80 != 0 { -1.0 } else { 1.0 };
    let (exp_bits, man_bits, bias) = match dtype {
        DType::F8_E4M3 => (4u32, 3u32, 7i32),
        DType::F8_E5M2 => (5, 2, 15),
        _ => return None,
    };
    let exp = ((b & 0x7f) >> man_bits) as i32;
    let man = (b & ((1 << man_bits) - 1)) as f64;
    let max_exp = (1 << exp_bits) - 1;
    let scale = (1u32 << man_bits) as f64;
    let v = match dtype {
        DType::F8_E4M3 if exp == max_exp && man == scale - 1.0 => f64::NAN,
        DType::F8_E5M2 if exp == max_exp => {
            if man == 0.0 {
                f64::INFINITY
            } else {
                f64::NAN
            }
        }
        _ if exp == 0 => man / scale * 2f64.powi(1 - bias),
        _ => (1.0 + man / scale) * 2f64.powi(exp - bias),
    };
    Some(sign * v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fp8_values_decode_as_torch_does() {
        // (byte, E4M3FN value, E5M2 value), from torch.tensor([b], dtype=uint8).view(float8_*).
        let cases: [(u8, f64, f64); 7] = [
            (0x00, 0.0, 0.0),
            (0x38, 1.0, 0.5),
            (0x01, 2f64.powi(-9), 2f64.powi(-16)),
            (0x7e, 448.0, f64::NAN),
            (0xc0, -2.0, -2.0),
            (0x3c, 1.5, 1.0),
            (0x7b, 352.0, 57344.0),
        ];
        for (b, e4, e5) in cases {
            let got = fp8_to_f64(DType::F8_E4M3, b).unwrap();
            assert!(
                got == e4 || (got.is_nan() && e4.is_nan()),
                "e4m3 {b:#x}: {got}"
            );
            let got = fp8_to_f64(DType::F8_E5M2, b).unwrap();
            assert!(
                got == e5 || (got.is_nan() && e5.is_nan()),
                "e5m2 {b:#x}: {got}"
            );
        }
        assert!(fp8_to_f64(DType::F8_E4M3, 0x7f).unwrap().is_nan());
        assert_eq!(fp8_to_f64(DType::F8_E5M2, 0x7c), Some(f64::INFINITY));
        assert_eq!(fp8_to_f64(DType::F32, 0), None);
    }

    #[test]
    fn decodes_each_float_type() {
        let mut out = Vec::new();
        decode_f64(DType::F64, &1.5f64.to_le_bytes(), &mut out).unwrap();
        decode_f64(DType::F32, &(-2.25f32).to_le_bytes(), &mut out).unwrap();
        // 0x3C00 is 1.0 in IEEE half precision; 0x3F80 is 1.0 in bfloat16.
        decode_f64(DType::F16, &[0x00, 0x3C], &mut out).unwrap();
        decode_f64(DType::BF16, &[0x80, 0x3F], &mut out).unwrap();
        // 0xC000 is -2.0 in half precision.
        decode_f64(DType::F16, &[0x00, 0xC0], &mut out).unwrap();
        assert_eq!(out, vec![1.5, -2.25, 1.0, 1.0, -2.0]);
    }

    #[test]
    fn rejects_partial_elements_and_non_floats() {
        let mut out = Vec::new();
        assert!(decode_f64(DType::F32, &[0, 0, 0], &mut out).is_none());
        assert!(decode_f64(DType::I32, &[0, 0, 0, 0], &mut out).is_none());
        assert!(decode_f64(DType::Q4_0, &[0; 18], &mut out).is_none());
        assert!(out.is_empty());
    }

    #[test]
    fn parses_safetensors_names() {
        for name in ["F64", "F32", "F16", "BF16", "I64", "BOOL", "U8"] {
            assert_eq!(DType::from_safetensors(name).unwrap().name(), name);
        }
        assert!(DType::from_safetensors("F128").is_none());
    }
}
