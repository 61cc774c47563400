//! Ramp decisions (filled by the canary, analysis and blue-green issues).
#![forbid(unsafe_code)]
