//! The API through its router: real SQLite store, requests signed by `taskd-signature`
//! the way the SDK signs them, time from a `ManualClock`.

mod support;

mod auth;
mod batch_tasks;
mod device_channel;
mod devices;
mod envelopes;
mod files;
mod fuzz_seeds;
mod health;
mod legacy;
mod limits;
mod operations;
mod ota_packages;
mod panics;
mod unknown_ids;
mod worker;
