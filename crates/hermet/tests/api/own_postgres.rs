//! A PostgreSQL cluster of a test's own (`initdb` + `pg_ctl` in a temporary folder, on a
//! free loopback port), for tests that stop, restart or reconfigure the server. The
//! shared server the other tests use is never touched.

use std::path::PathBuf;
use std::process::Command;

use crate::helpers::free_port;

pub struct OwnPostgres {
    pub port: u16,
    bin: PathBuf,
    dir: tempfile::TempDir,
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
        let bin = bin_dir();
        let dir = tempfile::Builder::new().prefix("hermet-pg-").tempdir().expect("tempdir");
        if is_root() {
            let status = Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status();
            assert!(status.is_ok_and(|s| s.success()), "chown the cluster's folder to postgres");
        }
        let pg = OwnPostgres { port: free_port(), bin, dir };
        pg.run("initdb", &["-D", &pg.data(), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"]);
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
