//! The Signpost router (CNF).
//!
//! Built like `quinn-proto` and `smoltcp`: a sans-IO core — packet views, classification,
//! sessions, SVR metadata — that takes time as an argument and never touches a socket, and thin
//! drivers around it. [`control`] is such a driver: the config stream from the operator.

/// A struct of `u64` event counters, each with its metric label and help text, and `named()`
/// listing them as `(label, help, value)` for the metrics and the admin API.
macro_rules! named_counters {
    ($(#[$meta:meta])* $name:ident { $($field:ident => $label:literal: $help:literal,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct $name { $(pub $field: u64,)* }

        impl $name {
            /// (metric label, help, value) for each counter.
            pub fn named(&self) -> Vec<(&'static str, &'static str, u64)> {
                vec![$(($label, $help, self.$field),)*]
            }
        }
    };
}

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
