//! `ramp sim` from the command line: faults given as flags are injected by the API server it
//! runs (an operator's or a script's way to rehearse errors, throttling and slow requests), and
//! a rule that cannot be read stops it before anything starts.

use assert_cmd::cargo::cargo_bin_cmd;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

fn kubeconfig(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "ramp-sim-cli-{name}-{}.kubeconfig",
        std::process::id()
    ))
}

/// The running `ramp sim`, stopped when dropped.
struct RunningSim {
    child: Child,
    address: String,
    kubeconfig: PathBuf,
}

impl RunningSim {
    fn start(name: &str, flags: &[&str]) -> Self {
        let kubeconfig = kubeconfig(name);
        let mut child = Command::new(assert_cmd::cargo::cargo_bin!("ramp"))
            .args(["sim", "--api-only", "--listen", "127.0.0.1:0"])
            .args(["--metrics-listen", "127.0.0.1:0", "--kubeconfig"])
            .arg(&kubeconfig)
            .args(flags)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("ramp sim starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        // Its first line says where it listens; an exit before it ends the read with nothing.
        let mut first = String::new();
        BufReader::new(stdout)
            .read_line(&mut first)
            .expect("stdout readable");
        let address = first
            .trim()
            .strip_prefix("ramp-sim API server listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_owned();
        RunningSim {
            child,
            address,
            kubeconfig,
        }
    }

    /// The status line and headers of a GET of `path`.
    fn get(&self, path: &str) -> String {
        let mut stream = TcpStream::connect(&self.address).expect("API server reachable");
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.address
        )
        .expect("request sent");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("response read");
        response
            .split("\r\n\r\n")
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase()
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.kubeconfig);
    }
}

#[test]
fn faults_given_as_flags_answer_the_requests_they_name() {
    let sim = RunningSim::start(
        "faults",
        &[
            "--fault",
            "error=500,verb=list,resource=namespaces",
            "--fault",
            "error=429,retry-after=7,verb=get,resource=configmaps",
        ],
    );
    let listed = sim.get("/api/v1/namespaces");
    assert!(listed.starts_with("http/1.1 500"), "{listed}");
    let throttled = sim.get("/api/v1/namespaces/default/configmaps/settings");
    assert!(throttled.starts_with("http/1.1 429"), "{throttled}");
    assert!(throttled.contains("retry-after: 7"), "{throttled}");
    // Requests the rules do not name are served as usual.
    let namespace = sim.get("/api/v1/namespaces/default");
    assert!(namespace.starts_with("http/1.1 200"), "{namespace}");
}

#[test]
fn a_rule_that_cannot_be_read_stops_it_before_it_starts() {
    let output = cargo_bin_cmd!("ramp")
        .args([
            "sim",
            "--api-only",
            "--listen",
            "127.0.0.1:0",
            "--kubeconfig",
        ])
        .arg(kubeconfig("bad-rule"))
        .args(["--fault", "error=404,verb=list"])
        .output()
        .expect("ramp runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            r#"--fault "error=404,verb=list": error "404" is not 500, 500-applied, 429 or 409"#
        ),
        "{stderr}"
    );
    let output = cargo_bin_cmd!("ramp")
        .args([
            "sim",
            "--api-only",
            "--listen",
            "127.0.0.1:0",
            "--kubeconfig",
        ])
        .arg(kubeconfig("bad-cut"))
        .args(["--watch-cut-after", "soon"])
        .output()
        .expect("ramp runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(r#"--watch-cut-after "soon""#), "{stderr}");
}
