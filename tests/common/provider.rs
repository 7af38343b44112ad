//! The provider binary as every test starts it: one recipe for its environment (exactly the
//! variables a test gives, nothing of the test's own), one for waiting on its sockets, and
//! [`ProviderProcess`], the provider most tests talk to (one socket, a health port, a version
//! key file unless the Kubernetes API holds the key, trace-level logs in a file).

use super::{Client, free_port, rand_suffix};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The provider binary: `$VCSP_PROVIDER_BIN` (the benchmark's release build), else the one
/// cargo built for these tests.
pub fn provider_binary() -> String {
    std::env::var("VCSP_PROVIDER_BIN")
        .ok()
        .or(option_env!("CARGO_BIN_EXE_vault-csi-provider").map(str::to_string))
        .expect("set VCSP_PROVIDER_BIN to the provider binary")
}

/// A home directory no test creates, for runs that must find no `~/.kube/config`.
pub const NO_HOME: &str = "/nonexistent-home-of-the-provider-under-test";

/// Gives `cmd` the provider's environment: exactly `vars`, with `HOME` at `home` and the
/// test's `PATH`. Nothing else of the test's own environment reaches the provider: a
/// developer's `VAULT_ADDR` or `KUBECONFIG`, or a CI runner's in-cluster variables
/// (`KUBERNETES_SERVICE_HOST`), would change what it does.
pub fn provider_env<'a, K, V>(
    cmd: &'a mut Command,
    home: &Path,
    vars: impl IntoIterator<Item = (K, V)>,
) -> &'a mut Command
where
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    cmd.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    cmd.env("HOME", home).envs(vars)
}

/// The provider binary with `args`, in [`provider_env`].
pub fn provider_command<A, K, V>(
    args: impl IntoIterator<Item = A>,
    home: &Path,
    vars: impl IntoIterator<Item = (K, V)>,
) -> Command
where
    A: AsRef<OsStr>,
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    let mut cmd = Command::new(provider_binary());
    cmd.args(args);
    provider_env(&mut cmd, home, vars);
    cmd
}

/// Runs the provider binary once with `args` (a subcommand, `-version`, a flag error), in
/// [`provider_env`] with no variables and no home, and returns what it printed.
pub fn run_provider<A: AsRef<OsStr>>(args: impl IntoIterator<Item = A>) -> Output {
    let no_vars: [(&str, &str); 0] = [];
    provider_command(args, Path::new(NO_HOME), no_vars)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run the provider binary")
}

/// Where to reach the health listener the last `-health-addr` of `args` asks for:
/// `:PORT` on loopback; `None` when it is disabled or on a port the system picks.
fn health_addr(args: &[String]) -> Option<String> {
    let value = args
        .iter()
        .rev()
        .find_map(|a| a.trim_start_matches('-').strip_prefix("health-addr="))?;
    let (host, port) = value.rsplit_once(':')?;
    if port.parse::<u16>().ok()? == 0 {
        return None;
    }
    let host = if host.is_empty() || host == "0.0.0.0" || host == "[::]" {
        "127.0.0.1"
    } else {
        host
    };
    Some(format!("{host}:{port}"))
}

/// The sockets an argument list's `-endpoint` names (`-endpoint=`, `--endpoint=`; a
/// comma-separated list), in order.
pub fn endpoints(args: &[String]) -> Vec<PathBuf> {
    args.iter()
        .filter_map(|a| a.trim_start_matches('-').strip_prefix("endpoint="))
        .flat_map(|list| list.split(','))
        .map(PathBuf::from)
        .collect()
}

/// A process a test started (an agent, a provider run as a kit renders it), its output in
/// `log`; killed on drop.
pub struct Running {
    pub child: Child,
    pub log: PathBuf,
}

