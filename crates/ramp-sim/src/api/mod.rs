//! The HTTP API server (in progress).
