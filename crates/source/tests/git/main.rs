//! The git source against real repositories: incremental fetch, worktree commits, push races.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::time::Duration;

use tether_source::{Auth, Error, GitConfig, GitUrl, Repo};
use tether_testenv::GitRepo;

fn config(remote: &GitRepo) -> GitConfig {
    GitConfig {
        url: GitUrl::parse(&remote.file_url()).unwrap(),
        branch: remote.branch.clone(),
        timeout: Duration::from_secs(20),
        auth: Auth::default(),
        user_name: "tether".into(),
        user_email: "tether@localhost".into(),
    }
}

#[tokio::test]
async fn fetches_incrementally_into_one_clone_and_checks_out_exact_revisions() {
    let remote = GitRepo::new();
    remote.write(&[("a.yaml", "one\n")]);
    let first = remote.commit("first");
    let cache = tempfile::tempdir().unwrap();
    let repo = Repo::open(config(&remote), cache.path()).await.unwrap();
    assert_eq!(repo.fetch().await.unwrap(), first);
    let tree = repo.checkout(&first).await.unwrap().to_owned();
    assert_eq!(
        std::fs::read_to_string(tree.join("a.yaml")).unwrap(),
        "one\n"
    );

    remote.write(&[("a.yaml", "two\n")]);
    let second = remote.commit("second");
    // Reopening finds the same clone (no re-clone) and a fetch brings the new commit.
    let repo = Repo::open(config(&remote), cache.path()).await.unwrap();
    assert_eq!(repo.workdir(), tree);
    assert_eq!(repo.fetch().await.unwrap(), second);
    std::fs::write(tree.join("stray.txt"), "left by someone").unwrap();
    repo.checkout(&second).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(tree.join("a.yaml")).unwrap(),
        "two\n"
    );
    assert!(!tree.join("stray.txt").exists());
}

#[tokio::test]
async fn a_push_race_is_reported_as_rejected_and_succeeds_on_the_new_head_without_force() {
    let remote = GitRepo::new();
    remote.write(&[("a.yaml", "a\n"), ("b.yaml", "b\n")]);
    remote.commit("first");
    let cache = tempfile::tempdir().unwrap();
    let repo = Repo::open(config(&remote), cache.path()).await.unwrap();
    let head = repo.fetch().await.unwrap();

    let wt = repo.worktree("automation", &head).await.unwrap();
    std::fs::write(wt.path().join("a.yaml"), "a by tether\n").unwrap();
    assert!(wt.commit_all("Auto-release a").await.unwrap().is_some());
    // Someone else pushes first.
    remote.write(&[("b.yaml", "b by a human\n")]);
    let theirs = remote.commit("human change");
    let err = wt.push().await.unwrap_err();
    assert!(matches!(err, Error::Rejected { .. }), "{err}");

    let head = repo.fetch().await.unwrap();
    assert_eq!(head, theirs);
    let wt = repo.worktree("automation", &head).await.unwrap();
    assert!(!wt.path().join("stray").exists());
    std::fs::write(wt.path().join("a.yaml"), "a by tether\n").unwrap();
    let ours = wt.commit_all("Auto-release a").await.unwrap().unwrap();
    wt.push().await.unwrap();
    assert_eq!(remote.head(), ours);
    let log = tether_testenv::run(tether_testenv::git::git(&remote.bare).args([
        "log",
        "--format=%s",
        "main",
    ]));
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        ["Auto-release a", "human change", "first"]
    );
    // Nothing to commit is not an empty commit.
    assert!(wt.commit_all("nothing").await.unwrap().is_none());
}

#[tokio::test]
async fn a_missing_branch_names_the_flag() {
    let remote = GitRepo::new();
    remote.write(&[("a", "a")]);
    remote.commit("first");
    let mut cfg = config(&remote);
    cfg.branch = "prod".into();
    let cache = tempfile::tempdir().unwrap();
    let repo = Repo::open(cfg, cache.path()).await.unwrap();
    let err = repo.fetch().await.unwrap_err().to_string();
    assert!(err.contains("branch 'prod' does not exist"), "{err}");
}
