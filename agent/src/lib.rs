//! fogd: the fog node of a serverless cloud continuum. See `ARCHITECTURE.md` in the shared design
//! for how the modules fit together.

pub mod cli;
pub mod fdl;
