//! A dense, row-major `f64` matrix: the currency between checkpoint readers, the
//! architecture registry and the spectral engine.

/// A dense row-major matrix of `f64`.
///
/// Weights are converted to `f64` when read, whatever their stored type, so the split into
/// heads and every comparison against reference values happens at full precision.
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix {
    rows: usize,
    cols: usize,
    data: Vec<f64>,
}

impl Matrix {
    /// Wraps row-major `data`; `None` when its length is not `rows * cols`.
    pub fn from_vec(rows: usize, cols: usize, data: Vec<f64>) -> Option<Matrix> {
        (rows.checked_mul(cols)? == data.len()).then_some(Matrix { rows, cols, data })
    }

    /// A matrix of zeros.
    pub fn zeros(rows: usize, cols: usize) -> Matrix {
        Matrix {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        }
    }

    /// Builds a matrix from a function of (row, column).
    pub fn from_fn(rows: usize, cols: usize, mut f: impl FnMut(usize, usize) -> f64) -> Matrix {
        let mut data = Vec::with_capacity(rows * cols);
        for r in 0..rows {
            for c in 0..cols {
                data.push(f(r, c));
            }
        }
        Matrix { rows, cols, data }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// (rows, cols)
    pub fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// The row-major elements.
    pub fn data(&self) -> &[f64] {
        &self.data
    }

    pub fn into_vec(self) -> Vec<f64> {
        self.data
    }

    /// Element (r, c). Panics when out of range, like slice indexing.
    pub fn get(&self, r: usize, c: usize) -> f64 {
        assert!(r < self.rows && c < self.cols, "index out of range");
        self.data[r * self.cols + c]
    }

    /// Row `r` as a slice.
    pub fn row(&self, r: usize) -> &[f64] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }

    /// The transpose, copied in 32 x 32 tiles so that both the reads and the writes stay in
    /// cache (a 1024 x 1024 transpose otherwise misses on every write).
    pub fn transpose(&self) -> Matrix {
        const TILE: usize = 32;
        let mut data = vec![0.0; self.data.len()];
        for r0 in (0..self.rows).step_by(TILE) {
            for c0 in (0..self.cols).step_by(TILE) {
                for r in r0..(r0 + TILE).min(self.rows) {
                    for c in c0..(c0 + TILE).min(self.cols) {
                        data[c * self.rows + r] = self.data[r * self.cols + c];
                    }
                }
            }
        }
        Matrix {
            rows: self.cols,
            cols: self.rows,
            data,
        }
    }

    /// Rows `start..start + len` as a new matrix. Panics when out of range.
    pub fn row_block(&self, start: usize, len: usize) -> Matrix {
        assert!(start + len <= self.rows, "row block out of range");
        Matrix {
            rows: len,
            cols: self.cols,
            data: self.data[start * self.cols..(start + len) * self.cols].to_vec(),
        }
    }

    /// Columns `start..start + len` as a new matrix. Panics when out of range.
    pub fn col_block(&self, start: usize, len: usize) -> Matrix {
        assert!(start + len <= self.cols, "column block out of range");
        Matrix::from_fn(self.rows, len, |r, c| self.data[r * self.cols + start + c])
    }

    /// Stacks matrices with equal column counts on top of each other.
    pub fn vstack(parts: &[Matrix]) -> Option<Matrix> {
        let cols = parts.first()?.cols;
        if parts.iter().any(|p| p.cols != cols) {
            return None;
        }
        let rows = parts.iter().map(|p| p.rows).sum();
        let mut data = Vec::with_capacity(rows * cols);
        for p in parts {
            data.extend_from_slice(&p.data);
        }
        Some(Matrix { rows, cols, data })
    }

    /// Multiplies column `c` by `scale[c]` (folds a diagonal matrix in from the right).
    pub fn scale_columns(&mut self, scale: &[f64]) {
        assert_eq!(scale.len(), self.cols, "one scale per column");
        for row in self.data.chunks_exact_mut(self.cols.max(1)) {
            for (x, s) in row.iter_mut().zip(scale) {
                *x *= s;
            }
        }
    }

    /// The product `self * v` for a vector `v` of length `cols`.
    pub fn mul_vec(&self, v: &[f64]) -> Vec<f64> {
        assert_eq!(v.len(), self.cols, "vector length must equal column count");
        (0..self.rows)
            .map(|r| self.row(r).iter().zip(v).map(|(a, b)| a * b).sum())
            .collect()
    }

    /// The product `self * other`.
    pub fn matmul(&self, other: &Matrix) -> Matrix {
        assert_eq!(self.cols, other.rows, "inner dimensions must agree");
        let mut out = Matrix::zeros(self.rows, other.cols);
        for r in 0..self.rows {
            for k in 0..self.cols {
                let a = self.data[r * self.cols + k];
                if a == 0.0 {
                    continue;
                }
                let src = other.row(k);
                let dst = &mut out.data[r * other.cols..(r + 1) * other.cols];
                for (d, s) in dst.iter_mut().zip(src) {
                    *d += a * s;
                }
            }
        }
        out
    }

    /// The largest absolute element, 0 for an empty matrix.
    pub fn max_abs(&self) -> f64 {
        // Eight running maxima, so that the loop vectorises; NaN is skipped as `f64::max` does.
        let mut acc = [0.0f64; 8];
        let mut chunks = self.data.chunks_exact(8);
        for chunk in &mut chunks {
            for (m, x) in acc.iter_mut().zip(chunk) {
                let a = x.abs();
                *m = if a > *m { a } else { *m };
            }
        }
        let rest = chunks
            .remainder()
            .iter()
            .fold(0.0f64, |m, x| m.max(x.abs()));
        acc.iter().fold(rest, |m, x| m.max(*x))
    }

