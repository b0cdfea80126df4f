//! A panic in a handler or middleware answers 500 in its dialect's envelope instead of
//! dropping the connection with no answer (a client cannot tell whether its write
//! happened, and retries it).

use std::any::Any;

use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::{CatchPanicLayer, ResponseForPanic};

/// The layer of a dialect router: a panic below it is answered as the dialect answers
/// `internal(cause)`, its own internal error (which logs the cause and never sends it).
pub(crate) fn catch_panic<E: IntoResponse>(
    internal: fn(String) -> E,
) -> CatchPanicLayer<impl ResponseForPanic<ResponseBody = axum::body::Body>> {
    CatchPanicLayer::custom(move |panic: Box<dyn Any + Send + 'static>| -> Response {
        let what = panic
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("a panic with no message");
        internal(format!("panicked: {what}")).into_response()
    })
}
