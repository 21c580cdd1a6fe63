//! Where a dataset lives: a local directory, or a prefix of an object store (S3, Google Cloud
//! Storage, Azure Blob Storage, through the `object_store` crate), and the few operations the
//! dataset protocol needs on either: write a file whole, read one, remove one, list a table.
//!
//! A dataset location is given as a path or a URL ([`DatasetDir::open`]):
//!
//! - a path or `file:///abs/path`: a local directory; files are written under a temporary name
//!   and renamed into place ([`super::files`]);
//! - `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix` (also `abfs://`,
//!   `abfss://`, `azure://`, `adl://`), with the cargo feature `cloud`: every file is one object,
//!   written by one PUT, or by a multipart upload completed after its last part when it is
//!   larger than [`MULTIPART_ABOVE`] bytes. Either way an object appears whole or not at all:
//!   a writer killed mid-upload leaves nothing readers list (an unfinished multipart upload is
//!   invisible; a bucket lifecycle rule `AbortIncompleteMultipartUpload` reclaims its parts).
//!
//! Credentials, region and endpoint come from the standard variables, read by object_store's
//! `from_env` builders (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
//! `AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`; `GOOGLE_SERVICE_ACCOUNT`,
//! `GOOGLE_APPLICATION_CREDENTIALS`; `AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`,
//! ...). A location without any credential source is refused before anything is sent
//! ([`LocationError::MissingCredentials`]); a bucket that does not exist is found by
//! [`DatasetDir::probe`](super::DatasetDir::probe) before anything is written.
//!
//! Requests run on one small multi-threaded tokio runtime owned by this module (every store
//! spawns its connections there), so the API is synchronous and may be called from any
//! thread, including one inside another runtime (DataFusion's).

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use object_store::path::Path as ObjPath;
use object_store::{
    GetOptions, GetRange, MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload,
};

use super::DatasetError;

/// Files larger than this (bytes) are uploaded in parts of this size by a multipart upload,
/// completed after the last part; smaller ones by a single PUT.
pub const MULTIPART_ABOVE: usize = 16 * 1024 * 1024;

/// The URL schemes of object stores this build knows.
pub const OBJECT_STORE_SCHEMES: &[&str] =
    &["s3", "s3a", "gs", "az", "azure", "abfs", "abfss", "adl"];

/// Errors opening a dataset location: each names the location and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum LocationError {
    #[error(
        "`{location}`: unknown URL scheme `{scheme}://`: a dataset is a local directory or a \
         file://, s3://, gs:// or az:// URL"
    )]
    UnknownScheme { location: String, scheme: String },
    #[error(
        "`{location}`: object storage needs the `cloud` feature, which this binary was built \
         without (cargo install --features cloud)"
    )]
    NoCloudFeature { location: String },
    #[error("`{location}`: {message}")]
    Invalid { location: String, message: String },
    #[error("`{location}`: no credentials for {service}: set {variables}")]
    MissingCredentials {
        location: String,
        service: &'static str,
        variables: &'static str,
    },
    #[error(
        "`{location}`: the bucket `{bucket}` does not exist, or these credentials cannot see it: \
         create it first (or correct the URL)"
    )]
    NoBucket { location: String, bucket: String },
    #[error("`{location}`: the credentials were refused: {source}")]
    Denied {
        location: String,
        #[source]
        source: object_store::Error,
    },
    #[error("`{location}`: cannot reach the object store: {source}")]
    Unreachable {
        location: String,
        #[source]
        source: object_store::Error,
    },
}

impl LocationError {
    /// Whether the error is the user's input (a usage error), not a failure of the store.
    pub fn is_usage(&self) -> bool {
        !matches!(self, LocationError::Unreachable { .. })
    }
}

/// The runtime every object store request runs on.
fn io_runtime() -> &'static tokio::runtime::Runtime {
    static IO: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    IO.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("attn-spectra-io")
            .enable_all()
            .build()
            .expect("cannot start the object store's I/O threads")
    })
}

/// Runs `fut` on the I/O runtime and waits for it, from any thread.
fn run<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    io_runtime().spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv()
        .expect("an object store request panicked on the I/O runtime")
}

