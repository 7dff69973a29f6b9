//! Programs the fault scenarios and the integration tests start and stop on loopback: a
//! `hermet` node, a redis-server, a Kafka-protocol broker (tansu), and a PostgreSQL
//! cluster of their own (`initdb` + `pg_ctl` in a temporary folder on a free port, so the
//! shared server is never stopped or reconfigured). Each one's process ends with its
//! value. They panic with the reason when a program is missing: there is nothing to
//! measure or test without it.

#![allow(clippy::expect_used, clippy::panic, reason = "a missing program ends the bench or test with the reason")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port()
}

/// A child process killed (SIGKILL) and reaped when dropped.
pub struct KillOnDrop(pub Child);

impl KillOnDrop {
    /// SIGTERM, then waits for the process to end.
    pub fn terminate(&mut self) {
        let status = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -TERM");
        let _ = self.0.wait();
    }

    /// SIGKILL, then waits for the process to end.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until something accepts TCP connections on `port` (at most `within`).
pub async fn wait_for_port(port: u16, within: Duration) -> bool {
    let started = std::time::Instant::now();
    while started.elapsed() < within {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

/// A redis-server on a free loopback port, without persistence.
pub struct Redis {
    pub port: u16,
    child: Option<KillOnDrop>,
    tls: Option<RedisTlsFiles>,
}

/// PEM files of a redis-server that speaks only TLS: its certificate and key, and the CA
/// that client certificates must come from (clients must present one).
#[derive(Debug, Clone)]
pub struct RedisTlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

impl Redis {
    pub async fn start() -> Redis {
        let mut r = Redis { port: free_port(), child: None, tls: None };
        r.start_again().await;
        r
    }

    /// A server that accepts only TLS connections (`rediss://`) with a client certificate.
    pub async fn start_tls(files: RedisTlsFiles) -> Redis {
        let mut r = Redis { port: free_port(), child: None, tls: Some(files) };
        r.start_again().await;
        r
    }

    /// Starts the server (again) on its port, empty.
    pub async fn start_again(&mut self) {
        let port = self.port.to_string();
        let mut cmd = Command::new("redis-server");
        match &self.tls {
            None => cmd.args(["--port", &port]),
            Some(t) => cmd
                .args(["--port", "0", "--tls-port", &port, "--tls-auth-clients", "yes"])
                .arg("--tls-cert-file")
                .arg(&t.cert)
                .arg("--tls-key-file")
                .arg(&t.key)
                .arg("--tls-ca-cert-file")
                .arg(&t.ca),
        };
        let child = KillOnDrop(
            cmd.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-server must be installed (scripts/test.sh installs it)"),
        );
        assert!(wait_for_port(self.port, Duration::from_secs(5)).await, "redis-server did not start");
        self.child = Some(child);
    }

    /// Kills the server (SIGKILL): its data is gone with it.
    pub fn kill(&mut self) {
        self.child = None;
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}/", self.port)
    }
}

/// The tansu binary: `TANSU_BIN`, else where scripts/test.sh installs it.
pub fn tansu_bin() -> PathBuf {
    std::env::var_os("TANSU_BIN").map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"));
        home.join(".cache/hermet/tools/bin/tansu")
    })
}

/// A real Kafka-protocol broker (tansu) on a free loopback port, storing in its own
/// directory; `stop` and `start` keep the data (broker outages).
pub struct Broker {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<KillOnDrop>,
}

impl Broker {
    pub async fn start_new() -> Broker {
        let mut b = Broker { port: free_port(), dir: tempfile::tempdir().expect("tempdir"), child: None };
        b.start().await;
        b
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub async fn start(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log()).expect("log file");
        let child = Command::new(tansu_bin())
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            // tansu resolves the file against its working directory
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(self.dir.path())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("tansu must be installed (scripts/test.sh installs it; or set TANSU_BIN)");
        self.child = Some(KillOnDrop(child));
        assert!(wait_for_port(self.port, Duration::from_secs(5)).await, "the broker did not start");
    }

