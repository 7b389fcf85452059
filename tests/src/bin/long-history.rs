//! Appends N signed entries to an environment's history, as N promotions
//! alternating between the given builds would (without regenerating any
//! view), then signs the head's freshness statement: a long history for the
//! tests and the benchmark of pipe's history reading
//! (`tests/tests/history.rs`, `benches/history.sh`).
//!
//! Usage: long-history STORE_URL KEY_FILE ENV N BUILD...
//! (S3 settings from the standard AWS environment.)

use pipeline::records::history::{self, Action, Entry, history_key, pointer_key, read_pointer};
use pipeline::store::{Body, Condition, OpenOptions, Store, StoreUrl};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, key, env, n, builds @ ..] = &args[..] else {
        eprintln!("usage: long-history STORE_URL KEY_FILE ENV N BUILD...");
        std::process::exit(2);
    };
    assert!(!builds.is_empty(), "name at least one build");
    let n: usize = n.parse().expect("N is a count");
    let url = StoreUrl::parse(url, &std::env::current_dir().unwrap()).unwrap();
    let store = Store::open(&url, &OpenOptions::default()).await.unwrap();
    let key = keys::SecretKey::load(std::path::Path::new(key), None).unwrap();
    let (mut head, _) = read_pointer(&store, env).await.unwrap();
    for i in 0..n {
        let build = &builds[i % builds.len()];
        let signed = Entry::next(head.as_ref(), env, build, Action::Promote, false)
            .sign(&key)
            .unwrap();
        store
            .put(
                &history_key(env, signed.entry.seq),
                Body::from_bytes(signed.to_bytes()),
                Condition::IfAbsent,
            )
            .await
            .unwrap();
        head = Some(signed);
    }
    let head = head.expect("at least one entry");
    store
        .put(
            &pointer_key(env),
            Body::from_bytes(head.to_bytes()),
            Condition::Overwrite,
        )
        .await
        .unwrap();
    history::stamp(
        &store,
        &key,
        &head.entry,
        std::time::Duration::from_secs(7 * 86_400),
    )
    .await
    .unwrap();
    println!("{}", head.entry.seq);
}