/// A dataset in an object store: the bucket's store and the prefix inside it.
#[derive(Debug)]
pub struct Remote {
    /// `scheme://bucket/prefix`, without a trailing `/`.
    url: String,
    /// `scheme://bucket`: the URL DataFusion looks the store up by.
    base: String,
    /// The bucket name (for messages).
    bucket: String,
    store: Arc<dyn ObjectStore>,
    prefix: ObjPath,
}

impl Remote {
    /// A dataset at `url` (`scheme://bucket/prefix`) in `store`, the store of that bucket.
    pub fn new(url: &str, store: Arc<dyn ObjectStore>) -> Result<Remote, LocationError> {
        let invalid = |message: &str| LocationError::Invalid {
            location: url.to_string(),
            message: message.to_string(),
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| invalid("not a URL"))?;
        let rest = rest.trim_end_matches('/');
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(invalid(
                "the URL names no bucket: use scheme://bucket/prefix",
            ));
        }
        let prefix = ObjPath::parse(prefix).map_err(|e| invalid(&e.to_string()))?;
        let base = format!("{scheme}://{bucket}");
        let url = if prefix.as_ref().is_empty() {
            base.clone()
        } else {
            format!("{base}/{prefix}")
        };
        Ok(Remote {
            url,
            base,
            bucket: bucket.to_string(),
            store,
            prefix,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    /// The object key of `rel` (`table/name.parquet`).
    fn key(&self, rel: &str) -> ObjPath {
        // Taken as they are (not percent-encoded again): file stems hold `%XX` escapes.
        let joined = if self.prefix.as_ref().is_empty() {
            rel.to_string()
        } else {
            format!("{}/{rel}", self.prefix)
        };
        ObjPath::parse(&joined).unwrap_or_else(|_| ObjPath::from(joined.as_str()))
    }

    /// The URL of `rel`, for messages.
    pub fn url_of(&self, rel: &str) -> String {
        format!("{}/{rel}", self.url)
    }

    fn error(&self, rel: &str, source: object_store::Error) -> DatasetError {
        DatasetError::Store {
            url: self.url_of(rel),
            source,
        }
    }

    /// Writes `bytes` as the object `rel`, whole or not at all.
    pub fn put(&self, rel: &str, bytes: Vec<u8>) -> Result<(), DatasetError> {
        let store = self.store.clone();
        let key = self.key(rel);
        run(async move {
            if bytes.len() <= MULTIPART_ABOVE {
                store.put(&key, PutPayload::from(bytes)).await.map(|_| ())
            } else {
                // The object appears when the upload is completed after its last part; on an
                // error it is aborted, and a killed process leaves it unfinished: invisible.
                let mut upload = store.put_multipart(&key).await?;
                let bytes = Bytes::from(bytes);
                let mut start = 0;
                while start < bytes.len() {
                    let end = (start + MULTIPART_ABOVE).min(bytes.len());
                    let part = PutPayload::from(bytes.slice(start..end));
                    if let Err(e) = upload.put_part(part).await {
                        let _ = upload.abort().await;
                        return Err(e);
                    }
                    start = end;
                }
                match upload.complete().await {
                    Ok(_) => Ok(()),
                    Err(e) => {
                        let _ = upload.abort().await;
                        Err(e)
                    }
                }
            }
        })
        .map_err(|e| self.error(rel, e))
    }

    /// The object `rel`, or `None` when it does not exist.
    pub fn get(&self, rel: &str) -> Result<Option<Bytes>, DatasetError> {
        let store = self.store.clone();
        let key = self.key(rel);
        match run(async move { store.get(&key).await?.bytes().await }) {
            Ok(b) => Ok(Some(b)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(rel, e)),
        }
    }

    /// The last `n` bytes of object `rel` and its size, or `None` when it does not exist.
    pub fn get_suffix(&self, rel: &str, n: u64) -> Result<Option<(Bytes, u64)>, DatasetError> {
        let store = self.store.clone();
        let key = self.key(rel);
        let result = run(async move {
            let options = GetOptions {
                range: Some(GetRange::Suffix(n)),
                ..GetOptions::default()
            };
            let got = store.get_opts(&key, options).await?;
            let size = got.meta.size;
            Ok::<_, object_store::Error>((got.bytes().await?, size))
        });
        match result {
            Ok(b) => Ok(Some(b)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(rel, e)),
        }
    }

    /// Removes the object `rel`; a missing one is not an error.
    pub fn delete(&self, rel: &str) -> Result<(), DatasetError> {
        let store = self.store.clone();
        let key = self.key(rel);
        match run(async move { store.delete(&key).await }) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(rel, e)),
        }
    }