    /// The broker's log.
    pub fn log(&self) -> PathBuf {
        self.dir.path().join("broker.log")
    }

    /// Kills the broker (SIGKILL); its data stays for `start`.
    pub fn stop(&mut self) {
        self.child = None;
    }
}

/// A `hermet serve` node as its own process on a fixed loopback port (a restart comes
/// back on the same address), logging to a file.
pub struct Node {
    pub port: u16,
    pub process: Option<KillOnDrop>,
    program: PathBuf,
    env: Vec<(String, String)>,
    log: PathBuf,
}

impl Node {
    /// Node `node_id` of `program` on `database_url` with `env` (`HERMET_*` settings; the
    /// caller's own `HERMET_*` variables are not passed on), answering `/readyz`.
    pub async fn start(
        program: &Path,
        database_url: &str,
        node_id: u16,
        env: &[(&str, &str)],
        log: &Path,
    ) -> anyhow::Result<Node> {
        let port = free_port();
        let mut all = vec![
            ("HERMET_DATABASE_URL".to_owned(), database_url.to_owned()),
            ("HERMET_NODE_ID".to_owned(), node_id.to_string()),
            ("HERMET_LISTEN".to_owned(), format!("127.0.0.1:{port}")),
        ];
        all.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let mut n = Node { port, process: None, program: program.to_owned(), env: all, log: log.to_owned() };
        n.start_again().await?;
        Ok(n)
    }

    pub fn address(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Spawns the process (again) and waits until `/readyz` answers 200 (at most 60 s).
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        self.spawn();
        self.ready(Duration::from_secs(60)).await
    }

    /// Spawns the process without waiting for it.
    pub fn spawn(&mut self) {
        let mut c = Command::new(&self.program);
        for (k, _) in std::env::vars() {
            if k.starts_with("HERMET_") {
                c.env_remove(k);
            }
        }
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("log file");
        c.arg("serve").envs(self.env.iter().map(|(k, v)| (k, v))).stdout(out.try_clone().expect("log")).stderr(out);
        self.process = Some(KillOnDrop(c.spawn().expect("spawn hermet")));
    }

    /// Waits until `/readyz` answers 200.
    pub async fn ready(&self, within: Duration) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let started = std::time::Instant::now();
        let url = format!("{}/readyz", self.address());
        while started.elapsed() < within {
            if client.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        anyhow::bail!("node on port {} not ready within {within:?} (log: {})", self.port, self.log.display())
    }

    pub fn terminate(&mut self) {
        if let Some(p) = &mut self.process {
            p.terminate();
        }
        self.process = None;
    }

    pub fn kill(&mut self) {
        self.process = None;
    }
}

/// A PostgreSQL cluster of its own, for what stops, restarts or reconfigures the server.
pub struct OwnPostgres {
    pub port: u16,
    bin: PathBuf,
    dir: tempfile::TempDir,
}

/// How an [`OwnPostgres`] differs from a fresh `initdb`: files put in its data folder
/// (a server certificate and key: private, owned by the server's user), lines added to
/// `postgresql.conf` (`ssl = on`, `ssl_cert_file = 'server.crt'`, … relative to the data
/// folder), and a `pg_hba.conf` instead of initdb's.
#[derive(Debug, Clone, Default)]
pub struct PgSetup {
    pub files: Vec<(String, Vec<u8>)>,
    pub conf: Vec<String>,
    pub hba: Option<String>,
}

/// The server's programs: `pg_config --bindir`, else the newest Debian install.
fn bin_dir() -> PathBuf {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return dir;
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL's programs (initdb, pg_ctl) must be installed (see scripts/test.sh)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().expect("initdb not found under /usr/lib/postgresql")
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}

