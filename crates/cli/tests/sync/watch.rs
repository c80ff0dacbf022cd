//! The watch-driven agent: a running daemon keeps the objects it owns in a watch cache, so a commit costs
//! only its own writes, and a change made by hand is set back when it happens, not at the next sync interval.

use std::time::Duration;

use crate::support::{wait_for, Daemon, World};

const OBJECTS: usize = 5;

fn cm(n: &str, i: usize, v: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c{i}\n  namespace: {n}\ndata:\n  v: \"{v}\"\n"
    )
}

/// A repository of a Namespace and [`OBJECTS`] ConfigMaps, all with value "1".
fn repo(w: &World) -> String {
    let n = &w.n;
    let mut files = vec![("ns.yaml".to_owned(), crate::support::namespace(n))];
    files.extend((0..OBJECTS).map(|i| (format!("cm{i}.yaml"), cm(n, i, "1"))));
    crate::support::write(&w.repo, &files);
    w.repo.commit("first")
}

/// The daemon polling every second, with a sync interval far beyond any test's wait.
fn daemon(w: &World, kubeconfig: Option<&std::path::Path>) -> Daemon {
    daemon_with(w, kubeconfig, &[])
}

fn daemon_with(w: &World, kubeconfig: Option<&std::path::Path>, extra: &[&str]) -> Daemon {
    let url = w.repo.file_url();
    let mut cmd = w.command(&[
        "daemon",
        "--git-url",
        &url,
        "--git-poll-interval",
        "1s",
        "--sync-interval",
        "10m",
        "--listen-metrics",
        "127.0.0.1:0",
    ]);
    cmd.args(extra);
    if let Some(kc) = kubeconfig {
        cmd.env("KUBECONFIG", kc);
    }
    Daemon::spawn(cmd)
}

fn value(w: &World, i: usize) -> Option<String> {
    w.get(&["-n", &w.n, &format!("configmap/c{i}")])
        .map(|c| c["data"]["v"].as_str().unwrap_or("").to_owned())
}

fn wait_synced(w: &World, rev: &str, d: &Daemon) {
    wait_for(
        &format!("the sync of {rev}\n{}", d.log()),
        Duration::from_secs(60),
        || {
            w.repo
                .rev_parse("refs/tags/tether-sync^{commit}")
                .as_deref()
                == Some(rev)
        },
    );
}

fn edit(w: &World, i: usize, v: &str) {
    w.kubectl(&[
        "-n",
        &w.n,
        "patch",
        &format!("configmap/c{i}"),
        "--type",
        "merge",
        "-p",
        &format!(r#"{{"data":{{"v":"{v}"}}}}"#),
    ]);
}

fn wait_value(w: &World, i: usize, v: &str, why: &str, d: &Daemon) {
    wait_for(
        &format!("{why}\n{}", d.log()),
        Duration::from_secs(30),
        || value(w, i).as_deref() == Some(v),
    );
}

#[test]
fn a_one_object_commit_sends_one_dry_run_and_one_write_and_lists_nothing() {
    let w = World::new("watch-one");
    let first = repo(&w);
    let d = daemon(&w, None);
    wait_synced(&w, &first, &d);
    // Let the first sync's own watch events and events settle.
    std::thread::sleep(Duration::from_secs(2));

    let audit = w.cluster.audit();
    crate::support::write(&w.repo, &[("cm2.yaml".to_owned(), cm(&w.n, 2, "2"))]);
    let second = w.repo.commit("one object");
    wait_synced(&w, &second, &d);
    assert_eq!(value(&w, 2).as_deref(), Some("2"));
    std::thread::sleep(Duration::from_secs(1));

    // This test's agent: its objects' namespace, or its sync name in the request (selector, inventory).
    let tether: Vec<_> = audit
        .events()
        .into_iter()
        .filter(|e| {
            e.user_agent.starts_with("tether/")
                && (e.namespace == w.n || e.request_uri.contains(&w.n) || e.name.contains(&w.n))
        })
        .collect();
    let on_objects: Vec<_> = tether
        .iter()
        .filter(|e| e.namespace == w.n && e.resource == "configmaps")
        .collect();
    let dry_runs = on_objects
        .iter()
        .filter(|e| e.verb == "patch" && e.request_uri.contains("dryRun=All"))
        .count();
    let writes = on_objects.iter().filter(|e| e.is_persisted_write()).count();
    assert_eq!(
        (dry_runs, writes, on_objects.len()),
        (1, 1, 2),
        "the commit's object: one dry-run, one write, nothing else: {on_objects:#?}"
    );
    assert!(on_objects.iter().all(|e| e.name == "c2"), "{on_objects:#?}");
    let lists: Vec<_> = tether
        .iter()
        .filter(|e| e.verb == "list" || e.verb == "watch")
        .collect();
    assert!(
        lists.is_empty(),
        "a warm agent lists nothing for a commit: {lists:#?}"
    );
    // A change in place is the whole sync: not even the inventory is read (Events aside).
    let others: Vec<_> = tether
        .iter()
        .filter(|e| e.resource != "events" && !(e.namespace == w.n && e.resource == "configmaps"))
        .collect();
    assert!(others.is_empty(), "{others:#?}");
}

#[test]
fn a_hand_edit_or_deletion_is_set_back_without_waiting_for_the_sync_interval() {
    let w = World::new("watch-drift");
    let first = repo(&w);
    let d = daemon(&w, None);
    wait_synced(&w, &first, &d);

    edit(&w, 1, "edited");
    wait_value(&w, 1, "1", "the hand edit set back", &d);
    w.kubectl(&["-n", &w.n, "delete", "configmap/c3"]);
    wait_value(&w, 3, "1", "the deleted object recreated", &d);
    let log = d.log();
    assert!(log.contains("set back to Git"), "{log}");
    // Objects nobody touched were not written again.
    assert_eq!(
        log.matches("component=drift").count(),
        2,
        "one repair each for the edit and the deletion: {log}"
    );
}

#[test]
fn a_writer_that_keeps_changing_a_field_is_reported_once_and_then_left_alone() {
    let w = World::new("watch-fight");
    let first = repo(&w);
    let d = daemon(&w, None);
    wait_synced(&w, &first, &d);

    for round in 0..tether_plan::drift::TRIP_AFTER {
        edit(&w, 0, &format!("fight-{round}"));
        wait_value(&w, 0, "1", "the edit set back", &d);
    }
    edit(&w, 0, "fight-last");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        value(&w, 0).as_deref(),
        Some("fight-last"),
        "after the breaker tripped the object is left to the periodic sync\n{}",
        d.log()
    );
    let log = d.log();
    let reports: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("another writer keeps changing fields Git sets"))
        .collect();
    assert_eq!(reports.len(), 1, "reported once: {log}");
    assert!(
        reports[0].contains("manager=kubectl-patch"),
        "names the other field manager: {}",
        reports[0]
    );
    wait_for("the DriftFight event", Duration::from_secs(10), || {
        w.kubectl(&["-n", &w.n, "get", "events.events.k8s.io", "-o", "json"])
            .contains("\"reason\": \"DriftFight\"")
    });
}

