//! The head of an HTTP/1 request, as the small servers here read it (the alert sink, the
//! NATS exporter, the region witness): the request line and the headers they use.

use std::io::BufRead;

/// What a request's head says.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct RequestHead {
    /// `GET`, `POST`…
    pub method: String,
    /// The request target.
    pub path: String,
    /// The last `Authorization` header's value, trimmed.
    pub authorization: Option<String>,
    /// `Content-Length`, 0 when absent or unreadable.
    pub content_length: usize,
}

impl RequestHead {
    /// Reads the request line and headers up to the blank line (the body is left unread).
    ///
    /// # Errors
    /// The connection fails or times out.
    pub fn read(reader: &mut impl BufRead) -> std::io::Result<Self> {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let mut parts = line.split_whitespace();
        let mut head = RequestHead {
            method: parts.next().unwrap_or_default().to_string(),
            path: parts.next().unwrap_or_default().to_string(),
            ..RequestHead::default()
        };
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
                return Ok(head);
            }
            let Some((name, value)) = header.split_once(':') else {
                continue;
            };
            if name.eq_ignore_ascii_case("authorization") {
                head.authorization = Some(value.trim().to_string());
            } else if name.eq_ignore_ascii_case("content-length") {
                head.content_length = value.trim().parse().unwrap_or(0);
            }
        }
    }

    /// The credentials after `scheme ` (`Basic`, `Bearer`) in the `Authorization` header.
    pub fn credentials(&self, scheme: &str) -> Option<&str> {
        self.authorization
            .as_deref()?
            .strip_prefix(scheme)?
            .strip_prefix(' ')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_gives_its_line_authorization_and_length_and_leaves_the_body() {
        let text = "POST /alerts HTTP/1.1\r\nHost: x\r\nauthorization:  Bearer abc \r\n\
                    Content-Length: 4\r\n\r\nbody";
        let mut reader = std::io::BufReader::new(text.as_bytes());
        let head = RequestHead::read(&mut reader).unwrap();
        assert_eq!(
            (head.method.as_str(), head.path.as_str()),
            ("POST", "/alerts")
        );
        assert_eq!(head.credentials("Bearer"), Some("abc"));
        assert_eq!(head.credentials("Basic"), None);
        assert_eq!(head.content_length, 4);
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
        assert_eq!(rest, "body");
    }
}
