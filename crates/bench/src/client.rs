//! The bench's HTTP clients: how long they keep idle connections, and how a seeding write
//! survives a connection that closes under it.
//!
//! A client that reuses a keep-alive connection at the moment the other side closes it
//! meets `connection closed before message completed`, and cannot know whether its request
//! was applied. Two rules keep that away: the client drops an idle connection
//! ([`POOL_IDLE`]) well before HAProxy ([`crescendo_topology::haproxy::CLIENT_KEEP_ALIVE`])
//! or a web node (`http.idle_timeout_secs`) would close it, and every seeding write carries
//! an `Idempotency-Key`, so when an answer is lost anyway it is sent again
//! ([`send_retrying`]) and applied once.

use anyhow::Context;
use serde_json::Value;
use std::time::Duration;

/// How long an idle connection stays in a bench client's pool: shorter than any idle
/// time-out of the servers it talks to, so the client always gives a connection up first.
pub const POOL_IDLE: Duration = Duration::from_secs(4);

/// How many times a seeding request is sent before its failure is reported.
const ATTEMPTS: u32 = 5;

/// A client builder with the bench's pool settings, holding up to `idle_per_host` idle
/// connections per host.
pub fn builder(idle_per_host: usize) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .pool_max_idle_per_host(idle_per_host)
        .pool_idle_timeout(POOL_IDLE)
}

/// Sends `req` and reads its answer as JSON (`Null` when it is not JSON).
///
/// # Errors
/// No answer came back (connection refused or closed, time-out).
pub async fn send(req: reqwest::RequestBuilder) -> anyhow::Result<(reqwest::StatusCode, Value)> {
    let res = req.send().await.context("request failed")?;
    let status = res.status();
    let body = res.bytes().await.context("reading the answer")?;
    Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

/// Whether an answer says the same request may simply be sent again: a gateway or
/// availability failure (the server keeps no idempotency record of a 5xx), or a 409 on the
/// `Idempotency-Key` (the first copy still runs; a later repeat gets its outcome).
fn worth_repeating(status: reqwest::StatusCode, body: &Value) -> bool {
    matches!(status.as_u16(), 502..=504)
        || (status == reqwest::StatusCode::CONFLICT && !body["errors"]["Idempotency-Key"].is_null())
}

/// Sends a seeding request, with `key` as its `Idempotency-Key` when it is a write
/// (`None` for a read, which is safe to repeat as it is), and sends it again (same key)
/// while no answer comes back or the answer says to (see `worth_repeating`), waiting
/// 50 ms, then twice as long each time: the server applies it once whatever happens
/// to the connections on the way.
///
/// # Errors
/// The last of five attempts got no answer.
pub async fn send_retrying(
    req: reqwest::RequestBuilder,
    key: Option<&str>,
) -> anyhow::Result<(reqwest::StatusCode, Value)> {
    let req = match key {
        Some(key) => req.header("idempotency-key", key),
        None => req,
    };
    let mut pause = Duration::from_millis(50);
    let mut attempt = 1;
    loop {
        let copy = req
            .try_clone()
            .context("a seeding request has a body that can be sent again")?;
        let outcome = send(copy).await;
        let again = match &outcome {
            Ok((status, body)) => worth_repeating(*status, body),
            Err(_) => true,
        };
        if !again || attempt == ATTEMPTS {
            return outcome;
        }
        if let Err(e) = &outcome {
            eprintln!("  sending again (attempt {}): {e:#}", attempt + 1);
        }
        tokio::time::sleep(pause).await;
        pause *= 2;
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_gives_idle_connections_up_before_the_balancer_closes_them() {
        assert!(POOL_IDLE < crescendo_topology::haproxy::CLIENT_KEEP_ALIVE);
    }

    #[test]
    fn only_answers_that_applied_nothing_are_repeated() {
        let key_conflict = serde_json::json!({"errors": {"Idempotency-Key": ["in use"]}});
        assert!(worth_repeating(
            reqwest::StatusCode::CONFLICT,
            &key_conflict
        ));
        assert!(worth_repeating(
            reqwest::StatusCode::BAD_GATEWAY,
            &Value::Null
        ));
        let taken = serde_json::json!({"errors": {"username": ["has already been taken"]}});
        assert!(!worth_repeating(reqwest::StatusCode::CONFLICT, &taken));
        assert!(!worth_repeating(
            reqwest::StatusCode::UNPROCESSABLE_ENTITY,
            &taken
        ));
        assert!(!worth_repeating(reqwest::StatusCode::CREATED, &Value::Null));
    }
}