#[test]
fn a_watch_dropped_by_an_api_server_restart_resumes_and_misses_nothing() {
    let w = World::new("watch-restart");
    w.plant_bystanders();
    let first = repo(&w);
    let mut api = w.cluster.private_api_server();
    let d = daemon(&w, Some(&api.kubeconfig));
    wait_synced(&w, &first, &d);

    api.stop();
    // Made through the shared API server while the agent's is down: only a resumed (or re-listed) watch
    // can tell the agent about it.
    edit(&w, 1, "while-down");
    std::thread::sleep(Duration::from_secs(2));
    api.start_again();
    wait_for(
        &format!(
            "the edit made while the watch was down set back\n{}",
            d.log()
        ),
        Duration::from_secs(90),
        || value(&w, 1).as_deref() == Some("1"),
    );
    edit(&w, 2, "after");
    wait_value(&w, 2, "1", "an edit after the restart set back", &d);
    w.survived(
        "the agent's API server restarted, edits while down and after",
        3,
    );
    drop(api);
}

#[test]
fn a_commit_applied_ahead_is_reported_and_one_that_adds_removes_or_breaks_takes_the_full_sync() {
    let w = World::new("watch-ahead");
    let first = repo(&w);
    let d = daemon_with(&w, None, &["--sync-garbage-collection"]);
    wait_synced(&w, &first, &d);

    // In place: applied ahead of the full render, and still reported as this commit's change.
    crate::support::write(&w.repo, &[("cm1.yaml".to_owned(), cm(&w.n, 1, "2"))]);
    let second = w.repo.commit("in place");
    wait_synced(&w, &second, &d);
    assert_eq!(value(&w, 1).as_deref(), Some("2"));
    let log = d.log();
    let last = log
        .lines()
        .rfind(|l| l.contains("message=\"sync complete\""))
        .unwrap();
    assert!(last.contains("configured=1"), "{last}");

    // A duplicate of c2 in cm1.yaml: the commit is refused and nothing of it is applied, c1 included.
    let dup = format!("{}---\n{}", cm(&w.n, 1, "3"), cm(&w.n, 2, "dup"));
    crate::support::write(&w.repo, &[("cm1.yaml".to_owned(), dup)]);
    w.repo.commit("a duplicate");
    wait_for(
        &format!("the duplicate refused\n{}", d.log()),
        Duration::from_secs(30),
        || d.log().contains("duplicate object"),
    );
    assert_eq!(value(&w, 1).as_deref(), Some("2"), "{}", d.log());
    assert_eq!(value(&w, 2).as_deref(), Some("1"));

    // Fixed, with a file removed: the full sync applies it and collects what left Git.
    crate::support::write(&w.repo, &[("cm1.yaml".to_owned(), cm(&w.n, 1, "4"))]);
    w.repo.remove("cm4.yaml");
    let fixed = w.repo.commit("fixed, c4 removed");
    wait_synced(&w, &fixed, &d);
    assert_eq!(value(&w, 1).as_deref(), Some("4"));
    wait_for("c4 collected", Duration::from_secs(30), || {
        value(&w, 4).is_none()
    });
}
