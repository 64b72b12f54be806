//! fogd: the fog node of a serverless cloud continuum. See `ARCHITECTURE.md` in the shared design
//! for how the modules fit together.

pub mod backoff;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod exec;
/// The FDL model, loader and graph (the `fogd-fdl` crate).
pub use fogd_fdl as fdl;
pub mod gateway;
pub mod housekeeping;
pub mod ingest;
pub mod journal;
pub mod metrics;
pub mod outbox;
pub mod paths;
pub mod receipts;
pub mod router;
pub mod runtime;
pub mod scheduler;
pub mod store;
