//! A real Prometheus for tests: ramp-sim's private Prometheus harness (binary found or, as root,
//! installed with apt-get; a server on a free loopback port scraping the given targets; killed
//! on drop). No test assumes a Prometheus already running.
#![allow(unused_imports)]

pub use ramp_sim::prometheus::{
    Prometheus, ScrapeTarget, config_yaml, ensure_prometheus, find_binary,
};
