//! The seed corpus: checked-in inputs under `xray-fuzz/corpus/<target>/`, one file each, taken
//! from the repository's own test data (see `corpus/README.md`). Add a file there to steer a
//! target; a failure's saved input can go there once it is fixed.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// Where the corpus is read from: `--corpus DIR`, else the crate's own `corpus/`.
#[derive(Debug, Clone)]
pub(crate) struct Corpus {
    root: PathBuf,
}

impl Corpus {
    pub(crate) fn new(root: Option<PathBuf>) -> Self {
        Corpus {
            root: root.unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")),
        }
    }

    /// Every file of `corpus/<dir>/`, by name.
    ///
    /// # Errors
    ///
    /// When the folder cannot be read or holds no file: a target without seeds would only
    /// test random bytes, so that is refused rather than run quietly.
    pub(crate) fn files(&self, dir: &str) -> Result<Vec<Vec<u8>>, String> {
        let path = self.root.join(dir);
        let entries = std::fs::read_dir(&path)
            .map_err(|err| format!("cannot read the corpus folder {}: {err}", path.display()))?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        paths.sort();
        let mut files = Vec::with_capacity(paths.len());
        for p in &paths {
            files.push(
                std::fs::read(p).map_err(|err| format!("cannot read {}: {err}", p.display()))?,
            );
        }
        if files.is_empty() {
            return Err(format!("the corpus folder {} is empty", path.display()));
        }
        Ok(files)
    }

    /// The files of `corpus/<dir>/` that parse as JSON, parsed.
    pub(crate) fn json(&self, dir: &str) -> Result<Vec<Value>, String> {
        let values: Vec<Value> = self
            .files(dir)?
            .iter()
            .filter_map(|bytes| serde_json::from_slice(bytes).ok())
            .collect();
        if values.is_empty() {
            return Err(format!("no file of the corpus folder {dir} is JSON"));
        }
        Ok(values)
    }
}
