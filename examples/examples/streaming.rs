//! Run with: cargo run --example streaming [-- serve | -- talk NAME]
//!
//! A chat room over bidirectional streams. With no arguments, one process
//! serves the room and two members, alice and bob, talk in it. As separate
//! processes:
//!
//! ```text
//! cargo run --example streaming -- serve        # the room, on 127.0.0.1:8081
//! cargo run --example streaming -- talk alice   # lines from stdin go to the room
//! ```
//!
//! `talk` finds the room by name through the default registry (mDNS), or
//! dials `MICRO_SERVER_ADDRESS` when that is set. Any WebSocket client can
//! join too: `ws://127.0.0.1:8081/?endpoint=Chat.Talk`, JSON text frames.

use std::time::Duration;

use micro::client::{CallOptions, ClientStream};
use micro::{Context, Result};
use micro_examples::chat::{Chat, ChatClient, Said, Say};
use tokio::io::AsyncBufReadExt;

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => serve().await,
        Some("talk") => talk(args.get(1).map_or("anonymous", String::as_str)).await,
        Some(other) => Err(micro::Error::bad_request(format!(
            "unknown mode {other:?}: expected serve or talk NAME"
        ))),
        None => demo().await,
    }
}

fn service() -> micro::Service {
    micro::Service::new("chat")
        .address("127.0.0.1:8081")
        .handle(Chat::new())
}

async fn serve() -> Result<()> {
    service().run().await
}

/// Joins the room as `user`.
async fn join(
    chat: &ChatClient,
    user: &str,
    options: CallOptions,
) -> Result<ClientStream<Say, Said>> {
    let ctx = Context::new().with_metadata("x-user", user);
    // mDNS answers within a second or so of the first lookup; until then
    // the room is not found (503), so try for a few seconds.
    let mut tries = 0;
    loop {
        match chat.talk_with(options.clone().context(&ctx)).await {
            Err(e) if e.code() == 503 && tries < 30 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            result => return result,
        }
    }
}

/// Sends the lines of stdin to the room and prints what the room says.
async fn talk(user: &str) -> Result<()> {
    let mut options = CallOptions::new();
    if let Ok(address) = std::env::var("MICRO_SERVER_ADDRESS") {
        options = options.address(address);
    }
    let chat = ChatClient::new("chat", micro::Client::new());
    let (mut says, mut room) = join(&chat, user, options).await?.split();
    let printing = tokio::spawn(async move {
        while let Some(said) = room.recv().await? {
            println!("{}: {}", said.user, said.text);
        }
        Ok::<_, micro::Error>(())
    });
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Some(text) = lines.next_line().await? {
        says.send(Say { text }).await?;
    }
    says.close().await?;
    printing
        .await
        .map_err(|e| micro::Error::internal(e.to_string()))?
}

/// The room and two members in one process.
async fn demo() -> Result<()> {
    let running = service().address("127.0.0.1:0").start().await?;
    let options = CallOptions::new().address(running.local_addr().to_string());
    let chat = ChatClient::new("chat", micro::Client::new());

    let mut alice = join(&chat, "alice", options.clone()).await?;
    let mut bob = join(&chat, "bob", options.clone()).await?;
    let mut members = chat.members_with(options).await?;
    println!(
        "members in the room: {}",
        members.recv().await?.unwrap_or(0)
    );

    alice
        .send(Say {
            text: "hi bob".into(),
        })
        .await?;
    let heard = bob.recv().await?;
    println!("bob heard {heard:?}");
    bob.send(Say {
        text: "hi alice".into(),
    })
    .await?;
    // Alice hears herself first, then bob.
    for _ in 0..2 {
        let said = alice.recv().await?;
        println!("alice heard {said:?}");
    }

    // Half-close: the room ends alice's stream cleanly.
    alice.close_send().await?;
    while let Some(said) = alice.recv().await? {
        println!("alice heard {said:?} before leaving");
    }
    println!("alice left");
    drop((bob, members));
    running.stop().await
}
