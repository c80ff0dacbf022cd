//! Secret values the tests hand tether (API and ServiceAccount tokens, passwords, webhook and notification
//! keys, private keys, the data of Secrets in a repository). Every output of tether the tests capture is
//! checked against all of them ([`assert_absent`]), so a leak fails the test in which it happens whichever
//! secret it is. Shared by every test of the process: another test's secret in an output is a leak too.

use std::path::Path;
use std::sync::Mutex;

static SECRETS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Shorter values would turn up in ordinary output by chance.
const SHORTEST: usize = 6;

/// Registers `value` as a secret and gives it back.
pub fn secret(value: impl Into<String>) -> String {
    let value = value.into();
    assert!(
        value.len() >= SHORTEST,
        "a test secret needs at least {SHORTEST} characters to be looked for in output"
    );
    let mut all = SECRETS.lock().unwrap_or_else(|e| e.into_inner());
    if !all.contains(&value) {
        all.push(value.clone());
    }
    value
}

/// Registers the private part of an OpenSSH or PEM private key file: its base64 lines after the first two
/// (those hold the format header and the public key, which tether may show).
pub fn secret_key_file(path: &Path) {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read private key {}: {e}", path.display()));
    secret_key_text(&text);
}

/// As [`secret_key_file`], for a key as a Secret's `data` holds it (base64).
pub fn secret_key_base64(encoded: &str) {
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .unwrap_or_else(|e| panic!("a private key in a Secret is not base64: {e}"));
    secret_key_text(&String::from_utf8_lossy(&key));
}

/// As [`secret_key_file`], for a key's text.
pub fn secret_key_text(text: &str) {
    let body: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-----"))
        .collect();
    for line in body.iter().skip(2).filter(|l| l.len() >= 16) {
        secret(*line);
    }
}

/// Panics if `text`, which `what` printed, contains a registered secret. The message says which output and
/// how long the secret is, never the secret itself.
pub fn assert_absent(what: &str, text: &str) {
    let all = SECRETS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(leaked) = all.iter().find(|s| text.contains(s.as_str())) {
        let len = leaked.len();
        drop(all);
        panic!("{what} contains a secret the tests gave tether ({len} characters)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registered_secret_is_found_in_output_and_named_only_by_its_length() {
        secret("hunter2-registered-in-a-test");
        assert_absent("clean output", "synced abc123: 3 created");
        let err = std::panic::catch_unwind(|| {
            assert_absent("a log", "password=hunter2-registered-in-a-test")
        })
        .unwrap_err();
        let msg = err.downcast_ref::<String>().unwrap();
        assert!(msg.contains("a log contains a secret"), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
    }

    #[test]
    fn only_the_private_lines_of_a_key_file_are_secret() {
        let key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\nAAAAMwAAAAtzc2gtZWQyNTUxOQAAACBpublicpart\nQUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0123456\n-----END OPENSSH PRIVATE KEY-----\n";
        secret_key_text(key);
        assert_absent(
            "the public half",
            "AAAAMwAAAAtzc2gtZWQyNTUxOQAAACBpublicpart",
        );
        assert!(std::panic::catch_unwind(|| assert_absent(
            "a log",
            "key QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0123456"
        ))
        .is_err());
    }
}
