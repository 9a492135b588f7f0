//! Refusing cross-site socket.io connections: the `Origin` check browsers rely on.
//!
//! A browser sends the session cookie with every request to the app's host, whichever page
//! makes it: a page on `evil.example` can open a socket.io connection to the app and act as
//! the logged-in user (cross-site WebSocket hijacking; polling is as exposed). socket.io
//! servers do not check where a connection comes from, and a CORS layer only adds headers. The
//! browser does say where a request comes from, in `Origin`, and a page cannot forge it:
//! [`OriginCheckLayer`] refuses socket.io requests whose `Origin` is not the app's own or an
//! allowed one, before the socket.io service sees them.
//!
//! ```
//! use axum::Router;
//! use session_runtime::origin::OriginCheckLayer;
//! use socketioxide::SocketIo;
//!
//! let (sio_layer, _io) = SocketIo::new_layer();
//! let app: Router = Router::new()
//!     .layer(sio_layer)
//!     // Same origin only; also the app's other front end, and any subdomain of example.com.
//!     .layer(
//!         OriginCheckLayer::same_origin()
//!             .with_allowed("https://admin.example.com")
//!             .with_allowed("https://*.example.com"),
//!     );
//! ```

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use axum::{
    body::Body,
    http::{header, uri::Authority, HeaderMap, Request, Response, StatusCode, Uri},
};
use tower::{Layer, Service};

/// A tower layer that checks the `Origin` of every socket.io request — the engine.io
/// handshake, each polling request and the websocket upgrade — and answers `403 Forbidden`
/// to those from elsewhere. Other paths pass unchecked.
///
/// A request is served when its `Origin`:
/// - names the host the request was sent to (its `Host` header, port included): the app's own
///   page, however the app is deployed. The scheme is not compared here, since a TLS proxy in
///   front of the app changes it, and no other site can serve pages from the app's host and
///   port;
/// - or matches an origin given to [`with_allowed`](OriginCheckLayer::with_allowed);
/// - or is absent (clients that are not browsers send none), unless
///   [`with_missing_origin_refused`](OriginCheckLayer::with_missing_origin_refused) is set.
///
/// `Origin: null` (sandboxed frames, `file:` pages) is never the app's own and is refused
/// unless allowed. Each refusal is logged at `warn` with the origin.
///
/// Put it outside the socket.io layer, e.g. as the router's last `.layer(..)`.
/// [`SocketSessions::layer`](crate::SocketSessions::layer) puts one in place (same origin);
/// give it another with [`SessionStack::with_origin_check`](crate::SessionStack::with_origin_check).
///
/// ```
/// use axum::Router;
/// use session_runtime::origin::OriginCheckLayer;
/// use socketioxide::SocketIo;
///
/// let (sio_layer, _io) = SocketIo::new_layer();
/// let app: Router = Router::new()
///     .layer(sio_layer)
///     .layer(OriginCheckLayer::same_origin().with_allowed("https://admin.example.com"));
/// ```
#[derive(Clone)]
pub struct OriginCheckLayer {
    rules: Arc<Rules>,
}

#[derive(Debug, Clone)]
struct Rules {
    allowed: Vec<AllowedOrigin>,
    allow_null: bool,
    refuse_missing: bool,
    path: String,
    /// No check at all (`SessionStack::without_origin_check`).
    off: bool,
}

/// One allowed origin: exact scheme and port, exact host or any subdomain of a suffix.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AllowedOrigin {
    scheme: String,
    host: HostPattern,
    port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Exact(String),
    /// `*.example.com`: held as `.example.com`.
    Subdomains(String),
}

impl Default for OriginCheckLayer {
    fn default() -> Self {
        Self::same_origin()
    }
}

impl OriginCheckLayer {
    /// Only the app's own pages: `Origin` must name the host the request was sent to.
    /// Requests without `Origin` are served (see
    /// [`with_missing_origin_refused`](Self::with_missing_origin_refused)).
    ///
    /// ```
    /// use session_runtime::origin::OriginCheckLayer;
    ///
    /// let layer = OriginCheckLayer::same_origin(); // also `OriginCheckLayer::default()`
    /// ```
    pub fn same_origin() -> Self {
        Self {
            rules: Arc::new(Rules {
                allowed: Vec::new(),
                allow_null: false,
                refuse_missing: false,
                path: "/socket.io".to_owned(),
                off: false,
            }),
        }
    }

