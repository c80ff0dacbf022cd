//! Why a sync could not be applied.

use std::fmt;

use tether_core::{ObjectId, Provenance};
use tether_plan::PlanError;

/// The server rejected one object, or could not be asked about it.
#[derive(Debug)]
pub struct ObjectFailure {
    /// The object.
    pub id: ObjectId,
    /// Its file and line in Git.
    pub at: Provenance,
    /// What the client reported: the API server's status, or why no answer came.
    pub error: kube::Error,
}

impl ObjectFailure {
    /// The failure of `desired`. What the server said about a Secret is kept without the Secret's values
    /// (its answers may quote them, and so may an admission webhook): this is what logs, notifications and
    /// Events show.
    pub fn of(desired: &tether_plan::Desired, mut error: kube::Error) -> Self {
        if let kube::Error::Api(status) = &mut error {
            if tether_plan::secret::is_secret(&desired.kind) {
                let secrets = desired
                    .body_value()
                    .map(|b| tether_plan::secret::values(&b))
                    .unwrap_or_default();
                status.message = tether_plan::secret::redact(&status.message, &secrets);
            }
        }
        ObjectFailure {
            id: desired.id.clone(),
            at: desired.source.clone(),
            error,
        }
    }

    /// The API server's own message when it answered, else the client's; control characters escaped (an
    /// admission webhook's message is anyone's text).
    pub fn message(&self) -> String {
        let text = match &self.error {
            kube::Error::Api(s) => s.message.clone(),
            e => e.to_string(),
        };
        tether_core::report::Shown(&text).to_string()
    }

    /// The HTTP status the server answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match &self.error {
            kube::Error::Api(s) => Some(s.code),
            _ => None,
        }
    }
}

impl fmt::Display for ObjectFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.id, self.at, self.message())
    }
}

fn list<T: fmt::Display>(items: &[T]) -> String {
    tether_core::report::lines(items)
}

/// A sync failed. Unless the variant says otherwise, nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Objects cannot be planned (unknown kinds, duplicates). Fix the manifests.
    #[error("{} object(s) cannot be applied; nothing was changed:{}", .0.len(), list(.0))]
    Invalid(Vec<PlanError>),
    /// The server's dry-run rejected objects. Nothing was changed (Namespaces/CRDs this sync had just created
    /// were removed again).
    #[error("the API server rejected {} object(s); nothing was changed:{}", .0.len(), list(.0))]
    Rejected(Vec<ObjectFailure>),
    /// Applying failed after validation passed (a race with another writer, or a webhook). Objects applied
    /// before the failure keep their new state; Namespaces/CRDs this sync created were removed again.
    #[error(
        "applying failed for {} object(s) after validation passed:{}\n{} object(s) were changed before the \
         failure and keep their new state (the next sync applies the commit again):{}",
        failures.len(), list(failures), changed.len(), list(changed)
    )]
    ApplyFailed {
        /// The writes that failed.
        failures: Vec<ObjectFailure>,
        /// The objects this sync created or changed before the failure that stay so.
        changed: Vec<ObjectId>,
    },
    /// A request the sync depends on failed (discovery, listing live objects). Retried with backoff.
    #[error("{what}: {source}")]
    Api {
        /// What tether was doing.
        what: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
}

impl Error {
    /// True when retrying later may succeed without a change in Git.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Api { .. } | Error::ApplyFailed { .. })
    }

    /// A short stable label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Error::Invalid(_) => "invalid",
            Error::Rejected(_) => "rejected",
            Error::ApplyFailed { .. } => "apply_failed",
            Error::Api { .. } => "api",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_admission_message_cannot_forge_a_line_of_output() {
        let status = kube::core::Status {
            code: 400,
            message: "denied\nlevel=error msg=forged \u{1b}[2J".into(),
            ..Default::default()
        };
        let failure = ObjectFailure {
            id: ObjectId::new("v1", "ConfigMap", Some("a"), "c"),
            at: Provenance {
                file: "c.yaml".into(),
                line: 1,
            },
            error: kube::Error::Api(Box::new(status)),
        };
        for shown in [failure.message(), failure.to_string()] {
            assert!(!shown.contains(['\n', '\u{1b}']), "{shown}");
            assert!(shown.contains("denied\\nlevel=error"), "{shown}");
        }
    }
}
