//! FP8 weights (F8_E4M3, F8_E5M2): the analysed matrix is the dequantised weight, stored value
//! times the scale the model's `quantization_config` names, never the stored values alone.
//!
//! Conventions read (the scale tensor sits next to the weight, `<module>.weight_scale[_inv]`):
//! - `quant_method: "fp8"` (transformers' fine-grained FP8, DeepSeek-V3, Qwen3-FP8):
//!   `weight_scale_inv` of shape `[ceil(out/b0), ceil(in/b1)]` for `weight_block_size: [b0, b1]`
//!   (each block multiplied by its entry), or a single value without a block size;
//! - `quant_method: "fbgemm_fp8"`: `weight_scale` per output row (`[out, 1]`);
//! - `quant_method: "compressed-tensors"`, `format: "float-quantized"`: `weight_scale` per
//!   tensor (one value), per output row (`[out, 1]`), or per block when a config group's
//!   `weights.block_structure` gives the block.
//!
//! Anything else (no `quantization_config`, another method, a missing or misshapen scale) is an
//! error naming the tensor and the config entry.

use serde_json::Value;

use super::{Checkpoint, CheckpointError, TensorMeta};

fn parse_block(v: &Value) -> Option<(usize, usize)> {
    let a = v.as_array()?;
    let dim = |x: &Value| {
        x.as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n > 0)
    };
    match a.as_slice() {
        [r, c] => Some((dim(r)?, dim(c)?)),
        _ => None,
    }
}

/// Multiplies the stored FP8 values of `meta` (row-major, already decoded) by their scales.
pub(super) fn dequantise(
    ckpt: &Checkpoint,
    meta: &TensorMeta,
    data: &mut [f64],
) -> Result<(), CheckpointError> {
    let err = |problem: String| CheckpointError::Fp8 {
        tensor: meta.name.clone(),
        file: ckpt.file_for_message(meta),
        problem,
    };
    let cfg = ckpt.config();
    let entry = |k: &str| format!("{} `quantization_config.{k}`", cfg.path().display());
    let q = cfg.object("quantization_config").ok_or_else(|| {
        err(format!(
            "{} has no `quantization_config` naming the FP8 scales; unscaled FP8 values are not \
             analysed",
            cfg.path().display()
        ))
    })?;
    let method = q.get("quant_method").and_then(Value::as_str).unwrap_or("");
    let base = meta.name.strip_suffix(".weight").ok_or_else(|| {
        err("only `.weight` matrices are read as FP8-quantised weights".to_string())
    })?;
    let (scale_name, block, block_entry) = match method {
        "fp8" => {
            let block = match q.get("weight_block_size") {
                None | Some(Value::Null) => None,
                Some(v) => Some(parse_block(v).ok_or_else(|| {
                    err(format!(
                        "{} should be [rows, cols] of positive integers, found {v}",
                        entry("weight_block_size")
                    ))
                })?),
            };
            (
                format!("{base}.weight_scale_inv"),
                block,
                entry("weight_block_size"),
            )
        }
        "fbgemm_fp8" => (format!("{base}.weight_scale"), None, String::new()),
        "compressed-tensors" => {
            let format = q.get("format").and_then(Value::as_str);
            if format != Some("float-quantized") {
                return Err(err(format!(
                    "{} is {}; only `float-quantized` (FP8) weights are read",
                    entry("format"),
                    format.map_or("absent".to_string(), |f| format!("`{f}`"))
                )));
            }
            let block = q
                .get("config_groups")
                .and_then(Value::as_object)
                .and_then(|g| {
                    g.values()
                        .find_map(|grp| grp.get("weights")?.get("block_structure"))
                })
                .filter(|v| !v.is_null());
            let block = match block {
                None => None,
                Some(v) => Some(parse_block(v).ok_or_else(|| {
                    err(format!(
                        "{} should be [rows, cols], found {v}",
                        entry("config_groups.*.weights.block_structure")
                    ))
                })?),
            };
            (
                format!("{base}.weight_scale"),
                block,
                entry("config_groups.*.weights.block_structure"),
            )
        }
        other => {
            return Err(err(format!(
                "{} is `{other}`, an FP8 layout this tool does not know; unscaled FP8 values are \
                 not analysed",
                entry("quant_method")
            )));
        }
    };
    let index = *ckpt.by_name.get(&scale_name).ok_or_else(|| {
        err(format!(
            "its scale `{scale_name}` (which {} `{method}` implies) is missing",
            entry("quant_method")
        ))
    })?;
    let smeta = &ckpt.store.tensors()[index];
    let scale = ckpt.store.read(index)?;
    if let Some(bad) = scale.iter().find(|s| !s.is_finite()) {
        return Err(err(format!("its scale `{scale_name}` holds {bad}")));
    }
    let (rows, cols) = match meta.shape[..] {
        [r, c] => (r, c),
        _ => {
            return Err(err(format!(
                "shape {:?}: FP8 weights are read as matrices",
                meta.shape
            )));
        }
    };
    match block {
        Some((b0, b1)) => {
            let want = [rows.div_ceil(b0), cols.div_ceil(b1)];
            if smeta.shape != want {
                return Err(err(format!(
                    "its scale `{scale_name}` has shape {:?}, but a [{rows}, {cols}] weight in \
                     [{b0}, {b1}] blocks ({block_entry}) needs {want:?}",
                    smeta.shape
                )));
            }
            for r in 0..rows {
                for c in 0..cols {
                    data[r * cols + c] *= scale[(r / b0) * want[1] + c / b1];
                }
            }
        }
        None if scale.len() == 1 && smeta.shape.iter().all(|&d| d == 1) => {
            data.iter_mut().for_each(|x| *x *= scale[0]);
        }
        None if smeta.shape == [rows, 1] || smeta.shape == [rows] => {
            for r in 0..rows {
                data[r * cols..(r + 1) * cols]
                    .iter_mut()
                    .for_each(|x| *x *= scale[r]);
            }
        }
        None => {
            return Err(err(format!(
                "its scale `{scale_name}` has shape {:?}; {} `{method}` without a block size \
                 needs one value or one per output row ([{rows}, 1])",
                smeta.shape,
                entry("quant_method")
            )));
        }
    }
    Ok(())
}