    /// Checks nothing: what `SessionStack::without_origin_check` puts in place.
    pub(crate) fn any_origin() -> Self {
        let mut layer = Self::same_origin();
        Arc::make_mut(&mut layer.rules).off = true;
        layer
    }

    /// Also serves pages of `origin`: `scheme://host[:port]` (the port defaults to the
    /// scheme's), or `scheme://*.domain[:port]` for every subdomain of `domain` (not `domain`
    /// itself). `"null"` allows `Origin: null`.
    ///
    /// ```
    /// use session_runtime::origin::OriginCheckLayer;
    ///
    /// let layer = OriginCheckLayer::same_origin()
    ///     .with_allowed("https://admin.example.com") // exact scheme, host and port (443)
    ///     .with_allowed("http://localhost:5173")     // a dev server
    ///     .with_allowed("https://*.example.com");    // a.example.com, b.a.example.com, ...
    /// ```
    ///
    /// # Panics
    ///
    /// When `origin` is not of that form, so a typo fails at start-up instead of refusing
    /// every browser. [`OriginCheckLayer::try_with_allowed`] returns the error instead.
    pub fn with_allowed(self, origin: &str) -> Self {
        self.try_with_allowed(origin)
            .unwrap_or_else(|err| panic!("OriginCheckLayer::with_allowed: {err}"))
    }

    /// [`OriginCheckLayer::with_allowed`], for origins read from configuration.
    ///
    /// ```
    /// use session_runtime::origin::OriginCheckLayer;
    ///
    /// assert!(OriginCheckLayer::same_origin().try_with_allowed("https://app.example.com").is_ok());
    /// let err = OriginCheckLayer::same_origin().try_with_allowed("app.example.com").err().unwrap();
    /// assert!(err.to_string().contains("scheme://host"));
    /// ```
    ///
    /// # Errors
    ///
    /// [`InvalidOrigin`] when `origin` is not `scheme://host[:port]`, `scheme://*.domain[:port]`
    /// or `null`.
    pub fn try_with_allowed(mut self, origin: &str) -> Result<Self, InvalidOrigin> {
        let rules = Arc::make_mut(&mut self.rules);
        if origin == "null" {
            rules.allow_null = true;
        } else {
            rules.allowed.push(AllowedOrigin::parse(origin)?);
        }
        Ok(self)
    }

    /// Refuses requests without `Origin` too. Browsers send it on every websocket upgrade and
    /// cross-origin request; non-browser clients (a Node or Rust socket.io client, `curl`)
    /// usually send none and are then refused.
    ///
    /// ```
    /// use session_runtime::origin::OriginCheckLayer;
    ///
    /// let browsers_only = OriginCheckLayer::same_origin().with_missing_origin_refused();
    /// ```
    pub fn with_missing_origin_refused(mut self) -> Self {
        Arc::make_mut(&mut self.rules).refuse_missing = true;
        self
    }

    /// The path socket.io is served under (default `/socket.io`, socketioxide's default);
    /// requests to other paths are not checked.
    ///
    /// ```
    /// use session_runtime::origin::OriginCheckLayer;
    /// use socketioxide::SocketIo;
    ///
    /// let (_sio_layer, _io) = SocketIo::builder().req_path("/realtime").build_layer();
    /// let layer = OriginCheckLayer::same_origin().with_path("/realtime");
    /// ```
    pub fn with_path(mut self, path: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.rules).path = path.into();
        self
    }
}

impl fmt::Debug for OriginCheckLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OriginCheckLayer")
            .field("allowed", &self.rules.allowed)
            .field("allow_null", &self.rules.allow_null)
            .field("refuse_missing", &self.rules.refuse_missing)
            .field("path", &self.rules.path)
            .finish()
    }
}

