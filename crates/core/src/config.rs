//! A model's `config.json` (or the equivalent metadata of a GGUF file), with typed look-ups
//! whose errors name the file and the keys that were tried.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// Errors reading or interpreting a model configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read model config {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("model config {path} is not valid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "model config {path} is {size} bytes, over the limit of {limit} bytes for a config.json (real ones are a few kilobytes): it is not a model configuration"
    )]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    #[error("model config {path} must be a JSON object")]
    NotAnObject { path: PathBuf },
    #[error("model config {path} has no {what} (looked for keys {keys:?})")]
    Missing {
        path: PathBuf,
        what: &'static str,
        keys: Vec<String>,
    },
    #[error("model config {path}: key `{key}` should be {expected}, found {found}")]
    BadValue {
        path: PathBuf,
        key: String,
        expected: &'static str,
        found: String,
    },
}

/// The largest `config.json` read: 16 MiB (real ones are a few kilobytes).
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// A model configuration: the JSON object of `config.json` and where it came from.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    path: PathBuf,
    raw: Map<String, Value>,
}

impl ModelConfig {
    /// Reads and parses `path` (a `config.json`), refusing files over [`MAX_CONFIG_BYTES`].
    pub fn load(path: &Path) -> Result<ModelConfig, ConfigError> {
        let io = |source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        };
        let size = std::fs::metadata(path).map_err(io)?.len();
        if size > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge {
                path: path.to_path_buf(),
                size,
                limit: MAX_CONFIG_BYTES,
            });
        }
        let bytes = std::fs::read(path).map_err(io)?;
        Self::from_slice(path, &bytes)
    }

    /// Parses JSON bytes; `path` is only used in messages.
    pub fn from_slice(path: &Path, bytes: &[u8]) -> Result<ModelConfig, ConfigError> {
        let value: Value = serde_json::from_slice(bytes).map_err(|source| ConfigError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_value(path, value)
    }

    /// Wraps an already parsed JSON value (GGUF metadata is mapped onto one).
    pub fn from_value(path: &Path, value: Value) -> Result<ModelConfig, ConfigError> {
        match value {
            Value::Object(raw) => Ok(ModelConfig {
                path: path.to_path_buf(),
                raw,
            }),
            _ => Err(ConfigError::NotAnObject {
                path: path.to_path_buf(),
            }),
        }
    }

    /// The file this configuration came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The raw JSON object.
    pub fn raw(&self) -> &Map<String, Value> {
        &self.raw
    }

    /// `model_type`, required to pick an architecture.
    pub fn model_type(&self) -> Result<&str, ConfigError> {
        match self.raw.get("model_type") {
            Some(Value::String(s)) => Ok(s),
            Some(other) => Err(self.bad("model_type", "a string", other)),
            None => Err(ConfigError::Missing {
                path: self.path.clone(),
                what: "model_type",
                keys: vec!["model_type".into()],
            }),
        }
    }

    /// The first of `keys` present with a non-null value, and that value.
    fn first<'a>(&'a self, keys: &[&'a str]) -> Option<(&'a str, &'a Value)> {
        keys.iter()
            .find_map(|k| self.raw.get(*k).filter(|v| !v.is_null()).map(|v| (*k, v)))
    }

    fn bad(&self, key: &str, expected: &'static str, found: &Value) -> ConfigError {
        ConfigError::BadValue {
            path: self.path.clone(),
            key: key.to_string(),
            expected,
            found: found.to_string(),
        }
    }

    /// A positive integer under the first present key of `keys`, or `None` when none is present.
    pub fn usize_opt(&self, keys: &[&str]) -> Result<Option<usize>, ConfigError> {
        match self.first(keys) {
            None => Ok(None),
            Some((k, v)) => match v.as_u64() {
                Some(n) if n > 0 => usize::try_from(n)
                    .map(Some)
                    .map_err(|_| self.bad(k, "a positive integer", v)),
                _ => Err(self.bad(k, "a positive integer", v)),
            },
        }
    }

    /// A positive integer under the first present key of `keys`; missing is an error naming `what`.
    pub fn usize_req(&self, what: &'static str, keys: &[&str]) -> Result<usize, ConfigError> {
        self.usize_opt(keys)?.ok_or_else(|| ConfigError::Missing {
            path: self.path.clone(),
            what,
            keys: keys.iter().map(|k| k.to_string()).collect(),
        })
    }

    /// A boolean under `key`, `default` when absent or null.
    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        match self.raw.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(self.bad(key, "true or false", other)),
        }
    }

    /// A string under `key`, if present.
    pub fn str_opt(&self, key: &str) -> Result<Option<&str>, ConfigError> {
        match self.raw.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.bad(key, "a string", other)),
        }
    }

    /// A nested object under `key` (MPT keeps attention settings in `attn_config`).
    pub fn object(&self, key: &str) -> Option<&Map<String, Value>> {
        self.raw.get(key).and_then(Value::as_object)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(json: &str) -> ModelConfig {
        ModelConfig::from_slice(Path::new("m/config.json"), json.as_bytes()).unwrap()
    }

    #[test]
    fn first_present_key_wins() {
        let c = cfg(r#"{"n_embed": 64, "hidden_size": null, "n_head": 4}"#);
        assert_eq!(
            c.usize_req("d_model", &["hidden_size", "n_embed"]).unwrap(),
            64
        );
        assert_eq!(c.usize_opt(&["num_key_value_heads"]).unwrap(), None);
    }

    #[test]
    fn errors_name_file_and_keys() {
        let c = cfg(r#"{"n_head": -3, "model_type": 7}"#);
        let e = c.usize_req("heads", &["n_head"]).unwrap_err().to_string();
        assert!(
            e.contains("m/config.json") && e.contains("n_head") && e.contains("-3"),
            "{e}"
        );
        let e = c
            .usize_req("layers", &["n_layer", "num_hidden_layers"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("n_layer") && e.contains("num_hidden_layers"),
            "{e}"
        );
        assert!(
            c.model_type()
                .unwrap_err()
                .to_string()
                .contains("model_type")
        );
    }

    #[test]
    fn rejects_non_objects() {
        assert!(ModelConfig::from_slice(Path::new("c.json"), b"[1]").is_err());
        assert!(ModelConfig::from_slice(Path::new("c.json"), b"{").is_err());
    }
}