    /// The names of the objects directly under `dir` (a table), sorted; `None` when there
    /// are none.
    pub fn list(&self, dir: &str) -> Result<Option<Vec<String>>, DatasetError> {
        let store = self.store.clone();
        let key = self.key(dir);
        let listed = run(async move { store.list_with_delimiter(Some(&key)).await })
            .map_err(|e| self.error(dir, e))?;
        let mut names: Vec<String> = listed
            .objects
            .iter()
            .filter_map(|o| o.location.filename().map(str::to_string))
            .collect();
        if names.is_empty() {
            return Ok(None);
        }
        names.sort();
        Ok(Some(names))
    }

    /// The names of the "directories" (common prefixes) directly under the dataset's prefix.
    pub fn dirs(&self) -> Result<Vec<String>, DatasetError> {
        let store = self.store.clone();
        let key = self.prefix.clone();
        let listed = run(async move { store.list_with_delimiter(Some(&key)).await })
            .map_err(|e| self.error("", e))?;
        let mut names: Vec<String> = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Checks that the bucket exists and can be listed with these credentials.
    pub fn probe(&self) -> Result<(), LocationError> {
        let store = self.store.clone();
        let key = self.prefix.clone();
        let result = run(async move {
            store
                .list_with_delimiter((!key.as_ref().is_empty()).then_some(&key))
                .await
                .map(|_| ())
        });
        let location = self.url.clone();
        match result {
            Ok(()) => Ok(()),
            Err(e) => {
                let text = e.to_string();
                if matches!(e, object_store::Error::NotFound { .. })
                    || text.contains("NoSuchBucket")
                    || text.contains("ContainerNotFound")
                    || text.contains("bucket does not exist")
                {
                    Err(LocationError::NoBucket {
                        location,
                        bucket: self.bucket.clone(),
                    })
                } else if matches!(
                    e,
                    object_store::Error::PermissionDenied { .. }
                        | object_store::Error::Unauthenticated { .. }
                ) || text.contains("InvalidAccessKeyId")
                    || text.contains("SignatureDoesNotMatch")
                    || text.contains("AccessDenied")
                {
                    Err(LocationError::Denied {
                        location,
                        source: e,
                    })
                } else {
                    Err(LocationError::Unreachable {
                        location,
                        source: e,
                    })
                }
            }
        }
    }
}

/// Where a dataset lives.
#[derive(Clone, Debug)]
pub(crate) enum Location {
    Local(PathBuf),
    Remote(Arc<Remote>),
}

/// A path or URL given for a dataset, as a [`Location`].
pub(crate) fn parse_location(location: &str) -> Result<Location, LocationError> {
    let Some((scheme, _)) = location.split_once("://") else {
        return Ok(Location::Local(PathBuf::from(location)));
    };
    let scheme_lc = scheme.to_ascii_lowercase();
    if scheme_lc == "file" {
        let rest = &location[scheme.len() + 3..];
        // file:///abs/path (an empty host) or file://localhost/abs/path.
        let path = rest.strip_prefix("localhost").unwrap_or(rest);
        if !path.starts_with('/') {
            return Err(LocationError::Invalid {
                location: location.to_string(),
                message: "a file:// URL takes an absolute path: file:///path/to/dataset".into(),
            });
        }
        return Ok(Location::Local(PathBuf::from(path)));
    }
    if !OBJECT_STORE_SCHEMES.contains(&scheme_lc.as_str()) {
        return Err(LocationError::UnknownScheme {
            location: location.to_string(),
            scheme: scheme.to_string(),
        });
    }
    cloud::open(location, &scheme_lc).map(|r| Location::Remote(Arc::new(r)))
}

/// Whether any of `vars` is set to a non-empty value.
#[cfg_attr(not(feature = "cloud"), allow(dead_code))]
fn any_set(vars: &[&str]) -> bool {
    vars.iter()
        .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()))
}

