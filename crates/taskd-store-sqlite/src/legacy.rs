//! The legacy northbound API's statement this backend says its own way (the rest is
//! written once, in `taskd_store_sql::legacy`).

pub(crate) const DEADLINES_DUE_SQL: &str = "SELECT task_id FROM task_deadlines \
     INDEXED BY task_deadlines_due WHERE pending = 1 AND deadline_at <= ? \
     ORDER BY deadline_at LIMIT ?";
