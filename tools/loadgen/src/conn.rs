//! One keep-alive HTTP/1.1 connection, reconnecting when the server closes it.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderMap, RETRY_AFTER};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// An answer: its status, whether it carried `Retry-After`, its headers, its body.
pub struct Resp {
    pub status: StatusCode,
    pub retry_after: bool,
    pub headers: HeaderMap,
    pub body: Bytes,
}

pub struct Conn {
    addr: SocketAddr,
    host: String,
    sender: Option<SendRequest<Full<Bytes>>>,
    /// Connections opened, the first included.
    pub connects: u64,
}

impl Conn {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            host: addr.to_string(),
            sender: None,
            connects: 0,
        }
    }

    /// Opens a fresh connection in place of the current one.
    pub async fn connect(&mut self) -> Result<(), String> {
        let stream = TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("nodelay: {e}"))?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        self.sender = Some(sender);
        self.connects += 1;
        Ok(())
    }

    /// Drops the connection; the next request opens a fresh one.
    pub fn reset(&mut self) {
        self.sender = None;
    }

    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        form: Option<String>,
    ) -> Result<Resp, String> {
        self.send_with(method, path, auth, form, &[]).await
    }

    /// `send` with more request headers (a browser's `Cookie`, `Sec-Fetch-Site`).
    pub async fn send_with(
        &mut self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        form: Option<String>,
        headers: &[(&'static str, &str)],
    ) -> Result<Resp, String> {
        if self.sender.as_ref().is_none_or(SendRequest::is_closed) {
            self.connect().await?;
        }
        let result = self.exchange(method, path, auth, form, headers).await;
        if result.is_err() {
            // Whatever state the connection is in, start over on a fresh one.
            self.sender = None;
        }
        result
    }

    async fn exchange(
        &mut self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        form: Option<String>,
        headers: &[(&'static str, &str)],
    ) -> Result<Resp, String> {
        let sender = self.sender.as_mut().ok_or("not connected")?;
        sender.ready().await.map_err(|e| format!("ready: {e}"))?;
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.host.as_str());
        if let Some(auth) = auth {
            req = req.header(AUTHORIZATION, auth);
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let body = match form {
            Some(form) => {
                req = req.header(CONTENT_TYPE, "application/x-www-form-urlencoded");
                Bytes::from(form)
            }
            None => Bytes::new(),
        };
        let req = req
            .body(Full::new(body))
            .map_err(|e| format!("request: {e}"))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("send: {e}"))?;
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        Ok(Resp {
            status: parts.status,
            retry_after: parts.headers.contains_key(RETRY_AFTER),
            headers: parts.headers,
            body,
        })
    }
}