    /// Index (row, col) and value of the first NaN or infinite element.
    pub fn first_non_finite(&self) -> Option<(usize, usize, f64)> {
        if all_finite(&self.data) {
            return None;
        }
        let i = self.data.iter().position(|x| !x.is_finite())?;
        Some((i / self.cols.max(1), i % self.cols.max(1), self.data[i]))
    }

    /// Number of NaN or infinite elements.
    pub fn count_non_finite(&self) -> usize {
        self.data.iter().filter(|x| !x.is_finite()).count()
    }
}

/// True when no element is NaN or infinite (exponent bits all ones), tested eight at a time
/// so that the scan vectorises.
pub(crate) fn all_finite(data: &[f64]) -> bool {
    const EXPONENT: u64 = 0x7ff0_0000_0000_0000;
    let mut chunks = data.chunks_exact(8);
    for chunk in &mut chunks {
        let bad = chunk
            .iter()
            .fold(false, |bad, x| bad | (x.to_bits() & EXPONENT == EXPONENT));
        if bad {
            return false;
        }
    }
    chunks.remainder().iter().all(|x| x.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(rows: usize, cols: usize) -> Matrix {
        Matrix::from_fn(rows, cols, |r, c| (r * 10 + c) as f64)
    }

    #[test]
    fn non_finite_and_max_abs_scans_find_every_position() {
        for len in [1usize, 7, 8, 9, 17, 64] {
            for pos in 0..len {
                for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
                    let mut data: Vec<f64> = (0..len).map(|i| i as f64 - 3.5).collect();
                    data[pos] = bad;
                    let m = Matrix::from_vec(1, len, data).unwrap();
                    let found = m.first_non_finite().unwrap();
                    assert_eq!((found.0, found.1), (0, pos));
                    assert_eq!(found.2.to_bits(), bad.to_bits());
                }
                let mut data: Vec<f64> = (0..len).map(|i| (i % 3) as f64 * 0.5).collect();
                data[pos] = -9.0;
                let m = Matrix::from_vec(1, len, data).unwrap();
                assert_eq!(m.first_non_finite(), None);
                assert_eq!(m.max_abs(), 9.0, "len {len} pos {pos}");
            }
        }
        // NaN is skipped by max_abs, as by f64::max.
        let m = Matrix::from_vec(
            1,
            9,
            vec![1.0, f64::NAN, -2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5],
        )
        .unwrap();
        assert_eq!(m.max_abs(), 2.0);
    }

    #[test]
    fn transpose_of_shapes_around_the_tile_size() {
        for (rows, cols) in [(1, 1), (1, 70), (70, 1), (31, 33), (32, 32), (65, 97)] {
            let a = Matrix::from_fn(rows, cols, |r, c| (r * 1000 + c) as f64);
            let t = a.transpose();
            assert_eq!(t.shape(), (cols, rows));
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(t.get(c, r), a.get(r, c), "{rows}x{cols} at ({r}, {c})");
                }
            }
        }
        assert_eq!(Matrix::zeros(0, 5).transpose().shape(), (5, 0));
    }

    #[test]
    fn from_vec_checks_length() {
        assert!(Matrix::from_vec(2, 3, vec![0.0; 6]).is_some());
        assert!(Matrix::from_vec(2, 3, vec![0.0; 5]).is_none());
        assert!(Matrix::from_vec(usize::MAX, 2, vec![]).is_none());
    }

    #[test]
    fn blocks_and_transpose() {
        let a = m(3, 4);
        assert_eq!(
            a.row_block(1, 2).data(),
            &[10., 11., 12., 13., 20., 21., 22., 23.]
        );
        assert_eq!(a.col_block(2, 2).data(), &[2., 3., 12., 13., 22., 23.]);
        let t = a.transpose();
        assert_eq!(t.shape(), (4, 3));
        assert_eq!(t.get(3, 2), 23.0);
        assert_eq!(t.transpose(), a);
    }

    #[test]
    fn products() {
        let a = Matrix::from_vec(2, 2, vec![1., 2., 3., 4.]).unwrap();
        let b = Matrix::from_vec(2, 1, vec![5., 6.]).unwrap();
        assert_eq!(a.matmul(&b).data(), &[17., 39.]);
        assert_eq!(a.mul_vec(&[5., 6.]), vec![17., 39.]);
        let mut c = a.clone();
        c.scale_columns(&[2., 10.]);
        assert_eq!(c.data(), &[2., 20., 6., 40.]);
    }

    #[test]
    fn finds_non_finite() {
        let mut d = vec![0.0; 6];
        d[4] = f64::NAN;
        d[5] = f64::INFINITY;
        let a = Matrix::from_vec(2, 3, d).unwrap();
        let (r, c, _) = a.first_non_finite().unwrap();
        assert_eq!((r, c), (1, 1));
        assert_eq!(a.count_non_finite(), 2);
        assert!(m(2, 2).first_non_finite().is_none());
    }

    #[test]
    fn vstack_requires_equal_columns() {
        let s = Matrix::vstack(&[m(1, 3), m(2, 3)]).unwrap();
        assert_eq!(s.shape(), (3, 3));
        assert!(Matrix::vstack(&[m(1, 3), m(1, 2)]).is_none());
    }
}
