//! The SSH host keys the agent trusts by default: the ones github.com, gitlab.com and bitbucket.org publish,
//! each copied from the provider's own documentation and checked against the fingerprints published there
//! (see the test below). A host that is not listed is refused by ssh, as it should be: a different Git host
//! needs `--git-known-hosts FILE`.

use crate::InstallError;

/// One provider's published keys, with the page they come from.
struct Provider {
    host: &'static str,
    source: &'static str,
    /// `(key type, base64 key, published SHA256 fingerprint)`.
    keys: &'static [(&'static str, &'static str, &'static str)],
}

const PROVIDERS: &[Provider] = &[
    Provider {
        host: "github.com",
        source: "https://docs.github.com/en/authentication/keeping-your-account-and-data-secure/githubs-ssh-key-fingerprints",
        keys: &[
            (
                "ssh-ed25519",
                "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
                "+DiY3wvvV6TuJJhbpZisF/zLDA0zPMSvHdkr4UvCOqU",
            ),
            (
                "ecdsa-sha2-nistp256",
                "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEmKSENjQEezOmxkZMy7opKgwFB9nkt5YRrYMjNuG5N87uRgg6CLrbo5wAdT/y6v0mKV0U2w0WZ2YB/++Tpockg=",
                "p2QAMXNIC1TJYWeIOttrVc98/R1BUFWu3/LiyKgUfQM",
            ),
            (
                "ssh-rsa",
                "AAAAB3NzaC1yc2EAAAADAQABAAABgQCj7ndNxQowgcQnjshcLrqPEiiphnt+VTTvDP6mHBL9j1aNUkY4Ue1gvwnGLVlOhGeYrnZaMgRK6+PKCUXaDbC7qtbW8gIkhL7aGCsOr/C56SJMy/BCZfxd1nWzAOxSDPgVsmerOBYfNqltV9/hWCqBywINIR+5dIg6JTJ72pcEpEjcYgXkE2YEFXV1JHnsKgbLWNlhScqb2UmyRkQyytRLtL+38TGxkxCflmO+5Z8CSSNY7GidjMIZ7Q4zMjA2n1nGrlTDkzwDCsw+wqFPGQA179cnfGWOWRVruj16z6XyvxvjJwbz0wQZ75XK5tKSb7FNyeIEs4TT4jk+S4dhPeAUC5y+bDYirYgM4GC7uEnztnZyaVWQ7B381AK4Qdrwt51ZqExKbQpTUNn+EjqoTwvqNj4kqx5QUCI0ThS/YkOxJCXmPUWZbhjpCg56i+2aB6CmK2JGhn57K5mj0MNdBXA4/WnwH6XoPWJzK5Nyu2zB3nAZp+S5hpQs+p1vN1/wsjk=",
                "uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s",
            ),
        ],
    },
    Provider {
        host: "gitlab.com",
        source: "https://docs.gitlab.com/ee/user/gitlab_com/#ssh-known_hosts-entries",
        keys: &[
            (
                "ssh-ed25519",
                "AAAAC3NzaC1lZDI1NTE5AAAAIAfuCHKVTjquxvt6CM6tdG4SLp1Btn/nOeHHE5UOzRdf",
                "eUXGGm1YGsMAS7vkcx6JOJdOGHPem5gQp4taiCfCLB8",
            ),
            (
                "ecdsa-sha2-nistp256",
                "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBFSMqzJeV9rUzU4kWitGjeR4PWSa29SPqJ1fVkhtj3Hw9xjLVXVYrU9QlYWrOLXBpQ6KWjbjTDTdDkoohFzgbEY=",
                "HbW3g8zUjNSksFbqTiUWPWg2Bq1x8xdGUrliXFzSnUw",
            ),
            (
                "ssh-rsa",
                "AAAAB3NzaC1yc2EAAAADAQABAAABAQCsj2bNKTBSpIYDEGk9KxsGh3mySTRgMtXL583qmBpzeQ+jqCMRgBqB98u3z++J1sKlXHWfM9dyhSevkMwSbhoR8XIq/U0tCNyokEi/ueaBMCvbcTHhO7FcwzY92WK4Yt0aGROY5qX2UKSeOvuP4D6TPqKF1onrSzH9bx9XUf2lEdWT/ia1NEKjunUqu1xOB/StKDHMoX4/OKyIzuS0q/T1zOATthvasJFoPrAjkohTyaDUz2LN5JoH839hViyEG82yB+MjcFV5MU3N1l1QL3cVUCh93xSaua1N85qivl+siMkPGbO5xR/En4iEY6K2XPASUEMaieWVNTRCtJ4S8H+9",
                "ROQFvPThGrW4RuWLoL9tq9I9zJ42fK4XywyRtbOz/EQ",
            ),
        ],
    },
    // Bitbucket's RSA key is left out: the blog post announcing the 2023 keys publishes only these two with
    // their fingerprints, and OpenSSH picks the ed25519 key when known_hosts holds one.
    Provider {
        host: "bitbucket.org",
        source: "https://bitbucket.org/blog/ssh-host-key-changes",
        keys: &[
            (
                "ssh-ed25519",
                "AAAAC3NzaC1lZDI1NTE5AAAAIIazEu89wgQZ4bqs3d63QSMzYVa0MuJ2e2gKTKqu+UUO",
                "ybgmFkzwOSotHTHLJgHO0QN8L0xErw6vd0VhFA9m3SM",
            ),
            (
                "ecdsa-sha2-nistp256",
                "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBPIQmuzMBuKdWeF4+a2sjSSpBK0iqitSQ+5BM9KhpexuGt20JpTVM7u5BDZngncgrqDMbWdxMWWOGtZ9UgbqgZE=",
                "FC73VB6C4OQLSCrjEayhMp9UMxS97caD/Yyi2bhW/J0",
            ),
        ],
    },
];