#[cfg(feature = "cloud")]
mod cloud {
    //! The S3, GCS and Azure clients, built from the environment.

    use std::sync::Arc;
    use std::time::Duration;

    use object_store::client::SpawnedReqwestConnector;
    use object_store::{ObjectStore, RetryConfig};

    use super::{LocationError, Remote, any_set, io_runtime};

    /// Retries of failed requests: a few, within a minute.
    fn retry() -> RetryConfig {
        RetryConfig {
            max_retries: 4,
            retry_timeout: Duration::from_secs(60),
            ..RetryConfig::default()
        }
    }

    fn connector() -> SpawnedReqwestConnector {
        SpawnedReqwestConnector::new(io_runtime().handle().clone())
    }

    pub(super) fn open(location: &str, scheme: &str) -> Result<Remote, LocationError> {
        let missing = |service, variables| LocationError::MissingCredentials {
            location: location.to_string(),
            service,
            variables,
        };
        let invalid = |e: object_store::Error| LocationError::Invalid {
            location: location.to_string(),
            message: e.to_string(),
        };
        let store: Arc<dyn ObjectStore> = match scheme {
            "s3" | "s3a" => {
                let other_source = any_set(&[
                    "AWS_WEB_IDENTITY_TOKEN_FILE",
                    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                    "AWS_METADATA_ENDPOINT",
                ]) || std::env::var("AWS_SKIP_SIGNATURE")
                    .is_ok_and(|v| v == "true");
                if !other_source {
                    if !any_set(&["AWS_ACCESS_KEY_ID"]) {
                        return Err(missing(
                            "S3",
                            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or \
                             AWS_WEB_IDENTITY_TOKEN_FILE, AWS_CONTAINER_CREDENTIALS_RELATIVE_URI; \
                             AWS_METADATA_ENDPOINT to use the instance's role; \
                             AWS_SKIP_SIGNATURE=true for a public bucket)",
                        ));
                    }
                    if !any_set(&["AWS_SECRET_ACCESS_KEY"]) {
                        return Err(missing(
                            "S3",
                            "AWS_SECRET_ACCESS_KEY (AWS_ACCESS_KEY_ID is set without it)",
                        ));
                    }
                }
                let mut builder = object_store::aws::AmazonS3Builder::from_env()
                    .with_url(location)
                    .with_retry(retry())
                    .with_http_connector(connector());
                // The standard variable of the AWS CLI and SDKs; object_store reads AWS_REGION.
                if std::env::var_os("AWS_REGION").is_none()
                    && let Ok(region) = std::env::var("AWS_DEFAULT_REGION")
                {
                    builder = builder.with_region(region);
                }
                Arc::new(builder.build().map_err(invalid)?)
            }
            "gs" => {
                let adc = std::env::var_os("HOME").is_some_and(|h| {
                    std::path::Path::new(&h)
                        .join(".config/gcloud/application_default_credentials.json")
                        .is_file()
                });
                if !adc
                    && !any_set(&[
                        "GOOGLE_SERVICE_ACCOUNT",
                        "GOOGLE_SERVICE_ACCOUNT_PATH",
                        "GOOGLE_SERVICE_ACCOUNT_KEY",
                        "GOOGLE_APPLICATION_CREDENTIALS",
                        "GOOGLE_SKIP_SIGNATURE",
                    ])
                {
                    return Err(missing(
                        "Google Cloud Storage",
                        "GOOGLE_APPLICATION_CREDENTIALS (or GOOGLE_SERVICE_ACCOUNT, \
                         GOOGLE_SERVICE_ACCOUNT_KEY; or run `gcloud auth application-default login`)",
                    ));
                }
                Arc::new(
                    object_store::gcp::GoogleCloudStorageBuilder::from_env()
                        .with_url(location)
                        .with_retry(retry())
                        .with_http_connector(connector())
                        .build()
                        .map_err(invalid)?,
                )
            }
            _ => {
                if !any_set(&[
                    "AZURE_STORAGE_ACCOUNT_KEY",
                    "AZURE_STORAGE_ACCESS_KEY",
                    "AZURE_STORAGE_MASTER_KEY",
                    "AZURE_STORAGE_SAS_KEY",
                    "AZURE_STORAGE_SAS_TOKEN",
                    "AZURE_STORAGE_TOKEN",
                    "AZURE_CLIENT_SECRET",
                    "AZURE_FEDERATED_TOKEN_FILE",
                    "AZURE_STORAGE_USE_EMULATOR",
                    "AZURE_MSI_ENDPOINT",
                    "AZURE_USE_AZURE_CLI",
                    "AZURE_SKIP_SIGNATURE",
                ]) {
                    return Err(missing(
                        "Azure Blob Storage",
                        "AZURE_STORAGE_ACCOUNT_NAME with AZURE_STORAGE_ACCOUNT_KEY (or \
                         AZURE_STORAGE_SAS_KEY, AZURE_CLIENT_ID/AZURE_CLIENT_SECRET/AZURE_TENANT_ID, \
                         AZURE_FEDERATED_TOKEN_FILE, AZURE_USE_AZURE_CLI=true)",
                    ));
                }
                Arc::new(
                    object_store::azure::MicrosoftAzureBuilder::from_env()
                        .with_url(location)
                        .with_retry(retry())
                        .with_http_connector(connector())
                        .build()
                        .map_err(invalid)?,
                )
            }
        };
        Remote::new(location, store)
    }
}

