//! The agent's integration tests in one binary, a module per area (issue 31: a binary per file
//! linked all of fogd 22 times, most of a cold CI run). Run one area with a filter:
//! `cargo test -p fogd --test agent_tests -- gateway::`.

mod abuse_s3;
mod common;
mod continuum_support;
mod ingest_support;

mod cli;
mod cli_runtime;
mod continuum;
mod continuum_reclaim;
mod deploy;
mod fdl_conformance;
mod fdl_malformed;
mod gateway;
mod gateway_abuse;
mod gateway_tls;
mod housekeeping;
mod ingest;
mod ingest_flood;
mod ingest_outbox;
mod journal_boundary;
#[cfg(feature = "kube")]
mod kube;
mod layering;
mod runtime_chain;
mod runtime_crash;
mod runtime_disk;
mod s3_endpoint;
mod soak_abuse;
mod systemd;
