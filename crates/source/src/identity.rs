//! The agent's deploy key: an ed25519 SSH key the agent generates for itself, so the only thing a person
//! does with it is add its public half to the repository as a deploy key (Flux v1's `fluxctl identity`).
//! The private key never appears in a log, an error or `Debug` output; it is written only to the key file
//! git uses (mode 0600) and to the Secret that keeps it across restarts.

use std::fmt;
use std::path::Path;

use ssh_key::{Algorithm, HashAlg, LineEnding, PrivateKey};

/// A deploy key.
pub struct Identity {
    key: PrivateKey,
}

/// The key could not be made, read or written.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The stored key is not an OpenSSH private key.
    #[error(
        "the stored deploy key is not an unencrypted OpenSSH private key ({0}); regenerate it"
    )]
    Parse(String),
    /// Generating or encoding failed.
    #[error("cannot create the deploy key: {0}")]
    Create(String),
    /// The key file could not be written.
    #[error("cannot write the deploy key to {path}: {source}")]
    Write {
        /// The key file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", self.fingerprint())
    }
}

impl Identity {
    /// A new ed25519 key with `comment` (shown next to the key in the repository's deploy key list).
    pub fn generate(comment: &str) -> Result<Self, IdentityError> {
        let mut key = PrivateKey::random(&mut ssh_key::rand_core::OsRng, Algorithm::Ed25519)
            .map_err(|e| IdentityError::Create(e.to_string()))?;
        key.set_comment(comment);
        Ok(Identity { key })
    }

    /// Reads an OpenSSH private key (as stored in the Secret).
    pub fn from_openssh(text: &str) -> Result<Self, IdentityError> {
        let key =
            PrivateKey::from_openssh(text).map_err(|e| IdentityError::Parse(e.to_string()))?;
        if key.is_encrypted() {
            return Err(IdentityError::Parse("it is encrypted".into()));
        }
        Ok(Identity { key })
    }

    /// The private key in OpenSSH format, for storing.
    pub fn to_openssh(&self) -> Result<String, IdentityError> {
        self.key
            .to_openssh(LineEnding::LF)
            .map(|z| z.as_str().to_owned())
            .map_err(|e| IdentityError::Create(e.to_string()))
    }

    /// The public key as one `authorized_keys` line: what to add as a deploy key.
    pub fn public_line(&self) -> String {
        self.key
            .public_key()
            .to_openssh()
            .unwrap_or_else(|_| String::from("<the public key cannot be encoded>"))
    }

    /// The SHA256 fingerprint, as `ssh-keygen -l` and Git hosts show it.
    pub fn fingerprint(&self) -> String {
        self.key
            .public_key()
            .fingerprint(HashAlg::Sha256)
            .to_string()
    }

    /// Writes the private key to `path` with mode 0600 (created or replaced), for git's ssh.
    pub fn write_key_file(&self, path: &Path) -> Result<(), IdentityError> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let fail = |source| IdentityError::Write {
            path: path.display().to_string(),
            source,
        };
        let text = self.to_openssh()?;
        let tmp = path.with_extension("partial");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(fail)?;
        f.write_all(text.as_bytes()).map_err(fail)?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(fail)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_generated_key_round_trips_and_never_shows_its_private_half() {
        let id = Identity::generate("tether@demo").unwrap();
        let stored = id.to_openssh().unwrap();
        assert!(stored.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
        let back = Identity::from_openssh(&stored).unwrap();
        assert_eq!(back.public_line(), id.public_line());
        assert!(
            id.public_line().starts_with("ssh-ed25519 AAAA")
                && id.public_line().ends_with(" tether@demo")
        );
        assert!(id.fingerprint().starts_with("SHA256:"));
        assert!(!format!("{id:?}").contains("PRIVATE"));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        id.write_key_file(&file).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(Identity::from_openssh("not a key").is_err());
        assert_ne!(
            Identity::generate("x").unwrap().public_line(),
            id.public_line()
        );
    }
}