#[cfg(not(feature = "cloud"))]
mod cloud {
    use super::{LocationError, Remote};

    pub(super) fn open(location: &str, _scheme: &str) -> Result<Remote, LocationError> {
        Err(LocationError::NoCloudFeature {
            location: location.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn paths_and_file_urls_are_local() {
        assert!(
            matches!(parse_location("data/x"), Ok(Location::Local(p)) if p == Path::new("data/x"))
        );
        assert!(
            matches!(parse_location("file:///tmp/x"), Ok(Location::Local(p)) if p == Path::new("/tmp/x"))
        );
        assert!(matches!(
            parse_location("file://relative/x"),
            Err(LocationError::Invalid { .. })
        ));
    }

    #[test]
    fn an_unknown_scheme_is_named() {
        let err = parse_location("ftp://host/x").unwrap_err();
        assert!(err.is_usage());
        let text = err.to_string();
        assert!(text.contains("ftp://") && text.contains("s3://"), "{text}");
    }

    /// A file above the multipart threshold goes up in parts and reads back whole.
    #[test]
    fn large_files_go_up_in_parts() {
        let store = Arc::new(object_store::memory::InMemory::new());
        let r = Remote::new("s3://b/p", store).unwrap();
        let bytes: Vec<u8> = (0..MULTIPART_ABOVE * 2 + 5)
            .map(|i| (i % 251) as u8)
            .collect();
        r.put("t/big.parquet", bytes.clone()).unwrap();
        assert_eq!(r.get("t/big.parquet").unwrap().unwrap(), bytes);
        assert_eq!(r.list("t").unwrap().unwrap(), ["big.parquet"]);
        let (tail, size) = r.get_suffix("t/big.parquet", 10).unwrap().unwrap();
        assert_eq!(
            (&tail[..], size),
            (&bytes[bytes.len() - 10..], bytes.len() as u64)
        );
        assert_eq!(r.get("t/missing.parquet").unwrap(), None);
        r.delete("t/missing.parquet").unwrap();
    }

    #[test]
    fn keys_and_urls_of_a_prefix() {
        let store = Arc::new(object_store::memory::InMemory::new());
        let r = Remote::new("s3://b/some/prefix/", store.clone()).unwrap();
        assert_eq!(r.url(), "s3://b/some/prefix");
        assert_eq!(r.base(), "s3://b");
        assert_eq!(
            r.key("models/x@main.parquet").as_ref(),
            "some/prefix/models/x@main.parquet"
        );
        let r = Remote::new("s3://b", store).unwrap();
        assert_eq!(r.key("models/a.parquet").as_ref(), "models/a.parquet");
        assert_eq!(r.url_of("models/a.parquet"), "s3://b/models/a.parquet");
    }
}
