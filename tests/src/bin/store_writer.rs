//! Writes numbered records to the file store in the directory it is given,
//! printing `acked N` once each write has returned, until it is killed.
//! Prints `open` first, or `error: …` and exits 3 if the store will not
//! open.

use std::sync::Arc;

use micro::store::{FileStore, Scoped};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let dir = std::env::args().nth(1).expect("usage: store_writer DIR");
    let store = match FileStore::open(&dir) {
        Ok(store) => store,
        Err(e) => {
            println!("error: {e}");
            std::process::exit(3);
        }
    };
    println!("open");
    let records = Scoped::new(Arc::new(store), "writer").expect("a valid scope");
    for i in 0u64.. {
        records
            .put(&format!("k{i:06}"), &i)
            .await
            .expect("the write is stored");
        println!("acked {i}");
    }
}
