//! The attention dimensions of a model, shared by the architecture registry (which resolves
//! them from a configuration) and the canonical per-layer layout (which cuts heads with them).

/// The attention dimensions of a model.
///
/// The architecture registry only hands out geometries that [`Geometry::check`] accepts
/// (heads grouped evenly over at least one KV head); the fields stay public for reading, and
/// [`Geometry::kv_of`] answers `None` instead of dividing by zero for a hand-built value that
/// breaks those rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub n_layers: usize,
    pub d_model: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub d_head: usize,
}

/// The largest value accepted for each dimension (layers, width, heads, KV heads, head
/// width): 2^20, forty times the widest and thousands of times the deepest models published.
/// A configuration is a few hundred bytes that the tensors are checked against afterwards, so
/// its numbers alone must not size loops or allocations beyond this; with every dimension
/// under 2^20, products of three of them cannot overflow.
pub const MAX_DIMENSION: usize = 1 << 20;

impl Geometry {
    /// Why the geometry cannot be used, if it cannot: a dimension over [`MAX_DIMENSION`], no
    /// heads, no KV heads, or query heads that cannot be grouped evenly over the KV heads.
    pub fn check(&self) -> Result<(), String> {
        for (what, v) in [
            ("layers", self.n_layers),
            ("model width", self.d_model),
            ("attention heads", self.n_heads),
            ("key/value heads", self.n_kv_heads),
            ("head width", self.d_head),
        ] {
            if v > MAX_DIMENSION {
                return Err(format!(
                    "{v} {what} is over the limit of {MAX_DIMENSION} (2^20) this tool accepts \
                     for any dimension; the configuration is probably corrupt"
                ));
            }
        }
        if self.n_heads == 0 || self.d_head == 0 {
            return Err(format!(
                "{} attention heads of size {} leave nothing to analyse",
                self.n_heads, self.d_head
            ));
        }
        if self.n_kv_heads == 0 || !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return Err(format!(
                "{} attention heads cannot be grouped over {} key/value heads",
                self.n_heads, self.n_kv_heads
            ));
        }
        Ok(())
    }

    /// The KV head read by query head `h`: `h / (n_heads / n_kv_heads)`; `None` when `h` is
    /// not a query head or the geometry fails [`Geometry::check`].
    pub fn kv_of(&self, h: usize) -> Option<usize> {
        if h >= self.n_heads || self.check().is_err() {
            return None;
        }
        Some(h / (self.n_heads / self.n_kv_heads))
    }

    /// The map h -> g for every query head; `None` when the geometry fails
    /// [`Geometry::check`].
    pub fn head_to_kv(&self) -> Option<Vec<usize>> {
        (0..self.n_heads).map(|h| self.kv_of(h)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(n_heads: usize, n_kv_heads: usize) -> Geometry {
        Geometry {
            n_layers: 1,
            d_model: 8,
            n_heads,
            n_kv_heads,
            d_head: 2,
        }
    }

    #[test]
    fn grouped_query_heads_map_to_their_kv_head() {
        assert_eq!(g(4, 2).head_to_kv(), Some(vec![0, 0, 1, 1]));
        assert_eq!(g(4, 1).head_to_kv(), Some(vec![0; 4]));
        assert_eq!(g(4, 4).kv_of(3), Some(3));
        assert_eq!(g(4, 4).kv_of(4), None);
    }

    /// Hand-built geometries that break the rules give `None`, never a division by zero.
    #[test]
    fn invalid_geometries_do_not_panic() {
        assert_eq!(g(4, 0).kv_of(0), None);
        assert_eq!(g(4, 0).head_to_kv(), None);
        assert_eq!(g(4, 3).kv_of(1), None);
        assert_eq!(g(2, 4).kv_of(1), None);
        assert!(g(4, 0).check().unwrap_err().contains("0 key/value heads"));
        assert!(g(0, 0).check().is_err());
    }
}
