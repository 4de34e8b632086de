//! Metadata: unindexed JSON values grouped under namespaces.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The namespace metadata goes under when the caller names none.
pub const DEFAULT_METADATA_NAMESPACE: &str = "default";

/// Namespaces starting with this prefix belong to AWS SDKs and clients.
const RESERVED_PREFIX: &str = "AWS.";

/// Whether `namespace` belongs to AWS SDKs (starts with `AWS.`).
pub(crate) fn is_reserved_namespace(namespace: &str) -> bool {
    namespace.starts_with(RESERVED_PREFIX)
}

/// Why metadata was refused.
///
/// # Examples
///
/// ```
/// use xray_sdk::{Document, SegmentId};
/// use xray_sdk::document::MetadataError;
///
/// let mut doc = Document::new("api", SegmentId::new(), 1_735_689_600.0);
/// let err = doc.put_metadata_in("AWS.mine", "k", &1).unwrap_err();
/// assert!(err.is_reserved_namespace());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetadataError {
    /// Namespaces starting with `AWS.` are reserved for AWS SDKs; pick another namespace.
    #[error("metadata namespaces starting with `AWS.` are reserved for AWS SDKs")]
    ReservedNamespace,
    /// The value's `Serialize` implementation failed or produced something JSON cannot hold
    /// (a map with non-string keys, for example).
    #[error("metadata value could not be converted to JSON")]
    NotSerializable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl MetadataError {
    /// Whether the namespace was refused because it is reserved.
    pub fn is_reserved_namespace(&self) -> bool {
        matches!(self, Self::ReservedNamespace)
    }
}

/// The metadata of one document: namespace -> key -> any JSON value.
///
/// # Examples
///
/// ```
/// use xray_sdk::document::Metadata;
///
/// let mut m = Metadata::new();
/// m.insert("default", "basket", &serde_json::json!({"items": 3}))?;
/// assert_eq!(m.get("default", "basket").unwrap()["items"], 3);
/// # Ok::<(), xray_sdk::document::MetadataError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Metadata {
    // A namespace sent by another SDK may hold a non-object; it is kept as it came.
    namespaces: Map<String, Value>,
}

impl Metadata {
    /// No metadata.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores `value` under `namespace` / `key`, replacing what was there.
    ///
    /// Namespaces starting with `AWS.` are refused; see [`Metadata::insert_reserved`].
    pub fn insert<T: Serialize + ?Sized>(
        &mut self,
        namespace: &str,
        key: &str,
        value: &T,
    ) -> Result<(), MetadataError> {
        if is_reserved_namespace(namespace) {
            return Err(MetadataError::ReservedNamespace);
        }
        self.insert_unchecked(namespace, key, value)
    }

    /// Stores `value` under a namespace reserved for AWS SDKs (one starting with `AWS.`).
    ///
    /// For the `xray-*` integration crates, which record what the AWS SDK did. Application code
    /// should use [`Metadata::insert`]. A namespace without the `AWS.` prefix is accepted too.
    pub fn insert_reserved<T: Serialize + ?Sized>(
        &mut self,
        namespace: &str,
        key: &str,
        value: &T,
    ) -> Result<(), MetadataError> {
        self.insert_unchecked(namespace, key, value)
    }

    fn insert_unchecked<T: Serialize + ?Sized>(
        &mut self,
        namespace: &str,
        key: &str,
        value: &T,
    ) -> Result<(), MetadataError> {
        let value =
            serde_json::to_value(value).map_err(|e| MetadataError::NotSerializable(Box::new(e)))?;
        let ns = self
            .namespaces
            .entry(namespace)
            .or_insert_with(|| Value::Object(Map::new()));
        if !ns.is_object() {
            *ns = Value::Object(Map::new());
        }
        if let Value::Object(map) = ns {
            map.insert(key.to_owned(), value);
        }
        Ok(())
    }

    /// The value under `namespace` / `key`.
    pub fn get(&self, namespace: &str, key: &str) -> Option<&Value> {
        self.namespaces.get(namespace)?.get(key)
    }

    /// The whole namespace.
    pub fn namespace(&self, namespace: &str) -> Option<&Value> {
        self.namespaces.get(namespace)
    }

    /// The namespaces and their contents.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.namespaces.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Whether there is no metadata.
    pub fn is_empty(&self) -> bool {
        self.namespaces.is_empty()
    }
}
