//! Workload simulators (in progress).