impl Running {
    /// Starts `cmd` with its stdout and stderr in `log`.
    pub fn spawn(mut cmd: Command, log: PathBuf) -> Running {
        let file = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program()));
        Running { child, log }
    }

    /// Starts a provider command ([`provider_command`]) and waits until each of its
    /// sockets answers.
    pub async fn provider(cmd: Command, log: PathBuf, sockets: &[PathBuf]) -> Running {
        assert!(!sockets.is_empty(), "a provider serves at least one socket");
        let mut running = Running::spawn(cmd, log);
        for s in sockets {
            running.wait_for_socket(s).await;
        }
        running
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn still_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits until something answers on the Unix socket `path` (30 s at most).
    pub async fn wait_for_socket(&mut self, path: &Path) {
        let start = Instant::now();
        while std::os::unix::net::UnixStream::connect(path).is_err() {
            assert!(
                self.still_running() && start.elapsed() < Duration::from_secs(30),
                "{} never answered:\n{}",
                path.display(),
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        wait_exit(&mut self.child, limit)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The provider most tests talk to, serving one socket; killed on drop.
pub struct ProviderProcess {
    pub child: Child,
    pub socket: PathBuf,
    pub health: String,
    pub log: PathBuf,
    pub dir: tempfile::TempDir,
}

impl ProviderProcess {
    /// Starts the provider with `-vault-addr` and extra flags, at trace level, and waits
    /// for its socket to answer.
    pub async fn start(vault_addr: &str, extra: &[&str]) -> ProviderProcess {
        Self::start_env(vault_addr, extra, &[]).await
    }

    /// The same, with environment variables (the only ones it gets: [`provider_env`]).
    pub async fn start_env(
        vault_addr: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> ProviderProcess {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("providers/vault.sock");
        Self::start_at(vault_addr, extra, env, dir, socket).await
    }

    /// The same, serving `socket` (which may name more, comma-separated, in `extra`'s
    /// `-endpoint`), with `dir` as its home and the place of its log.
    pub async fn start_at(
        vault_addr: &str,
        extra: &[&str],
        env: &[(&str, &str)],
        dir: tempfile::TempDir,
        socket: PathBuf,
    ) -> ProviderProcess {
        let port = free_port();
        let health = format!("127.0.0.1:{port}");
        let log = dir.path().join("provider.log");
        let mut args = Vec::new();
        // Versions need a key: without a Kubernetes API (no KUBECONFIG given), use a file.
        let uses_kube = env.iter().any(|(k, _)| *k == "KUBECONFIG");
        let sets_key = extra.iter().any(|a| a.contains("hmac"));
        if !uses_kube && !sets_key {
            let key = dir.path().join("hmac.key");
            std::fs::write(&key, format!("test-object-version-key-{}", rand_suffix())).unwrap();
            args.push(format!("-hmac-key-file={}", key.display()));
        }
        if !extra
            .iter()
            .any(|a| a.trim_start_matches('-').starts_with("endpoint="))
        {
            args.push(format!("-endpoint={}", socket.display()));
        }
        args.push(format!("-health-addr={health}"));
        args.push("-log-level=trace".into());
        if !vault_addr.is_empty() {
            args.push(format!("-vault-addr={vault_addr}"));
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        let mut cmd = provider_command(&args, dir.path(), env.iter().copied());
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let child = cmd.spawn().expect("cannot start the provider binary");
        let p = ProviderProcess {
            child,
            socket,
            health,
            log,
            dir,
        };
        for s in endpoints(&args) {
            p.wait_for(&s).await;
        }
        // The health listener is bound just after the sockets: a test that talks to it
        // first (the last -health-addr given wins) waits for it too.
        if let Some(addr) = health_addr(&args) {
            let start = Instant::now();
            while tokio::net::TcpStream::connect(&addr).await.is_err() {
                assert!(
                    start.elapsed() < Duration::from_secs(20),
                    "the health listener on {addr} did not start: {}",
                    p.log_text()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        p
    }

    async fn wait_for(&self, socket: &Path) {
        let start = Instant::now();
        while std::os::unix::net::UnixStream::connect(socket).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "provider did not start: {}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the provider's socket answers again (after a restart of its listener).
    pub async fn wait_ready(&self) {
        self.wait_for(&self.socket).await;
    }

    pub async fn client(&self) -> Client {
        Client::connect(&self.socket).await
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        wait_exit(&mut self.child, limit)
    }
}

impl Drop for ProviderProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits up to `limit` for `child` to exit; returns its exit code (`None`: still running,
/// or killed by a signal).
pub fn wait_exit(child: &mut Child, limit: Duration) -> Option<i32> {
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status.code();
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Resident set size of a process, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .expect("no VmRSS")
}
