//! SqliteStore integration tests.
