//! Idle sockets that cost less memory: [`OwnRequestHeadLayer`].
//!
//! socketioxide keeps every socket's handshake request head (`socket.req_parts()`) for as long
//! as the socket lives. hyper parses a request without copying it: the URI and every header
//! value are slices of the connection's read buffer (16 KiB once hyper has grown it), and axum's
//! router keeps one more slice (`OriginalUri`). So the few hundred bytes a socket keeps pin the
//! whole buffer: 17 KiB of heap per idle socket under heaptrack, about 7 KB of the server's RSS per
//! socket at 15 000 sockets (the benchmark report, "Idle memory").
//! [`OwnRequestHeadLayer`] copies the URI and the header values into allocations of their own
//! before anything keeps them, so hyper's buffer is freed once the connection is upgraded. Put
//! it **around the whole router** (a `Router::layer` runs after the router kept its copy):
//!
//! ```
//! use axum::{extract::Request, Router, ServiceExt};
//! use session_runtime::scale::OwnRequestHeadLayer;
//! use socketioxide::SocketIo;
//! use tower::Layer;
//! use tower_sessions::{MemoryStore, SessionManagerLayer};
//!
//! let (sio_layer, _io) = SocketIo::new_layer();
//! let router: Router = Router::new()
//!     .layer(sio_layer)
//!     .layer(SessionManagerLayer::new(MemoryStore::default()));
//! let app = OwnRequestHeadLayer.layer(router);
//! // axum::serve(listener, app.into_make_service())
//! let _make_service = ServiceExt::<Request>::into_make_service(app);
//! ```

use std::task::{Context, Poll};

use axum::http::{HeaderMap, HeaderValue, Request, Uri};
use tower::{Layer, Service};

/// A tower layer that copies each request's URI and header values out of the HTTP server's
/// read buffer ([`own_request_head`]). Place it around the whole router (see the module).
///
/// ```
/// use axum::Router;
/// use session_runtime::scale::OwnRequestHeadLayer;
/// use tower::Layer;
///
/// let router: Router = Router::new();
/// let app = OwnRequestHeadLayer.layer(router); // around the router, not inside it
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct OwnRequestHeadLayer;

impl<S> Layer<S> for OwnRequestHeadLayer {
    type Service = OwnRequestHead<S>;

    fn layer(&self, inner: S) -> Self::Service {
        OwnRequestHead { inner }
    }
}

/// The service of [`OwnRequestHeadLayer`]; [`OwnRequestHead::new`] wraps a router without
/// naming `tower::Layer`.
///
/// ```
/// use axum::Router;
/// use session_runtime::scale::OwnRequestHead;
///
/// let app: OwnRequestHead<Router> = OwnRequestHead::new(Router::new());
/// ```
#[derive(Clone, Debug)]
pub struct OwnRequestHead<S> {
    inner: S,
}

impl<S> OwnRequestHead<S> {
    /// `inner` (a whole `axum::Router`), its requests' heads copied first.
    ///
    /// ```
    /// use axum::{extract::Request, Router, ServiceExt};
    /// use session_runtime::scale::OwnRequestHead;
    ///
    /// let app = OwnRequestHead::new(Router::new());
    /// // axum::serve(listener, ServiceExt::<Request>::into_make_service(app))
    /// let _make_service = ServiceExt::<Request>::into_make_service(app);
    /// ```
    pub fn new(inner: S) -> Self {
        Self { inner }
    }
}

impl<S, B> Service<Request<B>> for OwnRequestHead<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.inner.call(own_request_head(req))
    }
}

/// The same request, its URI and header values copied into allocations of their own, so that
/// keeping them (as socketioxide keeps a socket's handshake) keeps nothing else alive.
///
/// ```
/// use axum::http::Request;
/// use session_runtime::scale::own_request_head;
///
/// let req = Request::get("/socket.io/?EIO=4&transport=websocket")
///     .header("cookie", "id=abc")
///     .body(())
///     .unwrap();
/// let req = own_request_head(req);
/// assert_eq!(req.uri().query(), Some("EIO=4&transport=websocket"));
/// assert_eq!(req.headers()["cookie"], "id=abc");
/// ```
pub fn own_request_head<B>(req: Request<B>) -> Request<B> {
    let (mut parts, body) = req.into_parts();
    if let Ok(uri) = Uri::try_from(parts.uri.to_string()) {
        parts.uri = uri;
    }
    // Names are owned already (or static); values are slices of the read buffer.
    let mut copied = HeaderMap::with_capacity(parts.headers.len());
    for (name, value) in &parts.headers {
        let own = HeaderValue::from_bytes(value.as_bytes())
            .map(|mut own| {
                own.set_sensitive(value.is_sensitive());
                own
            })
            .unwrap_or_else(|_| value.clone());
        copied.append(name.clone(), own);
    }
    parts.headers = copied;
    Request::from_parts(parts, body)
}
