//! Traffic and metrics simulator (in progress).