/// An origin given to [`OriginCheckLayer::try_with_allowed`] that is not of a form it takes.
///
/// ```
/// use session_runtime::origin::OriginCheckLayer;
///
/// let origin = std::env::var("ADMIN_ORIGIN").unwrap_or_else(|_| "admin.example.com".into());
/// match OriginCheckLayer::same_origin().try_with_allowed(&origin) {
///     Ok(_layer) => {}
///     Err(err) => assert!(err.to_string().contains("is not an origin")),
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[error(
    "`{0}` is not an origin: expected `scheme://host[:port]`, `scheme://*.domain[:port]` or `null`"
)]
pub struct InvalidOrigin(String);

impl AllowedOrigin {
    fn parse(origin: &str) -> Result<Self, InvalidOrigin> {
        let invalid = || InvalidOrigin(origin.to_owned());
        let (scheme, rest) = origin.split_once("://").ok_or_else(invalid)?;
        let (host, port) = if let Some(domain) = rest.strip_prefix("*.") {
            let (_, host, port) = parse_origin(&format!("{scheme}://{domain}"))
                .filter(|_| !domain.contains('*'))
                .ok_or_else(invalid)?;
            (HostPattern::Subdomains(format!(".{host}")), port)
        } else {
            let (_, host, port) = parse_origin(origin).ok_or_else(invalid)?;
            (HostPattern::Exact(host), port)
        };
        Ok(Self {
            scheme: scheme.to_ascii_lowercase(),
            host,
            port,
        })
    }

    fn matches(&self, scheme: &str, host: &str, port: u16) -> bool {
        self.scheme == scheme
            && self.port == port
            && match &self.host {
                HostPattern::Exact(exact) => exact == host,
                HostPattern::Subdomains(suffix) => {
                    host.len() > suffix.len() && host.ends_with(suffix.as_str())
                }
            }
    }
}

/// `scheme://host[:port]` with nothing after it → (scheme, lowercase host, port or the
/// scheme's default).
fn parse_origin(origin: &str) -> Option<(String, String, u16)> {
    let uri: Uri = origin.parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let authority = uri.authority()?;
    // An origin has no user info, path, query or fragment.
    if authority.as_str().contains('@') || uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
        return None;
    }
    let port = authority.port_u16().or(default_port(&scheme))?;
    Some((scheme, authority.host().to_ascii_lowercase(), port))
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

impl Rules {
    /// `Err(reason)` for a request that must be refused.
    fn check(&self, headers: &HeaderMap) -> Result<(), &'static str> {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return if self.refuse_missing {
                Err("the request has no Origin")
            } else {
                Ok(())
            };
        };
        let origin = origin.to_str().map_err(|_| "the Origin is not text")?;
        if origin == "null" {
            return if self.allow_null {
                Ok(())
            } else {
                Err("Origin null is not allowed")
            };
        }
        let (scheme, host, port) = parse_origin(origin).ok_or("the Origin is malformed")?;
        if self
            .allowed
            .iter()
            .any(|allowed| allowed.matches(&scheme, &host, port))
        {
            return Ok(());
        }
        // The app's own page: the origin names the host the browser sent this request to.
        let own = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.parse::<Authority>().ok())
            .is_some_and(|to| {
                to.host().eq_ignore_ascii_case(&host)
                    && to.port_u16().or(default_port(&scheme)) == Some(port)
            });
        if own {
            Ok(())
        } else {
            Err("cross-origin socket.io requests are not allowed")
        }
    }

    fn applies_to(&self, path: &str) -> bool {
        !self.off
            && path
                .strip_prefix(self.path.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }
}

impl<S> Layer<S> for OriginCheckLayer {
    type Service = OriginCheck<S>;

    fn layer(&self, inner: S) -> Self::Service {
        OriginCheck {
            inner,
            rules: self.rules.clone(),
        }
    }
}

/// The service of [`OriginCheckLayer`].
///
/// ```
/// use axum::Router;
/// use session_runtime::origin::{OriginCheck, OriginCheckLayer};
/// use tower::Layer;
///
/// let service: OriginCheck<Router> = OriginCheckLayer::same_origin().layer(Router::new());
/// ```
#[derive(Clone)]
pub struct OriginCheck<S> {
    inner: S,
    rules: Arc<Rules>,
}

