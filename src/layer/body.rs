//! Reading a request body with a hard cap and a time limit.

use bytes::Bytes;
use http_body::Body;
use http_body_util::{BodyExt as _, Limited};

use crate::{
    guard::Guard,
    problem::{Problem, known},
};

/// Reads the whole body, refusing more than the guard's limit (413, also for chunked
/// bodies with no length) and a body that does not arrive within its read timeout (408).
pub(crate) async fn read<B>(guard: &Guard, body: B) -> Result<Bytes, Problem>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let limited = Limited::new(body, guard.body_limit());
    match tokio::time::timeout(guard.read_timeout(), limited.collect()).await {
        Err(_) => Err(known::BODY_TIMEOUT),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                Err(known::BODY_TOO_LARGE)
            } else {
                Err(known::BODY_ERROR)
            }
        }
    }
}
