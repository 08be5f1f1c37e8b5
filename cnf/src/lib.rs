//! The Signpost router (CNF).
//!
//! Built like `quinn-proto` and `smoltcp`: a sans-IO core — packet views, classification,
//! sessions, SVR metadata — that takes time as an argument and never touches a socket, and thin
//! drivers around it. [`control`] is such a driver: the config stream from the operator.

pub mod classify;
pub mod control;
#[doc(hidden)]
pub mod fuzzing;
pub mod guard;
pub mod health;
pub mod io;
pub mod packet;
pub mod path;
pub mod pcap;
pub mod pipeline;
pub mod qos;
pub mod runtime;
pub mod security;
pub mod session;
pub mod svr;
pub mod telemetry;
