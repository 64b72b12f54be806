//! Executors: where an invocation's script runs. `contract` is the FaaS Supervisor contract
//! (pure); `local` runs scripts as processes on this host.

pub mod contract;
pub mod local;
