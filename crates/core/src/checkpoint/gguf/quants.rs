//! Dequantisation of ggml's block-quantised types to `f64`.
//!
//! Each block is decoded exactly as ggml's reference `dequantize_row_*` and gguf-py's
//! `gguf.quants` compute it: scales are `f16` widened to `f32`, every product and difference is
//! an `f32` operation in the same order (for example `(d * sc) * q - (dmin * m)` for Q4_K), and
//! only the final `f32` is widened to `f64`, exactly. The results are therefore bit-identical to
//! gguf-py's, which the fixture tests check.

use half::f16;

use crate::dtype::DType;

/// Elements per block (`QK_K`) of the K-quants.
const QK_K: usize = 256;

/// `(elements per block, bytes per block)` of the types [`dequantize`] decodes.
pub fn block_layout(dtype: DType) -> Option<(usize, usize)> {
    Some(match dtype {
        DType::F64 => (1, 8),
        DType::F32 => (1, 4),
        DType::F16 | DType::BF16 => (1, 2),
        DType::Q4_0 => (32, 18),
        DType::Q4_1 => (32, 20),
        DType::Q5_0 => (32, 22),
        DType::Q5_1 => (32, 24),
        DType::Q8_0 => (32, 34),
        DType::Q2_K => (QK_K, 84),
        DType::Q3_K => (QK_K, 110),
        DType::Q4_K => (QK_K, 144),
        DType::Q5_K => (QK_K, 176),
        DType::Q6_K => (QK_K, 210),
        DType::Q8_K => (QK_K, 292),
        _ => return None,
    })
}

fn half(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// Decodes whole blocks of `dtype` from `bytes`, appending the values to `out`.
///
/// `None` when `dtype` is not a type this module decodes or `bytes` is not a whole number of
/// blocks; the caller turns that into an error naming the tensor.
pub fn dequantize(dtype: DType, bytes: &[u8], out: &mut Vec<f64>) -> Option<()> {
    let (block, size) = block_layout(dtype)?;
    if !bytes.len().is_multiple_of(size) {
        return None;
    }
    if block == 1 {
        return crate::dtype::decode_f64(dtype, bytes, out);
    }
    out.reserve(bytes.len() / size * block);
    let mut y = [0f32; QK_K];
    let y = &mut y[..block];
    let decode: fn(&[u8], &mut [f32]) = match dtype {
        DType::Q4_0 => q4_0,
        DType::Q4_1 => q4_1,
        DType::Q5_0 => q5_0,
        DType::Q5_1 => q5_1,
        DType::Q8_0 => q8_0,
        DType::Q2_K => q2_k,
        DType::Q3_K => q3_k,
        DType::Q4_K => q4_k,
        DType::Q5_K => q5_k,
        DType::Q6_K => q6_k,
        DType::Q8_K => q8_k,
        _ => return None,
    };
    for b in bytes.chunks_exact(size) {
        decode(b, y);
        out.extend(y.iter().map(|&v| v as f64));
    }
    Some(())
}

/// Q4_0: f16 scale `d`, 32 four-bit values `q`; `y = d * (q - 8)`. Element `j < 16` is the low
/// nibble of byte `j`, element `j + 16` its high nibble.
fn q4_0(b: &[u8], y: &mut [f32]) {
    let d = half(b, 0);
    let qs = &b[2..18];
    for j in 0..16 {
        y[j] = d * ((qs[j] & 0x0f) as i32 - 8) as f32;
        y[j + 16] = d * ((qs[j] >> 4) as i32 - 8) as f32;
    }
}

/// Q4_1: f16 scale `d` and minimum `m`; `y = d * q + m`.
fn q4_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (half(b, 0), half(b, 2));
    let qs = &b[4..20];
    for j in 0..16 {
        y[j] = d * (qs[j] & 0x0f) as f32 + m;
        y[j + 16] = d * (qs[j] >> 4) as f32 + m;
    }
}

