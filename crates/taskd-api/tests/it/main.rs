//! The API through its router: real SQLite store, requests signed by `taskd-signature`
//! the way the SDK signs them, time from a `ManualClock`.

mod support;

mod auth;
mod batch_tasks;
mod devices;
mod files;
mod legacy;
mod operations;
mod panics;
mod worker;
