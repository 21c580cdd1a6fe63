//! Tensor names and layouts: each stored GGUF tensor of a registry architecture is exposed
//! under its Hugging Face name, with the converter's changes undone, all derived from the
//! registry entry ([`crate::arch::spec::GgufNames`] and the entry's attention layout).

use std::collections::HashMap;

use super::GgufStore;
use super::format::{GgufValue, StoredTensor, corrupt};
use crate::arch::spec::{self, ArchSpec, GgufNames, Norm, Qkv, Storage};
use crate::checkpoint::{CheckpointError, TensorMeta};

/// How an exposed tensor's values derive from a stored tensor's.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Layout {
    /// The stored values as they are.
    AsStored,
    /// Runs `(first row, row count)` of the stored matrix (or elements of a vector), in order.
    Rows(Vec<(usize, usize)>),
    /// The transpose of the stored matrix.
    Transposed,
    /// The stored values plus a constant.
    Shift(f64),
}

/// An exposed tensor: which stored tensor it reads and how.
#[derive(Clone, Debug)]
pub(super) struct Plan {
    pub(super) stored: usize,
    pub(super) layout: Layout,
}

impl GgufStore {
    /// Model width, query heads, key/value heads and head width of a fused QKV tensor's
    /// architecture; the head width is `attention.key_length` when given, else width / heads.
    fn heads(&self, arch: &str) -> Result<(usize, usize, usize, usize), CheckpointError> {
        let d = self.positive(&format!("{arch}.embedding_length"))?;
        let n_head = self.positive(&format!("{arch}.attention.head_count"))?;
        let n_kv = self
            .uint(&format!("{arch}.attention.head_count_kv"))?
            .unwrap_or(n_head);
        let key_length = self.uint(&format!("{arch}.attention.key_length"))?;
        let divides = key_length.is_some() || d.is_multiple_of(n_head);
        if n_kv == 0 || !divides || !n_head.is_multiple_of(n_kv) || key_length == Some(0) {
            return Err(corrupt(
                self.path(),
                format!(
                    "{arch}: embedding length {d}, {n_head} heads and {n_kv} key/value heads do \
                     not divide evenly"
                ),
            ));
        }
        let hd = key_length.unwrap_or(d / n_head);
        // The fused tensor's rows, (n_head + 2 n_kv) hd, must be a number.
        if n_kv
            .checked_mul(2)
            .and_then(|kv| kv.checked_add(n_head))
            .and_then(|heads| heads.checked_mul(hd))
            .is_none()
        {
            return Err(corrupt(
                self.path(),
                format!("{arch}: {n_head} heads and {n_kv} key/value heads of width {hd} overflow"),
            ));
        }
        Ok((d, n_head, n_kv, hd))
    }

    /// Builds the exposed tensors: Hugging Face names and layouts for the architectures of the
    /// registry, GGUF names otherwise.
    pub(super) fn expose(&mut self) -> Result<(), CheckpointError> {
        let arch_name = match self.get("general.architecture") {
            Some(GgufValue::Str(s)) => s.clone(),
            _ => String::new(),
        };
        let entry = spec::find_gguf(&arch_name);
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (i, t) in self.stored.clone().iter().enumerate() {
            let mapped = match entry {
                Some((spec, names)) => self.map_tensor(spec, names, t)?,
                None => Vec::new(),
            };
            let entries = if mapped.is_empty() {
                vec![(t.name.clone(), Layout::AsStored, None)]
            } else {
                mapped
                    .into_iter()
                    .map(|(n, l)| (n, l, Some(t.name.clone())))
                    .collect()
            };
            for (name, layout, stored_name) in entries {
                let shape = layout_shape(&t.shape(), &layout);
                if let Some(&prev) = seen.get(&name) {
                    return Err(corrupt(
                        self.path(),
                        format!(
                            "tensors `{}` and `{}` both map to `{name}`",
                            self.stored[self.plans[prev].stored].name, t.name
                        ),
                    ));
                }
                seen.insert(name.clone(), self.tensors.len());
                self.tensors.push(TensorMeta {
                    name,
                    stored_name,
                    dtype: t.dtype,
                    shape,
                    file: 0,
                });
                self.plans.push(Plan { stored: i, layout });
            }
        }
        Ok(())
    }

