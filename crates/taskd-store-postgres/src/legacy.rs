//! The legacy northbound API's statement this backend says its own way (the rest is
//! written once, in `taskd_store_sql::legacy`).

pub(crate) const DEADLINES_DUE_SQL: &str = "SELECT task_id FROM task_deadlines \
     WHERE pending AND deadline_at <= $1 ORDER BY task_id LIMIT $2";
