//! The local clone and the git operations tether performs on it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::process::Command;

use crate::error::{classify, Error, Result};
use crate::url::GitUrl;

/// How tether authenticates to the Git host.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    /// Private key for SSH (`--git-ssh-key`).
    pub ssh_key: Option<PathBuf>,
    /// known_hosts file for SSH (`--git-known-hosts`); without it `~/.ssh/known_hosts` is used. Unknown hosts
    /// are always refused.
    pub known_hosts: Option<PathBuf>,
    /// HTTPS username and password/token, handed to git through its credential protocol, never in the URL.
    pub https: Option<(String, String)>,
}

/// Where and how to fetch.
#[derive(Debug, Clone)]
pub struct GitConfig {
    /// The repository.
    pub url: GitUrl,
    /// The branch to follow.
    pub branch: String,
    /// Limit for each git operation.
    pub timeout: Duration,
    /// SSH key and known_hosts, or HTTPS credentials.
    pub auth: Auth,
    /// Committer name (`--git-user`).
    pub user_name: String,
    /// Committer email (`--git-email`).
    pub user_email: String,
}

/// One local clone of a source, kept across syncs and fetched incrementally.
#[derive(Debug)]
pub struct Repo {
    dir: PathBuf,
    cfg: GitConfig,
}

/// Who made a commit and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    /// The first line of the message.
    pub subject: String,
    /// The author's name (not the email: it is shown on a status page).
    pub author: String,
    /// The author date, RFC 3339.
    pub date: String,
}

impl Repo {
    /// Opens the clone for `cfg.url` under `cache_root`, creating it on first use. Nothing is fetched yet.
    pub async fn open(cfg: GitConfig, cache_root: &Path) -> Result<Repo> {
        let key = hex::encode(&Sha256::digest(cfg.url.as_str().as_bytes())[..8]);
        let dir = cache_root.join("git").join(key);
        let repo = Repo { dir, cfg };
        if !repo.dir.join(".git").exists() {
            tokio::fs::create_dir_all(&repo.dir)
                .await
                .map_err(|source| Error::Io {
                    what: format!("create the clone directory {}", repo.dir.display()),
                    source,
                })?;
            repo.git("init", &["init", "-q"]).await?;
            repo.git(
                "remote",
                &["remote", "add", "origin", repo.cfg.url.as_str()],
            )
            .await?;
        } else {
            // The same directory may have been used with a different credential-less spelling of the URL.
            repo.git(
                "remote",
                &["remote", "set-url", "origin", repo.cfg.url.as_str()],
            )
            .await?;
        }
        Ok(repo)
    }

    /// The working tree that [`Repo::checkout`] fills.
    pub fn workdir(&self) -> &Path {
        &self.dir
    }

    /// The configuration this clone was opened with.
    pub fn config(&self) -> &GitConfig {
        &self.cfg
    }

    /// Fetches the branch and all tags; returns the commit the branch points to.
    pub async fn fetch(&self) -> Result<String> {
        let branch = &self.cfg.branch;
        let refspec = format!("+refs/heads/{branch}:refs/remotes/origin/{branch}");
        self.git(
            "fetch",
            &[
                "fetch",
                "-q",
                "--prune",
                "--force",
                "origin",
                &refspec,
                "+refs/tags/*:refs/tags/*",
            ],
        )
        .await?;
        self.rev_parse(&format!("refs/remotes/origin/{branch}^{{commit}}"))
            .await?
            .ok_or_else(|| Error::NoBranch {
                url: self.cfg.url.to_string(),
                branch: branch.clone(),
            })
    }

    /// Makes the working tree exactly `rev`, removing untracked files left by earlier checkouts.
    pub async fn checkout(&self, rev: &str) -> Result<&Path> {
        self.git("checkout", &["checkout", "-q", "--force", "--detach", rev])
            .await?;
        self.git("clean", &["clean", "-q", "-ffdx"]).await?;
        Ok(&self.dir)
    }

    /// The paths (repository-relative) that differ between two commits, renames as a delete and an add;
    /// `None` when git cannot say (a commit missing locally, say).
    pub async fn changed_files(&self, from: &str, to: &str) -> Result<Option<Vec<String>>> {
        let out = self
            .run(
                "diff",
                &["diff", "--name-only", "--no-renames", "-z", from, to, "--"],
                true,
            )
            .await?;
        Ok(out.map(|o| {
            o.split('\0')
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect()
        }))
    }

    /// Resolves a revision locally; `None` when it does not exist.
    pub async fn rev_parse(&self, rev: &str) -> Result<Option<String>> {
        let out = self
            .run("rev-parse", &["rev-parse", "-q", "--verify", rev], true)
            .await?;
        Ok(out.map(|s| s.trim().to_owned()))
    }

