//! Apimachinery semantics (in progress).