/// Q5_0: f16 scale, a 32-bit word of fifth bits (bit `i` for element `i`), then nibbles as Q4_0;
/// `y = d * (q - 16)`.
fn q5_0(b: &[u8], y: &mut [f32]) {
    let d = half(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let qs = &b[6..22];
    for j in 0..16 {
        let h0 = ((qh >> j) & 1) as u8;
        let h1 = ((qh >> (j + 16)) & 1) as u8;
        y[j] = d * (((qs[j] & 0x0f) | (h0 << 4)) as i32 - 16) as f32;
        y[j + 16] = d * (((qs[j] >> 4) | (h1 << 4)) as i32 - 16) as f32;
    }
}

/// Q5_1: f16 scale and minimum, fifth bits, nibbles; `y = d * q + m`.
fn q5_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (half(b, 0), half(b, 2));
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let qs = &b[8..24];
    for j in 0..16 {
        let h0 = ((qh >> j) & 1) as u8;
        let h1 = ((qh >> (j + 16)) & 1) as u8;
        y[j] = d * ((qs[j] & 0x0f) | (h0 << 4)) as f32 + m;
        y[j + 16] = d * ((qs[j] >> 4) | (h1 << 4)) as f32 + m;
    }
}

/// Q8_0: f16 scale, 32 signed bytes; `y = q * d`.
fn q8_0(b: &[u8], y: &mut [f32]) {
    let d = half(b, 0);
    for (j, &q) in b[2..34].iter().enumerate() {
        y[j] = (q as i8) as f32 * d;
    }
}

/// Q2_K: 16 bytes of 4-bit (scale, min) pairs, 64 bytes of 2-bit values, f16 `d` and `dmin`.
/// Element `e` = 128·n + 32·j + l is bits `2j..2j+2` of byte `32n + l`, in sub-block `e / 16`;
/// `y = (d * sc) * q - (dmin * m)`.
fn q2_k(b: &[u8], y: &mut [f32]) {
    let (scales, qs) = (&b[0..16], &b[16..80]);
    let (d, dmin) = (half(b, 80), half(b, 82));
    for (e, v) in y.iter_mut().enumerate() {
        let (n, j, l) = (e / 128, (e % 128) / 32, e % 32);
        let q = ((qs[32 * n + l] >> (2 * j)) & 3) as f32;
        let sc = scales[e / 16];
        let dl = d * (sc & 0x0f) as f32;
        let ml = dmin * (sc >> 4) as f32;
        *v = dl * q - ml;
    }
}

/// Q3_K: 32 bytes of high bits (`hmask`), 64 bytes of 2-bit values, 12 bytes of sixteen 6-bit
/// scales, f16 `d`. Element `e` = 128·n + 32·j + l takes its low bits from bits `2j..2j+2` of
/// byte `32n + l` and its high bit from bit `e / 32` of `hmask[l]`; a clear high bit subtracts 4.
/// `y = (d * (sc - 32)) * q`.
fn q3_k(b: &[u8], y: &mut [f32]) {
    let (hmask, qs, sc) = (&b[0..32], &b[32..96], &b[96..108]);
    let d = half(b, 108);
    let mut scales = [0f32; 16];
    for (i, s) in scales.iter_mut().enumerate() {
        let low = if i < 8 { sc[i] & 0x0f } else { sc[i - 8] >> 4 };
        let high = (sc[8 + i % 4] >> (2 * (i / 4))) & 3;
        *s = (((low | (high << 4)) as i8) - 32) as f32;
    }
    for (e, v) in y.iter_mut().enumerate() {
        let (n, j, l) = (e / 128, (e % 128) / 32, e % 32);
        let low = ((qs[32 * n + l] >> (2 * j)) & 3) as i8;
        let high = (hmask[l] >> (e / 32)) & 1;
        let q = low - if high == 0 { 4 } else { 0 };
        let dl = d * scales[e / 16];
        *v = dl * q as f32;
    }
}

/// The eight 6-bit scales and minimums packed in the 12 bytes of a Q4_K / Q5_K block.
fn scale_min_k4(s: &[u8]) -> ([u8; 8], [u8; 8]) {
    let (mut sc, mut mn) = ([0u8; 8], [0u8; 8]);
    for j in 0..4 {
        sc[j] = s[j] & 63;
        mn[j] = s[j + 4] & 63;
        sc[j + 4] = (s[j + 8] & 0x0f) | ((s[j] >> 6) << 4);
        mn[j + 4] = (s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4);
    }
    (sc, mn)
}

/// Q4_K: f16 `d`, `dmin`, 12 bytes of scales/minimums, 128 bytes of nibbles. Sub-block
/// `s` = 2c + h (32 elements) is nibble `h` of bytes `32c..32c+32`;
/// `y = (d * sc[s]) * q - (dmin * m[s])`.
fn q4_k(b: &[u8], y: &mut [f32]) {
    let (d, dmin) = (half(b, 0), half(b, 2));
    let (sc, mn) = scale_min_k4(&b[4..16]);
    let qs = &b[16..144];
    for (e, v) in y.iter_mut().enumerate() {
        let (s, l) = (e / 32, e % 32);
        let q = ((qs[32 * (s / 2) + l] >> (4 * (s % 2))) & 0x0f) as f32;
        let dl = d * sc[s] as f32;
        let ml = dmin * mn[s] as f32;
        *v = dl * q - ml;
    }
}

