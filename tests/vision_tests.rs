//! fogd-vision's integration tests (and the agent's tests that need it) in one binary, a module
//! per area. Run one area with a filter: `cargo test -p fogd-vision --test vision_tests -- vision_cli::`.

mod common;
mod vision_support;

mod ingest_kill;
mod operator;
mod operator_ha;
mod podman;
mod vision;
mod vision_arm64;
mod vision_cli;
mod vision_decode;
mod vision_plates;
mod vision_receipts;
mod vision_zones;