/// The default `known_hosts` file: every published key, under a comment naming where it comes from.
pub(crate) fn published() -> String {
    let mut out = String::from(
        "# The SSH host keys github.com, gitlab.com and bitbucket.org publish; any other host is refused.\n\
         # Give your own file with `tether install --git-known-hosts FILE` for another Git host.\n",
    );
    for p in PROVIDERS {
        out.push_str(&format!("# {}: {}\n", p.host, p.source));
        for (kind, key, _) in p.keys {
            out.push_str(&format!("{} {kind} {key}\n", p.host));
        }
    }
    out
}

/// Checks a user's known_hosts file enough to catch the wrong file (a private key would otherwise end up in
/// a ConfigMap anyone in the namespace may read): at least one `[@marker] host key-type key` line.
pub(crate) fn check(text: &str) -> Result<(), InstallError> {
    let is_entry = |line: &str| {
        let mut fields = line.split_whitespace().skip_while(|f| f.starts_with('@'));
        let (_host, kind, key) = (fields.next(), fields.next(), fields.next());
        kind.is_some_and(|k| ["ssh-", "ecdsa-", "sk-"].iter().any(|p| k.starts_with(p)))
            && key.is_some()
    };
    let text = text.trim_start_matches('\u{feff}');
    if text.contains("PRIVATE KEY")
        || !text
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#'))
            .any(is_entry)
    {
        return Err(InstallError::KnownHosts);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use sha2::Digest as _;

    #[test]
    fn every_embedded_key_has_the_fingerprint_its_provider_publishes() {
        let b64 = base64::engine::general_purpose::STANDARD;
        let fingerprint = base64::engine::general_purpose::STANDARD_NO_PAD;
        for p in PROVIDERS {
            for (kind, key, published) in p.keys {
                let blob = b64.decode(key).unwrap();
                // The blob starts with its own type name, so a key pasted under the wrong type fails too.
                let name_len = u32::from_be_bytes(blob[..4].try_into().unwrap()) as usize;
                assert_eq!(&blob[4..4 + name_len], kind.as_bytes(), "{} {kind}", p.host);
                let sum = fingerprint.encode(sha2::Sha256::digest(&blob));
                assert_eq!(&sum, published, "{} {kind}", p.host);
            }
        }
    }

    #[test]
    fn the_default_file_names_each_source_above_its_keys() {
        let text = published();
        for p in PROVIDERS {
            let at = text.find(&format!("# {}: https://", p.host)).unwrap();
            let first_key = text.find(&format!("\n{} ssh-ed25519 ", p.host)).unwrap();
            assert!(at < first_key, "{}", p.host);
        }
        check(&text).unwrap();
    }

    #[test]
    fn a_file_without_host_lines_is_refused() {
        assert_eq!(check("# only a comment\n\n"), Err(InstallError::KnownHosts));
        assert_eq!(
            check("-----BEGIN OPENSSH PRIVATE KEY-----\n"),
            Err(InstallError::KnownHosts)
        );
        assert_eq!(
            check("host.example ssh-ed25519 AAAA\n-----BEGIN OPENSSH PRIVATE KEY-----\n"),
            Err(InstallError::KnownHosts)
        );
        check("example.com ssh-ed25519 AAAA\n").unwrap();
        check("@cert-authority *.example.com ssh-rsa AAAA\n").unwrap();
    }
}
