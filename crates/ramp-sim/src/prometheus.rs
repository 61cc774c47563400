//! A private Prometheus scraping the simulator, for tests and `ramp demo`: finds (or, as root,
//! installs Debian's `prometheus` package) the binary, starts a server on a free loopback port
//! with a generated configuration scraping the given targets, and kills it on drop. Talks to it
//! with plain HTTP/1.0 so the simulator needs no HTTP client library.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const DEBIAN_BINARY: &str = "/usr/bin/prometheus";
const POLICY_RC: &str = "/usr/sbin/policy-rc.d";

/// The `prometheus` binary: on the PATH, at Debian's location, or installed with apt-get when
/// running as root. Otherwise an error saying how to get it.
pub fn ensure_prometheus() -> Result<PathBuf, String> {
    if let Some(found) = find_binary() {
        return Ok(found);
    }
    if !running_as_root() {
        return Err(
            "no `prometheus` binary on the PATH or at /usr/bin/prometheus, and not running as \
             root to install it: run `apt-get install -y prometheus`"
                .to_owned(),
        );
    }
    install_with_apt()?;
    find_binary().ok_or_else(|| {
        "apt-get installed the prometheus package but no `prometheus` binary was found".to_owned()
    })
}

/// The `prometheus` binary on the PATH or at Debian's location, without installing anything.
pub fn find_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("prometheus"))
            .find(|candidate| candidate.is_file())
    });
    on_path.or_else(|| {
        let debian = PathBuf::from(DEBIAN_BINARY);
        debian.is_file().then_some(debian)
    })
}

fn running_as_root() -> bool {
    // The effective uid is the second field of the `Uid:` line.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|id| id == "0"))
        })
        .unwrap_or(false)
}

/// Installs the package without letting its maintainer scripts start a daemon: without
/// systemd, `invoke-rc.d` asks `policy-rc.d`, which we make deny (101) for the install when
/// the machine has none.
fn install_with_apt() -> Result<(), String> {
    let temporary_policy = !Path::new(POLICY_RC).exists();
    if temporary_policy {
        std::fs::write(POLICY_RC, "#!/bin/sh\nexit 101\n")
            .map_err(|e| format!("writing {POLICY_RC}: {e}"))?;
        set_executable(Path::new(POLICY_RC))?;
    }
    let result = run_apt(&["update"]).and_then(|()| {
        run_apt(&[
            "-o",
            "DPkg::Lock::Timeout=300",
            "install",
            "-y",
            "--no-install-recommends",
            "prometheus",
        ])
    });
    if temporary_policy {
        let _ = std::fs::remove_file(POLICY_RC);
    }
    result
}

fn set_executable(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}

fn run_apt(args: &[&str]) -> Result<(), String> {
    let output = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("RUNLEVEL", "1")
        .output()
        .map_err(|e| format!("running apt-get {}: {e}", args.join(" ")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "apt-get {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// One scrape target: `http://host:port/path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScrapeTarget {
    pub host_port: String,
    pub metrics_path: String,
}

impl ScrapeTarget {
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("scrape target {url:?} is not an http:// URL"))?;
        let (host_port, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash..]),
            None => (rest, "/metrics"),
        };
        if host_port.is_empty() {
            return Err(format!("scrape target {url:?} has no host"));
        }
        Ok(Self {
            host_port: host_port.to_owned(),
            metrics_path: path.to_owned(),
        })
    }
}

/// The configuration file: one job per target, so each keeps its own metrics path.
pub fn config_yaml(targets: &[ScrapeTarget], scrape_interval: Duration) -> String {
    let interval = format!("{}ms", scrape_interval.as_millis().max(1));
    let mut yaml = format!(
        "global:\n  scrape_interval: {interval}\n  evaluation_interval: {interval}\nscrape_configs:\n"
    );
    for (index, target) in targets.iter().enumerate() {
        yaml.push_str(&format!(
            "  - job_name: target-{index}\n    scrape_interval: {interval}\n    scrape_timeout: {interval}\n    metrics_path: {path:?}\n    static_configs:\n      - targets: [{host:?}]\n",
            path = target.metrics_path,
            host = target.host_port,
        ));
    }
    yaml
}

