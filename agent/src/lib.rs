//! fogd: the fog node of a serverless cloud continuum. See `ARCHITECTURE.md` in the shared design
//! for how the modules fit together.

pub mod bench;
pub mod cli;
pub mod config;
pub mod exec;
pub mod fdl;
pub mod gateway;
pub mod ingest;
pub mod journal;
pub mod metrics;
pub mod router;
pub mod runtime;
pub mod scheduler;
pub mod store;
pub mod sync;
pub mod testkit;
#[cfg(feature = "vision")]
pub mod vision;
