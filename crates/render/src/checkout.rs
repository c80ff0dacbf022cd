//! The checkout is untrusted input: a link may point anywhere on the agent's disk (its cache, its keys,
//! `/dev/zero`). Render reads only regular files whose real location is inside the checkout, each up to a size
//! limit, and names the link when it refuses one.

use std::io::Read;
use std::path::{Path, PathBuf};

/// A checked-out tree and its real location.
#[derive(Debug)]
pub(crate) struct Checkout<'a> {
    /// The tree as given (paths in messages are relative to it).
    pub root: &'a Path,
    /// Its real location, links resolved.
    real: PathBuf,
    /// The largest file read.
    pub max_file_bytes: u64,
}

impl<'a> Checkout<'a> {
    /// The checkout at `root`.
    pub fn new(root: &'a Path, max_file_bytes: u64) -> Result<Self, String> {
        let real = root
            .canonicalize()
            .map_err(|e| format!("cannot resolve the checkout {}: {e}", root.display()))?;
        Ok(Checkout {
            root,
            real,
            max_file_bytes,
        })
    }

    /// The real location of `rel` (repository-relative), if it is inside the checkout.
    pub fn resolve(&self, rel: &str) -> Result<PathBuf, String> {
        let path = self.root.join(rel);
        let real = path
            .canonicalize()
            .map_err(|e| format!("cannot resolve: {e}"))?;
        if real.starts_with(&self.real) {
            Ok(real)
        } else {
            Err(format!(
                "is or passes through a link to {}, outside the repository; tether reads only files inside \
                 the checkout (copy the file into the repository instead)",
                real.display()
            ))
        }
    }

    /// Reads manifest `rel`: a regular file inside the checkout, no larger than the limit.
    pub fn read(&self, rel: &str) -> Result<String, String> {
        String::from_utf8(self.read_bytes(rel)?).map_err(|e| {
            format!(
                "is not UTF-8 text (invalid byte at offset {}); manifests are YAML text",
                e.utf8_error().valid_up_to()
            )
        })
    }

    /// As [`Checkout::read`], any bytes.
    pub fn read_bytes(&self, rel: &str) -> Result<Vec<u8>, String> {
        let real = self.resolve(rel)?;
        let meta = std::fs::metadata(&real).map_err(|e| format!("cannot read: {e}"))?;
        if !meta.is_file() {
            return Err(
                "is not a regular file (a device, pipe or socket); only files are read".into(),
            );
        }
        let too_big = |size: u64| {
            format!(
                "is {} bytes, larger than the {} bytes a manifest may have; split it, or raise the limit",
                size, self.max_file_bytes
            )
        };
        if meta.len() > self.max_file_bytes {
            return Err(too_big(meta.len()));
        }
        // The size is checked again while reading: the file may grow in between.
        let mut bytes = Vec::new();
        std::fs::File::open(&real)
            .and_then(|f| f.take(self.max_file_bytes + 1).read_to_end(&mut bytes))
            .map_err(|e| format!("cannot read: {e}"))?;
        if bytes.len() as u64 > self.max_file_bytes {
            return Err(too_big(bytes.len() as u64));
        }
        Ok(bytes)
    }

    /// Refuses any link under directory `rel` whose target is outside the checkout, so a program tether
    /// runs there (kustomize) cannot be led out of it either.
    pub fn no_links_out(&self, rel: &str) -> Result<(), String> {
        let dir = self.root.join(rel);
        for entry in walkdir::WalkDir::new(&dir)
            .follow_links(false)
            .into_iter()
            .filter_entry(|e| e.file_name() != ".git")
            .filter_map(Result::ok)
            .filter(|e| e.path_is_symlink())
        {
            let link = entry
                .path()
                .strip_prefix(self.root)
                .unwrap_or(entry.path())
                .to_string_lossy()
                .into_owned();
            match self.resolve(&link) {
                Ok(_) => {}
                // A dangling link reads nothing; kustomize reports it if it is used.
                Err(e) if e.starts_with("cannot resolve") => {}
                Err(e) => return Err(format!("{link} {e}")),
            }
        }
        Ok(())
    }
}