impl<S> fmt::Debug for OriginCheck<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OriginCheck")
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl<S, B> Service<Request<B>> for OriginCheck<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if self.rules.applies_to(req.uri().path()) {
            if let Err(reason) = self.rules.check(req.headers()) {
                let origin = req
                    .headers()
                    .get(header::ORIGIN)
                    .map(|o| String::from_utf8_lossy(o.as_bytes()).into_owned());
                tracing::warn!(?origin, reason, "refused a socket.io request");
                let response = Response::builder()
                    .status(StatusCode::FORBIDDEN)
                    .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
                    .body(Body::from(reason))
                    .expect("a static response is valid");
                return Box::pin(async move { Ok(response) });
            }
        }
        Box::pin(self.inner.call(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, host.parse().unwrap());
        if let Some(origin) = origin {
            headers.insert(header::ORIGIN, origin.parse().unwrap());
        }
        headers
    }

    fn rules(layer: OriginCheckLayer) -> Arc<Rules> {
        layer.rules
    }

    #[test]
    fn same_origin_is_the_host_the_request_was_sent_to_port_included() {
        let rules = rules(OriginCheckLayer::same_origin());
        let ok = |origin, host| rules.check(&headers(Some(origin), host)).is_ok();
        assert!(ok("http://127.0.0.1:3000", "127.0.0.1:3000"));
        assert!(ok("https://App.Example.com", "app.example.com"));
        assert!(ok("http://app.example.com", "app.example.com:80"));
        assert!(!ok("http://127.0.0.1:4000", "127.0.0.1:3000"));
        assert!(!ok("http://evil.example", "127.0.0.1:3000"));
        assert!(!ok("http://127.0.0.1:3000.evil.example", "127.0.0.1:3000"));
        assert!(!ok("https://app.example.com", "app.example.com:80"));
        assert!(!ok("null", "127.0.0.1:3000"));
        assert!(!ok("http://user@127.0.0.1:3000", "127.0.0.1:3000"));
    }

    #[test]
    fn allowed_origins_match_exactly_or_by_subdomain() {
        let rules = rules(
            OriginCheckLayer::same_origin()
                .with_allowed("https://admin.example.com")
                .with_allowed("http://*.example.org:8080"),
        );
        let ok = |origin| {
            rules
                .check(&headers(Some(origin), "app.example.com"))
                .is_ok()
        };
        assert!(ok("https://admin.example.com"));
        assert!(ok("https://admin.example.com:443"));
        assert!(!ok("http://admin.example.com"));
        assert!(!ok("https://admin.example.com:8443"));
        assert!(ok("http://a.example.org:8080"));
        assert!(ok("http://a.b.example.org:8080"));
        assert!(!ok("http://example.org:8080"));
        assert!(!ok("http://evilexample.org:8080"));
        assert!(!ok("http://a.example.org"));
    }

    #[test]
    fn a_missing_origin_is_served_unless_refused() {
        let served = rules(OriginCheckLayer::same_origin());
        assert!(served.check(&headers(None, "127.0.0.1:3000")).is_ok());
        let refused = rules(OriginCheckLayer::same_origin().with_missing_origin_refused());
        assert!(refused.check(&headers(None, "127.0.0.1:3000")).is_err());
    }

    #[test]
    fn null_is_refused_unless_allowed() {
        let allowed = rules(OriginCheckLayer::same_origin().with_allowed("null"));
        assert!(allowed.check(&headers(Some("null"), "a:1")).is_ok());
    }

    #[test]
    fn invalid_allowed_origins_are_errors() {
        for bad in [
            "app.example.com",
            "https://",
            "https://app.example.com/path",
            "ftp://app.example.com",
            "https://*.*.example.com",
        ] {
            assert!(
                OriginCheckLayer::same_origin()
                    .try_with_allowed(bad)
                    .is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn only_the_socket_io_path_is_checked() {
        let rules = rules(OriginCheckLayer::same_origin());
        assert!(rules.applies_to("/socket.io/"));
        assert!(rules.applies_to("/socket.io"));
        assert!(!rules.applies_to("/socket.iox"));
        assert!(!rules.applies_to("/login"));
    }
}