    /// The Hugging Face name(s) and layout(s) of stored tensor `t`; empty when unmapped.
    fn map_tensor(
        &self,
        spec: &ArchSpec,
        names: &GgufNames,
        t: &StoredTensor,
    ) -> Result<Vec<(String, Layout)>, CheckpointError> {
        let (base, suffix) = match t.name.rsplit_once('.') {
            Some((b, s)) if s == "weight" || s == "bias" => (b, s),
            _ => return Ok(Vec::new()),
        };
        let is_weight = suffix == "weight";
        // Gemma's converter stores every norm weight as 1 + w.
        let plus_one = matches!(spec.norm, Norm::RmsNormPlusOne(_));
        let plain = |part: &str| {
            if plus_one && is_weight && part.ends_with("_norm") {
                Layout::Shift(-1.0)
            } else {
                Layout::AsStored
            }
        };
        let one = |hf: String, layout: Layout| Ok(vec![(format!("{hf}.{suffix}"), layout)]);
        let lookup = |table: &[(&str, &'static str)], part: &str| {
            table.iter().find(|(g, _)| *g == part).map(|(_, hf)| *hf)
        };
        let (block, part) = match base.strip_prefix("blk.").and_then(|r| r.split_once('.')) {
            Some((n, part)) if n.parse::<usize>().is_ok() => (Some(n), part),
            _ => (None, base),
        };
        let Some(n) = block else {
            return match lookup(names.globals, part) {
                Some(hf) => one(hf.to_string(), plain(part)),
                None => Ok(Vec::new()),
            };
        };
        let prefix = format!("{}{}", names.root, spec.layer.replace("{}", n));
        if part == "attn_qkv" {
            return self.map_fused(spec, names, t, &prefix, suffix);
        }
        let module = match (part, spec.qkv) {
            ("attn_norm", _) => match names.split_attn_norm {
                Some((other, hf)) if self.has_stored(&format!("blk.{n}.{other}.weight")) => hf,
                _ => match spec.norm {
                    Norm::LayerNorm(m) | Norm::RmsNorm(m) | Norm::RmsNormPlusOne(m) => m,
                    Norm::LayerNormNoParams | Norm::Post => return Ok(Vec::new()),
                },
            },
            ("attn_q", Qkv::Separate { q, .. }) => q,
            ("attn_k", Qkv::Separate { k, .. }) => k,
            ("attn_v", Qkv::Separate { v, .. }) => v,
            ("attn_output", _) => spec.out,
            _ => match lookup(names.layer, part) {
                Some(m) => m,
                None => return Ok(Vec::new()),
            },
        };
        // Conv1D weights ([in, out]) were transposed by the converter; norms are vectors.
        let layout = if spec.storage == Storage::Conv1D && is_weight && !part.ends_with("_norm") {
            self.check_matrix(t)?;
            Layout::Transposed
        } else {
            plain(part)
        };
        one(format!("{prefix}{module}"), layout)
    }

    /// GGUF's fused `attn_qkv`, always `[Q; K; V]`, in the entry's layout.
    fn map_fused(
        &self,
        spec: &ArchSpec,
        names: &GgufNames,
        t: &StoredTensor,
        prefix: &str,
        suffix: &str,
    ) -> Result<Vec<(String, Layout)>, CheckpointError> {
        let arch = names.arch;
        if let Some((key, want)) = names.qkv_layout {
            let key = format!("{arch}.{key}");
            if let Some(layout) = self.get(&key)
                && layout.as_str() != Some(want)
            {
                return Err(corrupt(
                    self.path(),
                    format!(
                        "{key} is {layout}; only llama.cpp's `{want}` QKV layout can be mapped \
                         back to Hugging Face's"
                    ),
                ));
            }
        }
        let name = |module: &str| format!("{prefix}{module}.{suffix}");
        if spec.storage == Storage::Conv1D {
            // GPT-2's c_attn is [Q | K | V] like GGUF's, stored [in, out].
            let Qkv::Blocks(module) = spec.qkv else {
                return Ok(Vec::new());
            };
            let layout = if suffix == "weight" {
                self.check_matrix(t)?;
                Layout::Transposed
            } else {
                Layout::AsStored
            };
            return Ok(vec![(name(module), layout)]);
        }
        let (_, n_head, n_kv, hd) = self.heads(arch)?;
        if !names.fused_kv_groups && !matches!(spec.qkv, Qkv::Separate { .. }) && n_kv != n_head {
            return Err(corrupt(
                self.path(),
                format!(
                    "tensor `{}`: {arch} with {n_kv} key/value heads for {n_head} heads has no \
                     Hugging Face equivalent (its fused layout has one key/value head per query \
                     head)",
                    t.name
                ),
            ));
        }
        let rows = [n_head * hd, n_kv * hd, n_kv * hd];
        self.check_rows(t, rows.iter().sum())?;
        Ok(match spec.qkv {
            Qkv::Separate { q, k, v } => {
                let mut start = 0;
                let mut out = Vec::new();
                for (module, len) in [q, k, v].into_iter().zip(rows) {
                    out.push((name(module), Layout::Rows(vec![(start, len)])));
                    start += len;
                }
                out
            }
            Qkv::Blocks(module) => vec![(name(module), Layout::AsStored)],
            Qkv::Grouped(module) => {
                // Each key/value group: its queries, its key, its value.
                let r = n_head / n_kv;
                let mut runs = Vec::new();
                for g in 0..n_kv {
                    runs.push((g * r * hd, r * hd));
                    runs.push(((n_head + g) * hd, hd));
                    runs.push(((n_head + n_kv + g) * hd, hd));
                }
                vec![(name(module), Layout::Rows(runs))]
            }
        })
    }

    fn check_matrix(&self, t: &StoredTensor) -> Result<(), CheckpointError> {
        if t.ne.len() != 2 {
            return Err(corrupt(
                self.path(),
                format!("tensor `{}` should be a matrix", t.name),
            ));
        }
        Ok(())
    }

    /// A fused tensor must have `rows` rows (a matrix) or elements (a bias vector).
    fn check_rows(&self, t: &StoredTensor, rows: usize) -> Result<(), CheckpointError> {
        let have = t.shape()[0];
        if t.ne.len() > 2 || have != rows {
            return Err(corrupt(
                self.path(),
                format!(
                    "tensor `{}` has shape {:?}; the head counts in the metadata need {rows} rows, \
                     so its fused layout cannot be mapped faithfully",
                    t.name,
                    t.shape()
                ),
            ));
        }
        Ok(())
    }
}

/// The PyTorch-order shape of a stored tensor of `shape` read through `layout`.
pub(super) fn layout_shape(shape: &[usize], layout: &Layout) -> Vec<usize> {
    match layout {
        Layout::AsStored | Layout::Shift(_) => shape.to_vec(),
        Layout::Transposed => shape.iter().rev().copied().collect(),
        Layout::Rows(runs) => {
            let mut s = shape.to_vec();
            s[0] = runs.iter().map(|r| r.1).sum();
            s
        }
    }
}