    /// A commit's subject, author and author date (RFC 3339), for people reading what was applied.
    pub async fn commit_info(&self, rev: &str) -> Result<Option<CommitInfo>> {
        let out = self
            .run(
                "log",
                &[
                    "log",
                    "-1",
                    "--no-show-signature",
                    "--format=%s%x00%an%x00%aI",
                    rev,
                    "--",
                ],
                true,
            )
            .await?;
        Ok(out.and_then(|o| {
            let mut parts = o.trim_end_matches('\n').splitn(3, '\0');
            Some(CommitInfo {
                subject: parts.next()?.to_owned(),
                author: parts.next()?.to_owned(),
                date: parts.next()?.to_owned(),
            })
        }))
    }

    /// The commit a tag points to, as of the last fetch.
    pub async fn tag_target(&self, tag: &str) -> Result<Option<String>> {
        self.rev_parse(&format!("refs/tags/{tag}^{{commit}}")).await
    }

    /// Checks that tether may push, as Flux v1 did at start: pushes a throw-away tag and deletes it.
    pub async fn check_write(&self, rev: &str) -> Result<()> {
        let nonce = hex::encode(
            &Sha256::digest(format!(
                "{:?}{}",
                std::time::SystemTime::now(),
                std::process::id()
            ))[..5],
        );
        let tag = format!("refs/tags/tether-write-check-{nonce}");
        self.push("push a write-check tag", &[&format!("{rev}:{tag}")])
            .await?;
        self.push("delete the write-check tag", &[&format!(":{tag}")])
            .await
    }

    /// Moves the annotated tag `tag` to `rev` and force-pushes it (tags only, never a branch). Does nothing when
    /// the tag already points there, so an unchanged repository causes no push (and no CI runs triggered by it).
    pub async fn move_tag(&self, tag: &str, rev: &str, message: &str) -> Result<bool> {
        if self.tag_target(tag).await?.as_deref() == Some(rev) {
            return Ok(false);
        }
        self.git(
            "tag",
            &[
                "tag",
                "--force",
                "--annotate",
                "--message",
                message,
                tag,
                rev,
            ],
        )
        .await?;
        // Two runs of one sync moving the tag at once make one push fail to lock the remote ref; that is a
        // race, not a failure of the sync: try again a few times before giving up.
        let refspec = format!("refs/tags/{tag}:refs/tags/{tag}");
        let mut attempt = 0;
        loop {
            match self.push("push the sync tag", &["--force", &refspec]).await {
                Ok(()) => return Ok(true),
                Err(Error::Git { .. } | Error::Rejected { .. }) if attempt < 3 => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(200 * attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A second working tree of this clone checked out at `rev`, for preparing commits without disturbing
    /// the tree that syncs read. Reused across calls with the same `name`.
    pub async fn worktree(&self, name: &str, rev: &str) -> Result<Worktree<'_>> {
        let dir = self.dir.with_extension("worktrees").join(name);
        let path = dir.display().to_string();
        if dir.join(".git").is_file() {
            self.run_in(
                &dir,
                "checkout",
                &["checkout", "-q", "--force", "--detach", rev],
                false,
            )
            .await?;
            self.run_in(&dir, "clean", &["clean", "-q", "-ffdx"], false)
                .await?;
        } else {
            // A half-created or stale worktree (e.g. after a crash) is replaced.
            let _ = tokio::fs::remove_dir_all(&dir).await;
            self.git("worktree", &["worktree", "prune"]).await?;
            self.git(
                "worktree",
                &["worktree", "add", "-q", "--force", "--detach", &path, rev],
            )
            .await?;
        }
        Ok(Worktree { repo: self, dir })
    }

    async fn push(&self, what: &str, args: &[&str]) -> Result<()> {
        self.push_from(&self.dir, what, args).await
    }

    async fn push_from(&self, dir: &Path, what: &str, args: &[&str]) -> Result<()> {
        let mut all = vec!["push", "-q", "origin"];
        all.extend_from_slice(args);
        match self.run_in(dir, "push", &all, false).await {
            Ok(_) => Ok(()),
            Err(Error::Git { detail, .. }) => Err(Error::Git {
                op: what.to_owned(),
                url: self.cfg.url.to_string(),
                detail,
            }),
            Err(Error::ReadOnly { url, detail, .. }) => Err(Error::ReadOnly {
                url,
                op: what.to_owned(),
                detail,
            }),
            Err(e) => Err(e),
        }
    }

    async fn git(&self, op: &str, args: &[&str]) -> Result<()> {
        self.run(op, args, false).await.map(|_| ())
    }

    /// Runs git in the clone; with `allow_fail` a non-zero exit is `Ok(None)` instead of an error.
    async fn run(&self, op: &str, args: &[&str], allow_fail: bool) -> Result<Option<String>> {
        self.run_in(&self.dir, op, args, allow_fail).await
    }

    /// Runs git in `dir` (the clone or one of its worktrees).
    async fn run_in(
        &self,
        dir: &Path,
        op: &str,
        args: &[&str],
        allow_fail: bool,
    ) -> Result<Option<String>> {
        let mut cmd = Command::new("git");
        cmd.arg("-C")
            .arg(dir)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        self.environment(&mut cmd);
        let child = cmd.spawn().map_err(Error::Spawn)?;
        let out = tokio::time::timeout(self.cfg.timeout, child.wait_with_output())
            .await
            .map_err(|_| Error::Timeout {
                op: op.to_owned(),
                url: self.cfg.url.to_string(),
                timeout: self.cfg.timeout,
            })?
            .map_err(Error::Spawn)?;
        if out.status.success() {
            return Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()));
        }
        if allow_fail {
            return Ok(None);
        }
        Err(classify(
            op,
            &self.cfg.url.to_string(),
            &self.cfg.branch,
            &String::from_utf8_lossy(&out.stderr),
        ))
    }

    /// An isolated git environment: no user or system config, no prompts, fixed locale for parseable errors,
    /// SSH pinned to the deploy key and known_hosts, HTTPS credentials through the credential protocol.
    fn environment(&self, cmd: &mut Command) {
        cmd.env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("LC_ALL", "C")
            .env("GIT_AUTHOR_NAME", &self.cfg.user_name)
            .env("GIT_AUTHOR_EMAIL", &self.cfg.user_email)
            .env("GIT_COMMITTER_NAME", &self.cfg.user_name)
            .env("GIT_COMMITTER_EMAIL", &self.cfg.user_email);
        let auth = &self.cfg.auth;
        let mut ssh =
            String::from("ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=yes");
        let connect = self.cfg.timeout.as_secs().clamp(1, 60);
        ssh.push_str(&format!(" -o ConnectTimeout={connect}"));
        if let Some(key) = &auth.ssh_key {
            ssh.push_str(&format!(" -o IdentitiesOnly=yes -i {}", shell_quote(key)));
        }
        if let Some(kh) = &auth.known_hosts {
            ssh.push_str(&format!(
                " -o UserKnownHostsFile={} -o GlobalKnownHostsFile=/dev/null",
                shell_quote(kh)
            ));
        }
        cmd.env("GIT_SSH_COMMAND", ssh);
        if let Some((user, password)) = &auth.https {
            // The helper reads the secret from the environment of this one child process, so it is never on a
            // command line, in the URL, or in a file.
            cmd.env("TETHER_GIT_HTTPS_USER", user)
                .env("TETHER_GIT_HTTPS_PASSWORD", password)
                .env("GIT_CONFIG_COUNT", "1")
                .env("GIT_CONFIG_KEY_0", "credential.helper")
                .env(
                    "GIT_CONFIG_VALUE_0",
                    "!f() { test \"$1\" = get && printf 'username=%s\\npassword=%s\\n' \"$TETHER_GIT_HTTPS_USER\" \"$TETHER_GIT_HTTPS_PASSWORD\"; }; f",
                );
        }
    }
}

fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

/// A worktree of a [`Repo`] where tether prepares commits (image updates, policy changes).
#[derive(Debug)]
pub struct Worktree<'a> {
    repo: &'a Repo,
    dir: PathBuf,
}

