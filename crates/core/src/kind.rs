//! The kinds of matrix analysed per layer: the four projections and the two per-head circuits.

use std::fmt;
use std::str::FromStr;

/// One kind of matrix, named as in the `kind` column of the dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MatrixKind {
    /// W_Q: [n_heads·d_head, d_model]; per head [d_head, d_model].
    WQ,
    /// W_K: [n_kv·d_head, d_model]; per KV head [d_head, d_model].
    WK,
    /// W_V: [n_kv·d_head, d_model]; per KV head [d_head, d_model].
    WV,
    /// W_O: [d_model, n_heads·d_head]; per head [d_model, d_head].
    WO,
    /// The OV circuit of query head h: W_O^h W_V^{g(h)}, d_model x d_model of rank <= d_head.
    OV,
    /// The QK circuit of query head h: (W_Q^h)^T W_K^{g(h)}, d_model x d_model of rank <= d_head.
    QK,
}

impl MatrixKind {
    pub const ALL: [MatrixKind; 6] = [
        MatrixKind::WQ,
        MatrixKind::WK,
        MatrixKind::WV,
        MatrixKind::WO,
        MatrixKind::OV,
        MatrixKind::QK,
    ];

    /// The name used in the dataset and in pipeline files.
    pub fn name(self) -> &'static str {
        match self {
            MatrixKind::WQ => "W_Q",
            MatrixKind::WK => "W_K",
            MatrixKind::WV => "W_V",
            MatrixKind::WO => "W_O",
            MatrixKind::OV => "OV",
            MatrixKind::QK => "QK",
        }
    }

    /// Circuits exist per head only.
    pub fn is_circuit(self) -> bool {
        matches!(self, MatrixKind::OV | MatrixKind::QK)
    }

    /// Whether `head` indexes KV heads (W_K, W_V) rather than query heads.
    pub fn indexed_by_kv_head(self) -> bool {
        matches!(self, MatrixKind::WK | MatrixKind::WV)
    }
}

impl serde::Serialize for MatrixKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for MatrixKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<MatrixKind, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for MatrixKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for MatrixKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        MatrixKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = MatrixKind::ALL.iter().map(|k| k.name()).collect();
                format!(
                    "unknown matrix kind `{s}`; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in MatrixKind::ALL {
            assert_eq!(k.name().parse::<MatrixKind>().unwrap(), k);
        }
        assert!(
            "W_X"
                .parse::<MatrixKind>()
                .unwrap_err()
                .contains("W_Q, W_K")
        );
    }
}