/// Q5_K: as Q4_K with a fifth bit per element, bit `s` of `qh[l]` for element 32·s + l.
fn q5_k(b: &[u8], y: &mut [f32]) {
    let (d, dmin) = (half(b, 0), half(b, 2));
    let (sc, mn) = scale_min_k4(&b[4..16]);
    let (qh, qs) = (&b[16..48], &b[48..176]);
    for (e, v) in y.iter_mut().enumerate() {
        let (s, l) = (e / 32, e % 32);
        let low = (qs[32 * (s / 2) + l] >> (4 * (s % 2))) & 0x0f;
        let high = (qh[l] >> s) & 1;
        let q = (low | (high << 4)) as f32;
        let dl = d * sc[s] as f32;
        let ml = dmin * mn[s] as f32;
        *v = dl * q - ml;
    }
}

/// Q6_K: 128 bytes of low nibbles, 64 bytes of 2-bit highs, sixteen signed 8-bit scales, f16
/// `d`. Element `e` = 128·n + 64·k + i has low nibble `k` of `ql[64n + i]` and high bits
/// `2j..2j+2` (j = (e mod 128) / 32) of `qh[32n + e mod 32]`; `y = (d * sc[e / 16]) * (q - 32)`.
fn q6_k(b: &[u8], y: &mut [f32]) {
    let (ql, qh, sc) = (&b[0..128], &b[128..192], &b[192..208]);
    let d = half(b, 208);
    for (e, v) in y.iter_mut().enumerate() {
        let n = e / 128;
        let (k, i) = ((e % 128) / 64, e % 64);
        let (j, l) = ((e % 128) / 32, e % 32);
        let low = (ql[64 * n + i] >> (4 * k)) & 0x0f;
        let high = (qh[32 * n + l] >> (2 * j)) & 3;
        let q = ((low | (high << 4)) as i8 - 32) as f32;
        let dl = d * (sc[e / 16] as i8) as f32;
        *v = dl * q;
    }
}

/// Q8_K: f32 scale, 256 signed bytes, then 16 block sums that decoding ignores; `y = d * q`.
fn q8_k(b: &[u8], y: &mut [f32]) {
    let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    for (j, &q) in b[4..260].iter().enumerate() {
        y[j] = d * (q as i8) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_0_and_q8_0_by_hand() {
        // d = 0.5 (f16 0x3800); byte j holds low nibble j % 16 and high nibble 15 - j % 16.
        let mut b = vec![0x00, 0x38];
        b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let mut out = Vec::new();
        dequantize(DType::Q4_0, &b, &mut out).unwrap();
        let want: Vec<f64> = (0..16)
            .map(|j| 0.5 * (j as f64 - 8.0))
            .chain((0..16).map(|j| 0.5 * (7.0 - j as f64)))
            .collect();
        assert_eq!(out, want);

        // d = 2.0 (f16 0x4000), q = -16..16.
        let mut b = vec![0x00, 0x40];
        b.extend((0..32).map(|j| (j as i8 - 16) as u8));
        out.clear();
        dequantize(DType::Q8_0, &b, &mut out).unwrap();
        assert_eq!(
            out,
            (0..32).map(|j| 2.0 * (j as f64 - 16.0)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn q6_k_zero_point() {
        // All nibbles and high bits zero: q = -32 everywhere, scales 1, d = 1.
        let mut b = vec![0u8; 210];
        b[192..208].fill(1);
        b[208..210].copy_from_slice(&[0x00, 0x3c]);
        let mut out = Vec::new();
        dequantize(DType::Q6_K, &b, &mut out).unwrap();
        assert_eq!(out, vec![-32.0; 256]);
    }

    #[test]
    fn partial_blocks_and_other_types_are_refused() {
        let mut out = Vec::new();
        assert!(dequantize(DType::Q4_0, &[0; 17], &mut out).is_none());
        assert!(dequantize(DType::Q4_K, &[0; 145], &mut out).is_none());
        assert!(dequantize(DType::Q8_1, &[0; 36], &mut out).is_none());
        assert!(dequantize(DType::I32, &[0; 4], &mut out).is_none());
        assert!(out.is_empty());
    }
}
