//! A real PostgreSQL server from Debian's packages, started in a temporary directory for
//! OpenBao's database secrets engine. Runs as the `postgres` user when the tests run as root.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SUPERUSER_PASSWORD: &str = "pg-test-superuser-password";

pub struct Postgres {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

fn bin_dir() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path().join("bin"))
                .filter(|p| p.join("postgres").exists())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs.pop()
        .expect("PostgreSQL server binaries not found under /usr/lib/postgresql: run scripts/setup.sh (installs Debian's postgresql)")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.trim_ascii() == b"0")
        .unwrap_or(false)
}

/// Runs `program` as the postgres user when we are root.
fn command(program: PathBuf) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl Postgres {
    pub fn start() -> Postgres {
        let bin = bin_dir();
        let dir = tempfile::Builder::new().prefix("pg-").tempdir().unwrap();
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success());
        }
        let data = dir.path().join("data");
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, SUPERUSER_PASSWORD).unwrap();
        if is_root() {
            Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&pwfile)
                .status()
                .unwrap();
        }
        let out = command(bin.join("initdb"))
            .args(["-U", "postgres", "-A", "scram-sha-256", "--no-sync"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .arg("-D")
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = super::free_port();
        let log = std::fs::File::create(dir.path().join("postgres.log")).unwrap();
        let child = command(bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args([
                "-p",
                &port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
            ])
            .arg("-k")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let pg = Postgres {
            child,
            port,
            _dir: dir,
        };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "PostgreSQL did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // Accepting TCP is not yet accepting logins.
        while !pg.can_login("postgres", SUPERUSER_PASSWORD) {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "PostgreSQL does not accept logins"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        pg
    }

    /// Whether `user`/`password` can log in (psql, over TCP with password auth).
    pub fn can_login(&self, user: &str, password: &str) -> bool {
        Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                user,
                "-d",
                "postgres",
                "-tAc",
                "select 1",
            ])
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "5")
            .stdin(Stdio::null())
            .output()
            .map(|o| o.status.success() && o.stdout.trim_ascii() == b"1")
            .unwrap_or(false)
    }
}

impl Postgres {
    /// Mounts OpenBao's database engine at `database/` with this server as connection `pg`
    /// and a role `role` whose credentials live `ttl` (24 h at most).
    pub async fn serve_openbao(&self, bao: &super::OpenBao, role: &str, ttl: &str) {
        self.serve_openbao_max(bao, role, ttl, "24h").await;
    }

    /// The same, with credentials renewable up to `max_ttl`.
    pub async fn serve_openbao_max(
        &self,
        bao: &super::OpenBao,
        role: &str,
        ttl: &str,
        max_ttl: &str,
    ) {
        bao.write(
            "sys/mounts/database",
            serde_json::json!({"type": "database"}),
        )
        .await;
        let url = format!(
            "postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        );
        bao.write(
            "database/config/pg",
            serde_json::json!({
                "plugin_name": "postgresql-database-plugin",
                "connection_url": url,
                "username": "postgres",
                "password": SUPERUSER_PASSWORD,
                "allowed_roles": [role],
                "max_open_connections": 8,
            }),
        )
        .await;
        bao.write(
            &format!("database/roles/{role}"),
            serde_json::json!({
                "db_name": "pg",
                "creation_statements": ["CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"],
                "default_ttl": ttl,
                "max_ttl": max_ttl,
            }),
        )
        .await;
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGTERM via kill(1): postgres runs under another uid when started through runuser.
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = Command::new("pkill")
            .args([
                "-INT",
                "-f",
                &format!("postgres -D {}", self._dir.path().join("data").display()),
            ])
            .status();
        let _ = self.child.wait();
    }
}