impl OwnPostgres {
    /// A new cluster, started. PostgreSQL refuses to run as root: as root, its programs run
    /// as the `postgres` user, which then owns the folder.
    pub fn start() -> Self {
        Self::start_with(PgSetup::default())
    }

    /// A new cluster set up as `setup` says, started.
    pub fn start_with(setup: PgSetup) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let bin = bin_dir();
        let dir = tempfile::Builder::new().prefix("hermet-pg-").tempdir().expect("tempdir");
        if is_root() {
            let status = Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status();
            assert!(status.is_ok_and(|s| s.success()), "chown the cluster's folder to postgres");
        }
        let pg = OwnPostgres { port: free_port(), bin, dir };
        pg.run("initdb", &["-D", &pg.data(), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"]);
        let data = PathBuf::from(pg.data());
        let mut written: Vec<PathBuf> = Vec::new();
        for (name, content) in &setup.files {
            let path = data.join(name);
            std::fs::write(&path, content).expect("write a file of the cluster");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
            written.push(path);
        }
        if !setup.conf.is_empty() {
            let mut conf = std::fs::read_to_string(data.join("postgresql.conf")).expect("postgresql.conf");
            conf.push_str(&format!("\n{}\n", setup.conf.join("\n")));
            std::fs::write(data.join("postgresql.conf"), conf).expect("write postgresql.conf");
        }
        if let Some(hba) = &setup.hba {
            std::fs::write(data.join("pg_hba.conf"), hba).expect("write pg_hba.conf");
            written.push(data.join("pg_hba.conf"));
        }
        if is_root() && !written.is_empty() {
            let status = Command::new("chown").arg("postgres:postgres").args(&written).status();
            assert!(status.is_ok_and(|s| s.success()), "chown the cluster's files to postgres");
        }
        pg.start_again();
        pg
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// One of the server's programs, as the user that owns the cluster.
    fn command(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.current_dir(self.dir.path());
        cmd
    }

    fn run(&self, program: &str, args: &[&str]) {
        let out = self.command(program).args(args).output().expect("run a PostgreSQL program");
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The URL of the cluster's `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the (stopped) server on the same port and data, and waits until it accepts
    /// connections.
    pub fn start_again(&self) {
        let log = self.dir.path().join("server.log").display().to_string();
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c max_connections=50",
            self.port,
            self.dir.path().display()
        );
        self.run("pg_ctl", &["-D", &self.data(), "-l", &log, "-o", &opts, "-w", "-t", "60", "start"]);
    }

    /// The server's processes: the postmaster (from `postmaster.pid`) and its children.
    fn processes(&self) -> Vec<String> {
        let pid_file = std::fs::read_to_string(self.dir.path().join("data/postmaster.pid")).expect("postmaster.pid");
        let main = pid_file.lines().next().expect("postmaster's pid").trim().to_owned();
        let children = Command::new("pgrep").args(["-P", &main]).output().expect("pgrep");
        let mut pids = vec![main];
        pids.extend(String::from_utf8_lossy(&children.stdout).split_whitespace().map(str::to_owned));
        pids
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill").arg(signal).args(self.processes()).status().expect("kill");
        assert!(status.success(), "kill {signal}");
    }

    /// Freezes the server (`SIGSTOP` to all its processes): connections stay open and
    /// nothing answers, as with a hung host.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen server go on.
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    /// Stops the server at once, as a crash would (`-m immediate`).
    pub fn stop(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "immediate", "-w", "stop"]);
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        // a test that failed while the server was frozen: let it go on, or it cannot stop
        if let Ok(pids) = std::fs::read_to_string(self.dir.path().join("data/postmaster.pid"))
            && let Some(main) = pids.lines().next()
        {
            let _ = Command::new("pkill").args(["-CONT", "-P", main.trim()]).output();
            let _ = Command::new("kill").args(["-CONT", main.trim()]).output();
        }
        let _ = self.command("pg_ctl").args(["-D", &self.data(), "-m", "immediate", "stop"]).output();
    }
}