impl Worktree<'_> {
    /// The checked-out files.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Commits every change in the worktree; `None` when there is nothing to commit.
    pub async fn commit_all(&self, message: &str) -> Result<Option<String>> {
        self.commit_files(message, &[]).await
    }

    /// Commits the changes to `files` (repository-relative; added, changed or removed) and nothing else;
    /// every change when `files` is empty. `None` when there is nothing to commit.
    pub async fn commit_files(&self, message: &str, files: &[String]) -> Result<Option<String>> {
        let r = self.repo;
        let mut add: Vec<&str> = vec!["add", "-A", "--"];
        add.extend(files.iter().map(String::as_str));
        r.run_in(&self.dir, "add", &add, false).await?;
        let clean = r
            .run_in(&self.dir, "diff", &["diff", "--cached", "--quiet"], true)
            .await?
            .is_some();
        if clean {
            return Ok(None);
        }
        r.run_in(
            &self.dir,
            "commit",
            &["commit", "-q", "--no-verify", "-m", message],
            false,
        )
        .await?;
        Ok(
            r.run_in(&self.dir, "rev-parse", &["rev-parse", "HEAD"], false)
                .await?
                .map(|s| s.trim().to_owned()),
        )
    }

    /// Pushes the worktree's HEAD to the configured branch — never forced. [`Error::Rejected`] means the
    /// branch moved meanwhile: fetch, redo the change on the new head, and push again.
    pub async fn push(&self) -> Result<()> {
        let refspec = format!("HEAD:refs/heads/{}", self.repo.cfg.branch);
        self.repo
            .push_from(&self.dir, "push the commit", &[&refspec])
            .await
    }
}

#[cfg(test)]
mod send_checks {
    use super::*;

    // Never run: fails to compile if the futures tether spawns stop being Send.
    #[allow(dead_code)]
    fn futures_are_send(repo: &Repo) {
        fn is_send<T: Send>(_: T) {}
        is_send(repo.fetch());
        is_send(repo.worktree("x", "y"));
        is_send(repo.checkout("x"));
    }
}
