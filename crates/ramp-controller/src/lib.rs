//! The controller shell (filled by the canary issue).
#![forbid(unsafe_code)]