/// A running private Prometheus; killed (and its data removed) on drop.
pub struct Prometheus {
    child: Child,
    dir: PathBuf,
    host_port: String,
    url: String,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (URLs such as `http://127.0.0.1:9464/metrics`)
    /// every `scrape_interval`, and waits until it is ready.
    pub async fn start(targets: &[String], scrape_interval: Duration) -> Result<Self, String> {
        let binary = ensure_prometheus()?;
        let targets = targets
            .iter()
            .map(|t| ScrapeTarget::parse(t))
            .collect::<Result<Vec<_>, _>>()?;
        let dir = fresh_dir()?;
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, config_yaml(&targets, scrape_interval))
            .map_err(|e| format!("writing {}: {e}", config.display()))?;
        let port = free_port()?;
        let log_path = dir.join("prometheus.log");
        let log = std::fs::File::create(&log_path)
            .map_err(|e| format!("creating {}: {e}", log_path.display()))?;
        let log_err = log
            .try_clone()
            .map_err(|e| format!("cloning the log handle: {e}"))?;
        let child = Command::new(&binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", binary.display()))?;
        let host_port = format!("127.0.0.1:{port}");
        let mut prometheus = Self {
            child,
            dir,
            url: format!("http://{host_port}"),
            host_port,
        };
        prometheus.wait_ready(Duration::from_secs(30)).await?;
        Ok(prometheus)
    }

    /// The base URL (`http://127.0.0.1:<port>`), as a metric's `address`.
    pub fn url(&self) -> &str {
        &self.url
    }

    async fn wait_ready(&mut self, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "prometheus exited ({status}) before it was ready: {}",
                    self.log_tail()
                ));
            }
            if let Ok((200, _)) = http_get(&self.host_port, "/-/ready").await {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "prometheus not ready at {}/-/ready within {within:?}: {}",
                    self.url,
                    self.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until every target has been scraped once (`min(up) == 1`): a fresh server is
    /// ready seconds before its first scrape, and queries answer empty vectors meanwhile.
    pub async fn wait_for_targets(&self, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(up) = self.query("min(up)").await
                && up[0]["value"][1] == "1"
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "prometheus at {} scraped no target within {within:?}",
                    self.url
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The result of an instant query (`data.result`), or why there is none.
    pub async fn query(&self, query: &str) -> Result<serde_json::Value, String> {
        let path = format!("/api/v1/query?query={}", percent_encode(query));
        let (status, body) = http_get(&self.host_port, &path)
            .await
            .map_err(|e| format!("querying {query:?}: {e}"))?;
        let body: serde_json::Value = serde_json::from_str(&body)
            .map_err(|e| format!("decoding the answer ({status}) to {query:?}: {e}"))?;
        Ok(body["data"]["result"].clone())
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default();
        let lines: Vec<_> = log.lines().rev().take(10).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn fresh_dir() -> Result<PathBuf, String> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!(
        "ramp-prometheus-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    Ok(dir)
}

/// A loopback port nothing listens on right now.
fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| format!("finding a free loopback port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("finding a free loopback port: {e}"))
}

/// One HTTP/1.0 GET (the server closes the connection, so the body is what remains); returns
/// the status code and the body.
async fn http_get(host_port: &str, path_and_query: &str) -> Result<(u16, String), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(host_port)
        .await
        .map_err(|e| format!("connecting to {host_port}: {e}"))?;
    let request = format!("GET {path_and_query} HTTP/1.0\r\nHost: {host_port}\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("writing to {host_port}: {e}"))?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .await
        .map_err(|e| format!("reading from {host_port}: {e}"))?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{host_port} answered without headers"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("{host_port} answered without a status code"))?;
    Ok((status, body.to_owned()))
}

/// Percent-encodes everything but RFC 3986's unreserved characters, for a query parameter.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_percent_encoded_except_unreserved_characters() {
        assert_eq!(
            percent_encode("sum(rate(x{a=\"b c\"}[1m])) > 0.5"),
            "sum%28rate%28x%7Ba%3D%22b%20c%22%7D%5B1m%5D%29%29%20%3E%200.5"
        );
        assert_eq!(percent_encode("A-z_0.9~"), "A-z_0.9~");
    }
}
