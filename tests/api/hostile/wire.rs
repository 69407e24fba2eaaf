//! Sending a row: through the HTTP client, or over a plain socket for a chunked body.

use std::io::{Read, Write};
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};

use super::Row;
use crate::helpers::TestApp;

pub(super) struct Reply {
    pub(super) status: u16,
    /// Lower-case names.
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Vec<u8>,
}

impl Reply {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

pub(super) async fn send(app: &TestApp, row: &Row) -> Reply {
    if row.chunked {
        let (port, path) = (app.port, row.path);
        let (auth, content_type, body) =
            (row.auth.clone(), row.content_type.clone(), row.body.clone());
        return tokio::task::spawn_blocking(move || {
            send_chunked(port, path, &auth, content_type.as_deref(), &body)
        })
        .await
        .expect("raw request");
    }
    let mut req = app.http.post(app.url(row.path)).body(row.body.clone());
    if let Some(ct) = &row.content_type {
        req = req.header(CONTENT_TYPE, ct.as_str());
    }
    for value in &row.auth {
        req = req.header(
            AUTHORIZATION,
            HeaderValue::from_bytes(value).expect("header value"),
        );
    }
    let response = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("{}: request failed: {e}", row.name));
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = response.bytes().await.expect("body").to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

/// HTTP/1.1 over a plain socket with a chunked body of 64 KiB chunks: the server cannot know
/// the size in advance and must stop reading at its limit.
fn send_chunked(
    port: u16,
    path: &str,
    auth: &[Vec<u8>],
    content_type: Option<&str>,
    body: &[u8],
) -> Reply {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut head = format!("POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n").into_bytes();
    if let Some(ct) = content_type {
        head.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
    }
    for value in auth {
        head.extend_from_slice(b"Authorization: ");
        head.extend_from_slice(value);
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
    stream.write_all(&head).expect("write head");
    // The server may answer and stop reading before the body is through: write errors are
    // expected then, and the answer is read regardless.
    for chunk in body.chunks(64 * 1024) {
        let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
        framed.extend_from_slice(chunk);
        framed.extend_from_slice(b"\r\n");
        if stream.write_all(&framed).is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n");
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(_) if !raw.is_empty() => break,
            Err(e) => panic!("reading the response: {e}"),
        }
        if let Some(reply) = parse_reply(&raw) {
            return reply;
        }
    }
    parse_reply(&raw)
        .unwrap_or_else(|| panic!("incomplete response: {:?}", String::from_utf8_lossy(&raw)))
}

/// A complete HTTP/1.1 response with a Content-Length body, or None when more is needed.
fn parse_reply(raw: &[u8]) -> Option<Reply> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())?;
    let body = raw.get(end + 4..end + 4 + length)?.to_vec();
    Some(Reply {
        status,
        headers,
        body,
    })
}
