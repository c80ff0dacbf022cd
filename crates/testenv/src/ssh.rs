//! A loopback `sshd` serving git over SSH, with two deploy keys: one with write access and one that, like a
//! read-only deploy key on a Git host, may fetch but not push.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{run, GitRepo};

/// What a Git host says when a read-only deploy key pushes (the wording GitHub uses).
pub const READ_ONLY_MESSAGE: &str =
    "ERROR: The key you are authenticating with has been marked as read only.";

/// A running sshd and the files a client needs to talk to it.
#[derive(Debug)]
pub struct SshServer {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    /// Private key with read-write access.
    pub rw_key: PathBuf,
    /// Private key that may only fetch.
    pub ro_key: PathBuf,
    /// A known_hosts file that trusts this server's host key.
    pub known_hosts: PathBuf,
    /// A known_hosts file that names this host with a different key (a changed or spoofed host).
    pub wrong_known_hosts: PathBuf,
    user: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl SshServer {
    /// Generates host and deploy keys and starts sshd on a free loopback port. Needs root (sshd switches to
    /// the test user) and Debian's `openssh-server` (installed by `scripts/setup.sh`).
    pub fn start() -> Self {
        Self::start_with_push_hook(None)
    }

    /// Like [`SshServer::start`], but the first push with the write key first runs `hook` (a shell script),
    /// e.g. to land another commit on the branch so that the push races with it, as on a busy repository.
    pub fn start_with_push_hook(hook: Option<&str>) -> Self {
        let sshd = Path::new("/usr/sbin/sshd");
        assert!(
            sshd.exists(),
            "/usr/sbin/sshd is missing: run scripts/setup.sh (installs openssh-server)"
        );
        let dir = tempfile::Builder::new()
            .prefix("tether-sshd-")
            .tempdir()
            .expect("temp dir");
        let d = dir.path();
        for (name, comment) in [
            ("host", "host"),
            ("rw", "tether-rw"),
            ("ro", "tether-ro"),
            ("other", "other"),
        ] {
            run(Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
                .arg(d.join(name)));
        }
        let read = |name: &str| {
            std::fs::read_to_string(d.join(name))
                .expect("read key")
                .trim()
                .to_owned()
        };
        let ro_shell = d.join("ro-shell");
        std::fs::write(
            &ro_shell,
            format!(
                "#!/bin/sh\ncase \"$SSH_ORIGINAL_COMMAND\" in\n  git-upload-pack*|'git upload-pack'*) exec sh -c \"$SSH_ORIGINAL_COMMAND\" ;;\nesac\necho '{READ_ONLY_MESSAGE}' >&2\nexit 1\n"
            ),
        )
        .expect("write ro-shell");
        run(Command::new("chmod").arg("755").arg(&ro_shell));
        let rw_options = match hook {
            None => "restrict".to_owned(),
            Some(hook) => {
                let hook_file = d.join("push-hook");
                std::fs::write(&hook_file, format!("#!/bin/sh\nset -e\n{hook}\n"))
                    .expect("write hook");
                let rw_shell = d.join("rw-shell");
                let once = d.join("push-hook.done");
                std::fs::write(
                    &rw_shell,
                    format!(
                        "#!/bin/sh\ncase \"$SSH_ORIGINAL_COMMAND\" in\n  git-receive-pack*|'git receive-pack'*)\n    if [ ! -e {once} ]; then touch {once}; sh {hook} >&2; fi ;;\nesac\nexec sh -c \"$SSH_ORIGINAL_COMMAND\"\n",
                        once = once.display(),
                        hook = hook_file.display()
                    ),
                )
                .expect("write rw-shell");
                run(Command::new("chmod").arg("755").arg(&rw_shell));
                format!("command=\"{}\",restrict", rw_shell.display())
            }
        };
        std::fs::write(
            d.join("authorized_keys"),
            format!(
                "{rw_options} {}\ncommand=\"{}\",restrict {}\n",
                read("rw.pub"),
                ro_shell.display(),
                read("ro.pub")
            ),
        )
        .expect("write authorized_keys");

        let port = free_port();
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nPidFile {pid}\nAuthorizedKeysFile {ak}\n\
                 StrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
                 PermitRootLogin prohibit-password\nAllowTcpForwarding no\nX11Forwarding no\nPrintMotd no\n\
                 LogLevel ERROR\n",
                host = d.join("host").display(),
                pid = d.join("sshd.pid").display(),
                ak = d.join("authorized_keys").display(),
            ),
        )
        .expect("write sshd_config");
        // sshd refuses to start without its privilege-separation directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let child = Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("sshd.log")).expect("log file"))
            .spawn()
            .expect("start sshd");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd did not listen on {port}: {}",
                std::fs::read_to_string(d.join("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let host_pub = read("host.pub");
        let host_key = host_pub
            .rsplit_once(' ')
            .map(|(k, _)| k)
            .unwrap_or(&host_pub);
        std::fs::write(
            d.join("known_hosts"),
            format!("[127.0.0.1]:{port} {host_key}\n"),
        )
        .expect("write known_hosts");
        let other_pub = read("other.pub");
        let other_key = other_pub
            .rsplit_once(' ')
            .map(|(k, _)| k)
            .unwrap_or(&other_pub);
        std::fs::write(
            d.join("wrong_known_hosts"),
            format!("[127.0.0.1]:{port} {other_key}\n"),
        )
        .expect("write known_hosts");
        let user = run(Command::new("id").arg("-un")).trim().to_owned();
        SshServer {
            port,
            rw_key: {
                crate::secret_key_file(&d.join("rw"));
                crate::secret_key_file(&d.join("ro"));
                crate::secret_key_file(&d.join("other"));
                d.join("rw")
            },
            ro_key: d.join("ro"),
            known_hosts: d.join("known_hosts"),
            wrong_known_hosts: d.join("wrong_known_hosts"),
            user,
            child,
            _dir: dir,
        }
    }

    /// Lets `public_key` (an `authorized_keys` line) fetch and push, as a read-write deploy key does.
    pub fn authorize(&self, public_key: &str) {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self._dir.path().join("authorized_keys"))
            .expect("open authorized_keys");
        writeln!(f, "restrict {}", public_key.trim()).expect("append to authorized_keys");
    }

    /// `ssh://user@127.0.0.1:port/<bare repo path>` for a repository.
    pub fn url(&self, repo: &GitRepo) -> String {
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            repo.bare.display()
        )
    }

    /// A `GIT_SSH_COMMAND` that uses `key` and trusts only `known_hosts`.
    pub fn ssh_command(&self, key: &Path, known_hosts: &Path) -> String {
        format!(
            "ssh -F /dev/null -i {} -o IdentitiesOnly=yes -o BatchMode=yes -o UserKnownHostsFile={} \
             -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes",
            key.display(),
            known_hosts.display()
        )
    }
}

impl Drop for SshServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}
