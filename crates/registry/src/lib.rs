//! Container image registries: which tags a workload may move to, and what a registry has.
//!
//! - [`policy`]: tag policies (`glob:`, `semver:`, `regex:`) and choosing the newest tag.
//! - [`client`]: a rate-limited Docker Registry v2 / OCI client that lists tags and reads build times,
//!   fetching only what a policy needs and caching metadata on disk ([`cache`]).
//! - [`reference`](mod@reference) and [`credentials`]: image names normalised like Docker's, and pull credentials parsed
//!   from Kubernetes Secrets and docker config files.
pub mod cache;
pub mod client;
pub mod credentials;
pub mod error;
pub mod policy;
pub mod reference;

pub use cache::{ImageMeta, RefreshPolicy};
pub use client::manifest::{BuildTimes, Platform};
pub use client::ratelimit::RateLimit;
pub use client::{ClientConfig, RegistryClient, TagDetail};
pub use credentials::{Credential, Credentials, CredentialsError};
pub use error::{Error, TransportHint};
pub use policy::{TagInfo, TagPolicy};
pub use reference::{ImageRef, ImageRepo, ReferenceError};
