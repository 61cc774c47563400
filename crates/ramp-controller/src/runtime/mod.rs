//! The bottom layer of the controllers: watches that recover on their own, and the bookkeeping
//! of whether each is live (which `/readyz` reads). No reconcile logic; nothing here imports
//! the controllers or `ops`.

pub mod liveness;
pub mod watch;

pub use liveness::{StalledWatch, WatchLiveness};
pub use watch::Watches;
