//! The body of every data-plane response, as hyper's server writes it: nothing, a
//! buffer held whole, or an upstream's body streamed through (data and trailers),
//! which holds its client connection busy until it ends (`listener::Busy`).

use crate::listener::Busy;
use crate::upstream_client::ResponseBody;
use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};

/// A data-plane response.
pub type Response = http::Response<Body>;

pub enum Body {
    Empty,
    /// Taken on the first poll.
    Full(Option<Bytes>),
    Upstream(Box<Streamed>),
}

/// An upstream's body on its way to the client.
pub struct Streamed {
    pub body: ResponseBody,
    /// The length the upstream announced (`Content-Length`), if any.
    pub length: Option<u64>,
    /// The client's HTTP/1.1 connection is busy with the request until the body
    /// has ended.
    pub busy: Option<Busy>,
}

impl Body {
    pub fn full(bytes: impl Into<Bytes>) -> Body {
        Body::Full(Some(bytes.into()))
    }
}

/// A response with `status`, `content-type` and a whole body.
pub fn with_body(status: http::StatusCode, content_type: &'static str, body: Bytes) -> Response {
    let mut response = http::Response::new(Body::full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}

/// A JSON response.
pub fn json(status: http::StatusCode, value: &impl serde::Serialize) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    with_body(status, "application/json", body.into())
}

/// A response with `status` and no body.
pub fn empty(status: http::StatusCode) -> Response {
    let mut response = http::Response::new(Body::Empty);
    *response.status_mut() = status;
    response
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            Body::Empty => Poll::Ready(None),
            Body::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Body::Upstream(s) => {
                let polled = Pin::new(&mut s.body).poll_frame(cx);
                if let Poll::Ready(None) = polled {
                    if let Some(busy) = s.busy.take() {
                        busy.done(cx);
                    }
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Empty => true,
            Body::Full(bytes) => bytes.is_none(),
            Body::Upstream(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Empty => SizeHint::with_exact(0),
            Body::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Upstream(s) => s
                .length
                .map_or_else(SizeHint::default, SizeHint::with_exact),
        }
    }
}
