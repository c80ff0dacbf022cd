//! Git URLs as users give them: `ssh://`, scp-like `git@host:path`, `https://`, `file://` or a local path.

use std::fmt;

/// A parsed `--git-url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitUrl {
    /// `ssh://...` or scp-like `user@host:path`.
    Ssh(String),
    /// `https://...` or `http://...` (credentials never kept in the URL).
    Http(String),
    /// `file://...` or a local path (made absolute).
    File(String),
}

impl GitUrl {
    /// Classifies a URL; rejects schemes git would not understand and credentials embedded in HTTP URLs.
    pub fn parse(url: &str) -> Result<GitUrl, String> {
        let url = url.trim();
        if url.is_empty() {
            return Err("--git-url is empty".into());
        }
        if let Some(rest) = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
        {
            if rest
                .split('/')
                .next()
                .is_some_and(|host| host.contains('@'))
            {
                return Err(format!(
                    "--git-url {} carries credentials; give them through TETHER_GIT_HTTPS_USER and \
                     TETHER_GIT_HTTPS_PASSWORD (or --git-https-credentials-file) so they never appear in logs",
                    redact(url)
                ));
            }
            return Ok(GitUrl::Http(url.to_owned()));
        }
        if let Some(rest) = url
            .strip_prefix("ssh://")
            .or_else(|| url.strip_prefix("git+ssh://"))
        {
            let authority = rest.split('/').next().unwrap_or_default();
            if authority
                .rsplit_once('@')
                .is_some_and(|(user, _)| user.contains(':'))
            {
                // git would store it in the clone's config, and every error would print it.
                return Err(format!(
                    "--git-url {} carries a password; SSH authenticates with a key: give it with --git-ssh-key",
                    redact(url)
                ));
            }
            return Ok(GitUrl::Ssh(url.to_owned()));
        }
        if let Some(path) = url.strip_prefix("file://") {
            return Ok(GitUrl::File(format!("file://{path}")));
        }
        if url.contains("://") {
            return Err(format!(
                "--git-url {} has an unsupported scheme; use ssh://, git@host:path, https://, file:// or a path",
                redact(url)
            ));
        }
        // scp-like syntax: a colon before any slash, as git itself decides.
        if let Some(colon) = url.find(':') {
            if !url[..colon].contains('/') {
                return Ok(GitUrl::Ssh(url.to_owned()));
            }
        }
        let path = std::path::Path::new(url);
        let abs = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|e| format!("cannot resolve relative --git-url {url}: {e}"))?
                .join(path)
        };
        Ok(GitUrl::File(format!("file://{}", abs.display())))
    }

    /// The URL as passed to git.
    pub fn as_str(&self) -> &str {
        match self {
            GitUrl::Ssh(s) | GitUrl::Http(s) | GitUrl::File(s) => s,
        }
    }
}

impl fmt::Display for GitUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(self.as_str()))
    }
}

/// Removes the credentials from a URL of any scheme, for logs and errors: all of `user:password@` (HTTP(S),
/// unknown schemes, whatever their case), only the password of an SSH URL (its user names the account).
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = match rest.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (rest, None),
    };
    let Some((user, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    let userinfo = if matches!(scheme.to_ascii_lowercase().as_str(), "ssh" | "git+ssh") {
        match user.split_once(':') {
            Some((name, _)) => format!("{name}:***"),
            None => return url.to_owned(),
        }
    } else {
        "***".to_owned()
    };
    let path = path.map(|p| format!("/{p}")).unwrap_or_default();
    format!("{scheme}://{userinfo}@{host}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_every_form_users_write() {
        assert!(matches!(
            GitUrl::parse("git@github.com:org/repo").unwrap(),
            GitUrl::Ssh(_)
        ));
        assert!(matches!(
            GitUrl::parse("ssh://git@host:2222/r.git").unwrap(),
            GitUrl::Ssh(_)
        ));
        assert!(matches!(
            GitUrl::parse("https://host/r.git").unwrap(),
            GitUrl::Http(_)
        ));
        assert_eq!(
            GitUrl::parse("file:///srv/r.git").unwrap().as_str(),
            "file:///srv/r.git"
        );
        assert_eq!(
            GitUrl::parse("/srv/r.git").unwrap().as_str(),
            "file:///srv/r.git"
        );
        assert!(GitUrl::parse("ftp://host/r").is_err());
    }

    #[test]
    fn refuses_credentials_in_https_urls_without_echoing_them() {
        let err = GitUrl::parse("https://bob:s3cret@host/r.git").unwrap_err();
        assert!(!err.contains("s3cret"), "{err}");
        assert!(err.contains("TETHER_GIT_HTTPS_PASSWORD"), "{err}");
        assert_eq!(
            redact("https://bob:s3cret@host/r.git"),
            "https://***@host/r.git"
        );
        let err = GitUrl::parse("ssh://git:s3cret@host:2222/r.git").unwrap_err();
        assert!(
            !err.contains("s3cret") && err.contains("--git-ssh-key"),
            "{err}"
        );
        assert_eq!(
            redact("ssh://git:s3cret@host/r.git"),
            "ssh://git:***@host/r.git"
        );
        assert!(GitUrl::parse("ssh://git@host/r.git").is_ok());
    }

    #[test]
    fn credentials_are_taken_out_of_urls_of_any_scheme_and_case() {
        for (url, shown) in [
            ("HTTPS://bob:s3cret@host/r", "HTTPS://***@host/r"),
            ("git+https://bob:s3cret@host/r", "git+https://***@host/r"),
            ("ftp://u:s3cret@host", "ftp://***@host"),
            ("SSH://git:s3cret@host/r", "SSH://git:***@host/r"),
            ("https://token-s3cret@host/r", "https://***@host/r"),
            ("ssh://git@host/r", "ssh://git@host/r"),
            ("git@github.com:org/repo", "git@github.com:org/repo"),
            ("file:///srv/r.git", "file:///srv/r.git"),
        ] {
            assert_eq!(redact(url), shown);
            if url.contains("s3cret") {
                let err = GitUrl::parse(url).unwrap_err();
                assert!(!err.contains("s3cret"), "{err}");
            }
        }
    }
}
