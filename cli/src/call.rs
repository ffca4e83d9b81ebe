//! `micro call` and `micro stream`: an endpoint called with JSON from the
//! command line, by name or at an address.

use std::time::Duration;

use bytes::Bytes;
use micro::client::CallOptions;
use micro::codec::ContentType;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::output::{self, Failure};

/// How a call or a stream is made.
#[derive(Debug, clap::Args)]
pub(crate) struct Options {
    /// Call the node at this address (`host:port`) instead of finding the
    /// service by name.
    #[arg(long, value_name = "HOST:PORT")]
    address: Option<String>,
    /// Metadata to send, `key=value` (repeatable).
    #[arg(short, long = "metadata", value_name = "KEY=VALUE")]
    metadata: Vec<String>,
    /// Send and receive MessagePack instead of JSON (shown as JSON).
    #[arg(long)]
    msgpack: bool,
    /// The call's deadline: `500ms`, `10s`, `2m` (default 10s; a stream has
    /// none unless given).
    #[arg(long, value_parser = crate::duration, value_name = "DURATION")]
    timeout: Option<Duration>,
    /// A bearer token to send (default: `MICRO_TOKEN`).
    #[arg(long, env = "MICRO_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl Options {
    fn call_options(&self, default_timeout: Option<Duration>) -> Result<CallOptions, Failure> {
        let mut options = CallOptions::new();
        if let Some(address) = &self.address {
            options = options.address(address);
        }
        for pair in &self.metadata {
            let Some((key, value)) = pair.split_once('=') else {
                return Err(Failure::usage(format!(
                    "metadata `{pair}` must be key=value"
                )));
            };
            options = options.metadata(key, value);
        }
        if let Some(timeout) = self.timeout.or(default_timeout) {
            options = options.timeout(timeout);
        }
        if let Some(token) = &self.token {
            options = options.token(token);
        }
        if self.msgpack {
            options = options.content_type(ContentType::MsgPack);
        }
        Ok(options)
    }

    fn content_type(&self) -> ContentType {
        if self.msgpack {
            ContentType::MsgPack
        } else {
            ContentType::Json
        }
    }
}

/// The JSON in `text`, or a usage error that says where it is wrong.
pub(crate) fn parse(text: &str, what: &str) -> Result<Value, Failure> {
    serde_json::from_str(text).map_err(|e| Failure::usage(format!("the {what} is not JSON: {e}")))
}

/// `text`, or all of stdin for `-`.
pub(crate) async fn argument(text: &str) -> Result<String, Failure> {
    if text != "-" {
        return Ok(text.to_owned());
    }
    let mut all = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut tokio::io::stdin(), &mut all)
        .await
        .map_err(|e| Failure::usage(format!("reading stdin: {e}")))?;
    Ok(all)
}

/// `micro call`: prints the reply as JSON.
pub(crate) async fn call(
    backends: &micro::Backends,
    service: &str,
    endpoint: &str,
    request: Option<&str>,
    options: &Options,
) -> Result<(), Failure> {
    let text = match request {
        Some(r) => argument(r).await?,
        None => "{}".to_owned(),
    };
    let request = parse(&text, "request")?;
    let content_type = options.content_type();
    let body = match content_type {
        ContentType::MsgPack => rmp_serde::to_vec_named(&request)
            .map_err(|e| Failure::usage(format!("encoding the request: {e}")))?,
        _ => serde_json::to_vec(&request)
            .map_err(|e| Failure::usage(format!("encoding the request: {e}")))?,
    };
    let client = micro::Client::builder().backends(backends).build();
    let (reply_type, reply) = client
        .call_raw(
            service,
            endpoint,
            content_type,
            Bytes::from(body),
            options.call_options(Some(Duration::from_secs(10)))?,
        )
        .await?;
    let value: Value = decode(reply_type, &reply)?;
    output::json(&value);
    Ok(())
}

fn decode(content_type: ContentType, bytes: &[u8]) -> Result<Value, Failure> {
    let decoded = match content_type {
        ContentType::MsgPack => rmp_serde::from_slice(bytes).map_err(|e| e.to_string()),
        _ => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
    };
    decoded.map_err(|e| {
        Failure::Micro(micro::Error::bad_gateway(format!(
            "the reply is not {}: {e}",
            content_type.as_str()
        )))
    })
}

/// `micro stream`: each stdin line is a message; each reply a stdout line.
/// Ends when both sides are done: stdin closed and the server closed.
pub(crate) async fn stream(
    backends: &micro::Backends,
    service: &str,
    endpoint: &str,
    options: &Options,
) -> Result<(), Failure> {
    let client = micro::Client::builder().backends(backends).build();
    let stream = client
        .stream::<Value, Value>(service, endpoint, options.call_options(None)?)
        .await?;
    let (mut sender, mut replies) = stream.split();
    let sending = async move {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        loop {
            let line = lines
                .next_line()
                .await
                .map_err(|e| Failure::usage(format!("reading stdin: {e}")))?;
            let Some(line) = line else { break };
            if line.trim().is_empty() {
                continue;
            }
            let message = parse(&line, "message")?;
            sender.send(&message).await?;
        }
        sender.close().await?;
        Ok::<(), Failure>(())
    };
    let receiving = async move {
        while let Some(reply) = replies.recv().await? {
            println!("{}", serde_json::to_string(&reply).unwrap_or_default());
        }
        Ok::<(), Failure>(())
    };
    // The server may end the stream before stdin does: then stop.
    tokio::pin!(sending);
    tokio::pin!(receiving);
    tokio::select! {
        sent = &mut sending => {
            sent?;
            receiving.await
        }
        received = &mut receiving => received,
    }
}
