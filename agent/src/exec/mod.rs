//! Executors: where an invocation's script runs. `contract` is the FaaS Supervisor contract
//! (pure); `local` runs scripts as processes on this host; `kube` runs them as Kubernetes Jobs
//! (k3s); `delegate` hands invocations to other tiers (OSCAR `replicas` / `federation`).

pub mod contract;
pub mod delegate;
pub mod kube;
pub mod local;
