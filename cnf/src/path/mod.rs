//! Path monitoring and path choice (see the README section "Path monitoring and failover").

pub mod bfd;
pub mod book;
pub mod monitor;
pub mod quality;

#[cfg(test)]
mod failover_tests;
